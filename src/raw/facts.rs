//! What one complete scan of a raw file learns on the way, so that the
//! input rules of contract section 4 and the reconciliation need no second
//! pass over the big files.
//!
//! The reader hands every parsed batch to a [`FactsBuilder`]:
//!
//! - NULLs per key column ("NULL in a key column");
//! - whether the table's unique key was strictly ascending in file order.
//!   Files written in key order, as a primary-key scan of the source gives
//!   them, are thereby proven free of duplicates; any other order sends the
//!   duplicate rules to a SQL aggregation instead (see
//!   `transform::quality`);
//! - whether a fact file's rows were in [`Table::daily_key`] order, which
//!   the transform relies on when the manifest says so;
//! - per date of the table's date column: rows, and the sums of the
//!   reconciled columns (the calendar membership rule and the
//!   reconciliation read these).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int32Type, Int64Type};

use crate::schema::Table;

/// The most columns in a [`Table::unique_key`].
pub const MAX_KEY_COLUMNS: usize = 3;

/// What a complete scan of a raw file found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanFacts {
    /// Data rows read (quarantined rows excluded).
    pub rows: u64,
    /// NULLs per key column, in [`Table::key_columns`] order.
    pub null_keys: Vec<(&'static str, u64)>,
    /// Whether [`Table::unique_key`] was strictly ascending in file order,
    /// which proves it unique. Not ascending says nothing either way.
    pub unique_key: KeyOrder,
    /// Whether [`Table::daily_key`] never descended in file order.
    pub daily_key: KeyOrder,
    /// Per date (days since 1970-01-01) of [`Table::date_column`].
    pub dates: BTreeMap<i32, DateTotals>,
}

impl ScanFacts {
    /// The facts of this part of a file followed by `next`, the part after
    /// it.
    pub fn then(mut self, next: ScanFacts) -> ScanFacts {
        self.rows += next.rows;
        for ((_, nulls), (_, more)) in self.null_keys.iter_mut().zip(&next.null_keys) {
            *nulls += more;
        }
        self.unique_key = self.unique_key.then(next.unique_key);
        self.daily_key = self.daily_key.then(next.daily_key);
        for (date, totals) in next.dates {
            self.dates.entry(date).or_default().add(&totals);
        }
        self
    }
}

impl DateTotals {
    /// Adds `other`, the totals of more rows of the same date or week.
    pub fn add(&mut self, other: &DateTotals) {
        self.rows += other.rows;
        self.sums.resize(other.sums.len().max(self.sums.len()), 0);
        for (total, part) in self.sums.iter_mut().zip(&other.sums) {
            *total = total.wrapping_add(*part);
        }
        self.magnitudes
            .resize(other.magnitudes.len().max(self.magnitudes.len()), 0.0);
        for (total, part) in self.magnitudes.iter_mut().zip(&other.magnitudes) {
            *total += part;
        }
    }
}

/// A key of up to [`MAX_KEY_COLUMNS`] integer or date columns, as i64
/// (unused places 0).
pub type Key = [i64; MAX_KEY_COLUMNS];

/// Whether the values of some key columns ascended through a file (or a
/// part of it), strictly or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOrder {
    columns: &'static [&'static str],
    /// Whether two rows may have the same key.
    strict: bool,
    /// The first pair of consecutive keys out of order: (earlier, later).
    /// A NULL in a key column also breaks the order, with no pair.
    broken: Option<Option<(Key, Key)>>,
    /// The first and the last key, to join consecutive parts of a file.
    first: Option<Key>,
    last: Option<Key>,
}

impl KeyOrder {
    /// Each key must be greater than the one before it.
    pub fn strictly_ascending(columns: &'static [&'static str]) -> Self {
        KeyOrder {
            columns,
            strict: true,
            ..KeyOrder::default()
        }
    }

    /// Each key must be at least the one before it.
    pub fn ascending(columns: &'static [&'static str]) -> Self {
        KeyOrder {
            columns,
            strict: false,
            ..KeyOrder::default()
        }
    }

    /// True when every key so far kept the order (false for no columns).
    pub fn holds(&self) -> bool {
        !self.columns.is_empty() && self.broken.is_none()
    }

    /// The key columns.
    pub fn columns(&self) -> &'static [&'static str] {
        self.columns
    }

    /// The first two consecutive keys out of order, (earlier, later).
    pub fn first_break(&self) -> Option<(Key, Key)> {
        self.broken.flatten()
    }

    /// Takes in the next batch, which holds the key columns.
    pub fn observe(&mut self, batch: &RecordBatch) {
        if !self.holds() {
            return;
        }
        let Some(columns) = key_values(batch, self.columns) else {
            self.broken = Some(None);
            return;
        };
        for row in 0..batch.num_rows() {
            let mut key = [0; MAX_KEY_COLUMNS];
            for (place, values) in key.iter_mut().zip(&columns) {
                *place = values[row];
            }
            if let Some(last) = self.last.filter(|last| !self.in_order(last, &key)) {
                self.broken = Some(Some((last, key)));
                return;
            }
            self.first.get_or_insert(key);
            self.last = Some(key);
        }
    }

    fn in_order(&self, earlier: &Key, later: &Key) -> bool {
        if self.strict {
            earlier < later
        } else {
            earlier <= later
        }
    }

    /// The order of this part of a file followed by `next`.
    fn then(mut self, next: KeyOrder) -> KeyOrder {
        if self.broken.is_none() {
            self.broken = match (self.last, next.first) {
                (Some(last), Some(first)) if !self.in_order(&last, &first) => {
                    Some(Some((last, first)))
                }
                _ => next.broken,
            };
        }
        self.first = self.first.or(next.first);
        self.last = next.last.or(self.last);
        self
    }
}

