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
    /// True when [`Table::unique_key`] was strictly ascending in file order,
    /// which proves it unique. False says nothing either way.
    pub unique_key_ascending: bool,
    /// Per date (days since 1970-01-01) of [`Table::date_column`].
    pub dates: BTreeMap<i32, DateTotals>,
    /// The unique key of the first and the last row (unused places 0), to
    /// join the facts of consecutive parts of a file.
    pub first_key: Option<[i64; MAX_KEY_COLUMNS]>,
    pub last_key: Option<[i64; MAX_KEY_COLUMNS]>,
}

impl ScanFacts {
    /// The facts of this part of a file followed by `next`, the part after
    /// it.
    pub fn then(mut self, next: ScanFacts) -> ScanFacts {
        self.rows += next.rows;
        for ((_, nulls), (_, more)) in self.null_keys.iter_mut().zip(&next.null_keys) {
            *nulls += more;
        }
        let joined_in_order = match (self.last_key, next.first_key) {
            (Some(last), Some(first)) => last < first,
            _ => true,
        };
        self.unique_key_ascending &= next.unique_key_ascending && joined_in_order;
        self.first_key = self.first_key.or(next.first_key);
        self.last_key = next.last_key.or(self.last_key);
        for (date, totals) in next.dates {
            self.dates.entry(date).or_default().add(&totals);
        }
        self
    }
}

impl DateTotals {
    fn add(&mut self, other: &DateTotals) {
        self.rows += other.rows;
        self.sums.resize(other.sums.len().max(self.sums.len()), 0);
        for (total, part) in self.sums.iter_mut().zip(&other.sums) {
            *total += part;
        }
    }
}

/// The rows of one date and the sums of the table's reconciled columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateTotals {
    pub rows: u64,
    /// Sums (scaled integers) of [`Table::reconciled_columns`], in order;
    /// NULLs count as nothing, as in SQL's SUM.
    pub sums: Vec<i128>,
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
            unique_key_ascending: true,
            ..ScanFacts::default()
        };
        FactsBuilder { table, facts }
    }

    /// The columns (indices in contract order) a batch must hold for
    /// [`FactsBuilder::observe`].
    pub fn columns(table: Table) -> Vec<usize> {
        let mut names: Vec<&str> = table.key_columns().collect();
        names.extend(table.unique_key());
        names.extend(table.date_column());
        names.extend(table.reconciled_columns());
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
        if self.facts.unique_key_ascending {
            self.facts.unique_key_ascending = self.keys_ascend(batch);
        }
        self.add_date_totals(batch);
    }

    /// The facts of the whole file.
    pub fn finish(self) -> ScanFacts {
        self.facts
    }

    /// Whether the unique key keeps strictly ascending through `batch`
    /// (a NULL breaks the order; the NULL rule reports it).
    fn keys_ascend(&mut self, batch: &RecordBatch) -> bool {
        let key_columns: Vec<&dyn Array> = self
            .table
            .unique_key()
            .iter()
            .map(|name| column(batch, name))
            .collect();
        if key_columns.is_empty() {
            return false;
        }
        for row in 0..batch.num_rows() {
            let mut key = [0; MAX_KEY_COLUMNS];
            for (place, column) in key.iter_mut().zip(&key_columns) {
                match integer_at(*column, row) {
                    Some(value) => *place = value,
                    None => return false,
                }
            }
            if self.facts.last_key.is_some_and(|last| last >= key) {
                return false;
            }
            self.facts.first_key.get_or_insert(key);
            self.facts.last_key = Some(key);
        }
        true
    }

    fn add_date_totals(&mut self, batch: &RecordBatch) {
        let Some(date_column) = self.table.date_column() else {
            return;
        };
        let dates = column(batch, date_column).as_primitive::<Date32Type>();
        let sums: Vec<_> = self
            .table
            .reconciled_columns()
            .iter()
            .map(|name| column(batch, name).as_primitive::<Decimal128Type>())
            .collect();
        // Rows come in runs of one date in most files: add up a run, then
        // touch the map once.
        let mut row = 0;
        while row < batch.num_rows() {
            let date = dates.is_valid(row).then(|| dates.value(row));
            let mut run = DateTotals {
                rows: 0,
                sums: vec![0; sums.len()],
            };
            while row < batch.num_rows() && dates.is_valid(row).then(|| dates.value(row)) == date {
                run.rows += 1;
                for (total, column) in run.sums.iter_mut().zip(&sums) {
                    if column.is_valid(row) {
                        *total += column.value(row);
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

/// The value of an integer or date column as i64; `None` when NULL.
fn integer_at(column: &dyn Array, row: usize) -> Option<i64> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        DataType::Int32 => Some(column.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Some(column.as_primitive::<Int64Type>().value(row)),
        DataType::Date32 => Some(column.as_primitive::<Date32Type>().value(row).into()),
        other => unreachable!("unique keys are integers or dates, not {other}"),
    }
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
        assert!(facts.unique_key_ascending);
        assert_eq!(facts.rows, 3);
        assert_eq!(facts.dates[&10].rows, 2);
        assert_eq!(facts.dates[&10].sums, vec![350, 200]);
        assert_eq!(facts.dates[&11].sums, vec![5, 100]);
        assert!(facts.null_keys.iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn a_repeated_or_descending_key_is_not_ascending() {
        let repeated = facts_of(&[vec![sales_row(1, 10, 1)], vec![sales_row(1, 10, 1)]]);
        assert!(!repeated.unique_key_ascending);
        let descending = facts_of(&[vec![sales_row(2, 10, 1), sales_row(1, 10, 1)]]);
        assert!(!descending.unique_key_ascending);
    }

    #[test]
    fn parts_join_in_file_order() {
        let first = facts_of(&[vec![sales_row(1, 10, 1), sales_row(2, 10, 2)]]);
        let second = facts_of(&[vec![sales_row(3, 10, 4), sales_row(4, 11, 8)]]);
        let whole = first.clone().then(second.clone());
        assert!(whole.unique_key_ascending);
        assert_eq!(whole.rows, 4);
        assert_eq!(whole.dates[&10].sums, vec![7, 300]);
        assert_eq!(whole.dates[&11].rows, 1);
        assert!(!second.then(first).unique_key_ascending);
    }

    #[test]
    fn null_keys_are_counted_and_break_the_order() {
        let mut row = sales_row(1, 10, 1);
        row[Table::Sales.column_index("store_key").unwrap()] = Value::Null;
        let facts = facts_of(&[vec![row]]);
        assert!(facts.null_keys.contains(&("store_key", 1)));
        let mut row = sales_row(1, 10, 1);
        row[Table::Sales.column_index("trans_id").unwrap()] = Value::Null;
        assert!(!facts_of(&[vec![row]]).unique_key_ascending);
    }
}