/// The rows of one date and the sums of the table's reconciled columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DateTotals {
    pub rows: u64,
    /// Sums (scaled integers) of [`Table::reconciled_columns`], in order;
    /// NULLs count as nothing, as in SQL's SUM. They wrap around on
    /// overflow: they are exact whenever the [`DateTotals::magnitudes`]
    /// stay within the decimal type, which is checked before they are used.
    pub sums: Vec<i128>,
    /// Sums of the absolute values (scaled, as floating point, so they
    /// cannot overflow) of [`Table::summed_columns`], in order: no sum of
    /// any of the date's rows is larger.
    pub magnitudes: Vec<f64>,
}

/// Accumulates [`ScanFacts`] over the batches of one file, in file order.
pub struct FactsBuilder {
    table: Table,
    facts: ScanFacts,
}

impl FactsBuilder {
    /// A builder for a file of `table`.
    pub fn new(table: Table) -> Self {
        let facts = ScanFacts {
            null_keys: table.key_columns().map(|name| (name, 0)).collect(),
            unique_key: KeyOrder::strictly_ascending(table.unique_key()),
            daily_key: KeyOrder::ascending(table.daily_key()),
            ..ScanFacts::default()
        };
        FactsBuilder { table, facts }
    }

    /// The columns (indices in contract order) a batch must hold for
    /// [`FactsBuilder::observe`].
    pub fn columns(table: Table) -> Vec<usize> {
        let mut names: Vec<&str> = table.key_columns().collect();
        names.extend(table.unique_key());
        names.extend(table.daily_key());
        names.extend(table.date_column());
        names.extend(table.reconciled_columns());
        names.extend(table.summed_columns());
        let mut indices: Vec<usize> = names
            .into_iter()
            .filter_map(|name| table.column_index(name))
            .collect();
        indices.sort_unstable();
        indices.dedup();
        indices
    }

    /// Takes in the next batch of the file, with at least the columns of
    /// [`FactsBuilder::columns`].
    pub fn observe(&mut self, batch: &RecordBatch) {
        self.facts.rows += batch.num_rows() as u64;
        for (name, nulls) in &mut self.facts.null_keys {
            *nulls += column(batch, name).null_count() as u64;
        }
        self.facts.unique_key.observe(batch);
        self.facts.daily_key.observe(batch);
        self.add_date_totals(batch);
    }

    /// The facts of the whole file.
    pub fn finish(self) -> ScanFacts {
        self.facts
    }

    fn add_date_totals(&mut self, batch: &RecordBatch) {
        let Some(date_column) = self.table.date_column() else {
            return;
        };
        let dates = column(batch, date_column).as_primitive::<Date32Type>();
        let decimals = |names: &[&str]| -> Vec<_> {
            names
                .iter()
                .map(|name| column(batch, name).as_primitive::<Decimal128Type>())
                .collect()
        };
        let sums = decimals(self.table.reconciled_columns());
        let summed = decimals(self.table.summed_columns());
        // Rows come in runs of one date in most files: add up a run, then
        // touch the map once.
        let mut row = 0;
        while row < batch.num_rows() {
            let date = dates.is_valid(row).then(|| dates.value(row));
            let mut run = DateTotals {
                rows: 0,
                sums: vec![0; sums.len()],
                magnitudes: vec![0.0; summed.len()],
            };
            while row < batch.num_rows() && dates.is_valid(row).then(|| dates.value(row)) == date {
                run.rows += 1;
                for (total, column) in run.sums.iter_mut().zip(&sums) {
                    if column.is_valid(row) {
                        *total = total.wrapping_add(column.value(row));
                    }
                }
                for (total, column) in run.magnitudes.iter_mut().zip(&summed) {
                    if column.is_valid(row) {
                        *total += column.value(row).unsigned_abs() as f64;
                    }
                }
                row += 1;
            }
            // Rows without a date are counted by the NULL rule, not here.
            if let Some(date) = date {
                self.facts.dates.entry(date).or_default().add(&run);
            }
        }
    }
}

/// The column `name` of a batch with all of `table`'s columns.
fn column<'b>(batch: &'b RecordBatch, name: &str) -> &'b dyn Array {
    batch
        .column_by_name(name)
        .expect("the batch holds the columns of FactsBuilder::columns")
        .as_ref()
}

/// The integer or date key columns `names` of `batch` as i64 values;
/// `None` when one holds a NULL.
fn key_values(batch: &RecordBatch, names: &[&str]) -> Option<Vec<Vec<i64>>> {
    names
        .iter()
        .map(|name| {
            let column = column(batch, name);
            if column.null_count() > 0 {
                return None;
            }
            Some(match column.data_type() {
                DataType::Int32 => widen(column.as_primitive::<Int32Type>().values()),
                DataType::Date32 => widen(column.as_primitive::<Date32Type>().values()),
                DataType::Int64 => column.as_primitive::<Int64Type>().values().to_vec(),
                other => unreachable!("keys are integers or dates, not {other}"),
            })
        })
        .collect()
}

fn widen(values: &[i32]) -> Vec<i64> {
    values.iter().map(|&v| v.into()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Value};

    fn sales_row(trans_id: i64, day: i32, amt: i128) -> Vec<Value<'static>> {
        let mut row = vec![Value::Null; Table::Sales.columns().len()];
        let mut set = |name: &str, value| row[Table::Sales.column_index(name).unwrap()] = value;
        set("trans_id", Value::Int(trans_id));
        set("trans_dt", Value::Date(day));
        set("prod_key", Value::Int(1));
        set("store_key", Value::Int(1));
        set("sales_amt", Value::Decimal(amt));
        set("sales_qty", Value::Decimal(100));
        row
    }

    fn facts_of(batches: &[Vec<Vec<Value<'static>>>]) -> ScanFacts {
        let mut facts = FactsBuilder::new(Table::Sales);
        for rows in batches {
            let mut builder = BatchBuilder::new(Table::Sales, rows.len());
            for row in rows {
                builder.push(row);
            }
            facts.observe(&builder.finish());
        }
        facts.finish()
    }

    #[test]
    fn ascending_keys_across_batches_and_date_totals() {
        let facts = facts_of(&[
            vec![sales_row(1, 10, 250), sales_row(2, 10, 100)],
            vec![sales_row(3, 11, 5)],
        ]);
        assert!(facts.unique_key.holds());
        assert_eq!(facts.rows, 3);
        assert_eq!(facts.dates[&10].rows, 2);
        assert_eq!(facts.dates[&10].sums, vec![350, 200]);
        assert_eq!(facts.dates[&11].sums, vec![5, 100]);
        assert!(facts.null_keys.iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn a_repeated_or_descending_key_is_not_ascending() {
        let repeated = facts_of(&[vec![sales_row(1, 10, 1)], vec![sales_row(1, 10, 1)]]);
        assert!(!repeated.unique_key.holds());
        let descending = facts_of(&[vec![sales_row(2, 10, 1), sales_row(1, 10, 1)]]);
        assert!(!descending.unique_key.holds());
    }

    #[test]
    fn parts_join_in_file_order() {
        let first = facts_of(&[vec![sales_row(1, 10, 1), sales_row(2, 10, 2)]]);
        let second = facts_of(&[vec![sales_row(3, 10, 4), sales_row(4, 11, 8)]]);
        let whole = first.clone().then(second.clone());
        assert!(whole.unique_key.holds());
        assert_eq!(whole.rows, 4);
        assert_eq!(whole.dates[&10].sums, vec![7, 300]);
        assert_eq!(whole.dates[&11].rows, 1);
        assert!(!second.then(first).unique_key.holds());
    }

    #[test]
    fn daily_key_order_allows_repeats_and_names_the_first_break() {
        let in_order = facts_of(&[
            vec![sales_row(2, 10, 1), sales_row(1, 10, 1)],
            vec![sales_row(3, 11, 1)],
        ]);
        assert!(in_order.daily_key.holds());
        assert!(!in_order.unique_key.holds());
        let later_day_first = facts_of(&[vec![sales_row(1, 11, 1), sales_row(2, 10, 1)]]);
        assert!(!later_day_first.daily_key.holds());
        assert_eq!(
            later_day_first.daily_key.first_break(),
            Some(([11, 1, 1], [10, 1, 1]))
        );
        let first = facts_of(&[vec![sales_row(1, 12, 1)]]);
        let second = facts_of(&[vec![sales_row(2, 11, 1)]]);
        let joined = first.then(second);
        assert_eq!(
            joined.daily_key.first_break(),
            Some(([12, 1, 1], [11, 1, 1]))
        );
        assert!(!FactsBuilder::new(Table::Store).finish().daily_key.holds());
    }

    #[test]
    fn null_keys_are_counted_and_break_the_order() {
        let mut row = sales_row(1, 10, 1);
        row[Table::Sales.column_index("store_key").unwrap()] = Value::Null;
        let facts = facts_of(&[vec![row]]);
        assert!(facts.null_keys.contains(&("store_key", 1)));
        let mut row = sales_row(1, 10, 1);
        row[Table::Sales.column_index("trans_id").unwrap()] = Value::Null;
        assert!(!facts_of(&[vec![row]]).unique_key.holds());
    }
}
