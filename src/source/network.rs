//! What the MySQL and PostgreSQL sources share: running their async drivers
//! from the synchronous source interface, turning text rows into Arrow
//! batches, checking a table's columns against the contract, and spelling
//! values in SQL.

use std::future::Future;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::SourceError;
use crate::batch::{BatchBuilder, Value};
use crate::raw::csv::parse_value;
use crate::schema::{Kind, Table};

/// Runs `future` to completion from synchronous code: on the current Tokio
/// runtime from a blocking thread (where extraction and datagen run), or on
/// a private one when there is none.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, SourceError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(tokio::task::block_in_place(|| handle.block_on(future))),
        Err(_) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SourceError::Load {
                    message: format!("cannot start an I/O runtime: {e}"),
                })?;
            Ok(runtime.block_on(future))
        }
    }
}

/// Installs aws-lc-rs as the process's TLS crypto provider, once. The MySQL
/// driver's rustls asks for the process default, and the build links two
/// providers (aws-lc-rs and ring, through other crates), so rustls cannot
/// pick one by itself.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another part of the process installed one first.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The widest contract table's width, with room to spare: a row's values
/// live in a fixed array, so the hot path allocates nothing.
const MAX_COLUMNS: usize = 32;

/// Builds the batches of one table from rows of text cells (`None` = NULL).
pub struct TextRows {
    table: Table,
    builder: BatchBuilder,
    batch_rows: usize,
    rows: u64,
}

impl TextRows {
    pub fn new(table: Table, batch_rows: usize) -> Self {
        assert!(
            table.columns().len() <= MAX_COLUMNS,
            "contract tables have at most {MAX_COLUMNS} columns"
        );
        TextRows {
            table,
            builder: BatchBuilder::new(table, batch_rows),
            batch_rows,
            rows: 0,
        }
    }

    /// Appends a row; returns a full batch when there is one.
    pub fn push<'a>(
        &mut self,
        cells: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Result<Option<RecordBatch>, SourceError> {
        self.rows += 1;
        let mut values = [Value::Null; MAX_COLUMNS];
        let columns = self.table.columns();
        for ((value, column), cell) in values.iter_mut().zip(columns).zip(cells) {
            if let Some(text) = cell {
                *value = parse_value(column.kind, text).map_err(|reason| SourceError::Value {
                    table: self.table,
                    column: column.name,
                    row: self.rows,
                    reason: format!("{reason} (read '{}')", String::from_utf8_lossy(text)),
                })?;
            }
        }
        self.builder.push(&values[..columns.len()]);
        Ok((self.builder.len() == self.batch_rows).then(|| self.builder.finish()))
    }

    /// The last, partial batch (if any) and the number of rows read.
    pub fn finish(mut self) -> (Option<RecordBatch>, u64) {
        let last = (!self.builder.is_empty()).then(|| self.builder.finish());
        (last, self.rows)
    }
}

/// One column of a source table as its catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    /// The catalog's type name, lower case (`int`, `numeric`, `varchar`…).
    pub data_type: String,
    pub precision: Option<i64>,
    pub scale: Option<i64>,
}

/// Compares a source table's columns with the contract's; an empty result
/// means every contract column is there with a type whose values fit.
pub fn schema_differences(table: Table, found: &[CatalogColumn]) -> Vec<String> {
    if found.is_empty() {
        return vec![format!(
            "table {table} does not exist (create it with the DDL of contract section 1, or run `shelfline datagen`)"
        )];
    }
    table
        .columns()
        .iter()
        .filter_map(|column| {
            let Some(actual) = found
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(column.name))
            else {
                return Some(format!(
                    "{table}.{}: missing (expected {})",
                    column.name, column.sql_type
                ));
            };
            (!type_fits(column.kind, actual)).then(|| {
                format!(
                    "{table}.{}: type {}{} cannot hold the contract's {}",
                    column.name,
                    actual.data_type,
                    match (actual.precision, actual.scale) {
                        (Some(p), Some(s)) if is_decimal(&actual.data_type) => format!("({p},{s})"),
                        _ => String::new(),
                    },
                    column.sql_type
                )
            })
        })
        .collect()
}

fn is_decimal(data_type: &str) -> bool {
    matches!(data_type, "decimal" | "numeric")
}

/// Whether every value of the source column converts to `kind` exactly.
fn type_fits(kind: Kind, column: &CatalogColumn) -> bool {
    let t = column.data_type.as_str();
    match kind {
        Kind::Int32 => matches!(t, "int" | "integer" | "mediumint" | "smallint" | "tinyint"),
        Kind::Int64 => matches!(
            t,
            "int" | "integer" | "mediumint" | "smallint" | "tinyint" | "bigint"
        ),
        Kind::Decimal(precision, scale) => {
            is_decimal(t)
                && column.scale == Some(i64::from(scale))
                && column.precision.is_some_and(|p| p <= i64::from(precision))
        }
        Kind::Date => t == "date",
        // MySQL's BOOLEAN is TINYINT(1).
        Kind::Boolean => matches!(t, "boolean" | "bool" | "tinyint"),
        Kind::Utf8 => matches!(
            t,
            "varchar"
                | "character varying"
                | "char"
                | "character"
                | "text"
                | "mediumtext"
                | "longtext"
                | "tinytext"
        ),
        Kind::Float64 => false,
    }
}

/// The outcome of a schema check: fails with every difference found.
pub fn schema_result(source_name: String, differences: Vec<String>) -> Result<(), SourceError> {
    if differences.is_empty() {
        Ok(())
    } else {
        Err(SourceError::Schema {
            source_name,
            differences,
        })
    }
}

/// The DDL of contract section 1 for `table`, identifiers quoted by `quote`.
pub fn create_table_sql(table: Table, quote: fn(&str) -> String) -> String {
    let columns: Vec<String> = table
        .columns()
        .iter()
        .map(|c| {
            let not_null = if c.not_null { " NOT NULL" } else { "" };
            format!("  {} {}{}", quote(c.name), c.sql_type, not_null)
        })
        .collect();
    format!(
        "CREATE TABLE {} (\n{}\n)",
        quote(table.name()),
        columns.join(",\n")
    )
}

/// Formats the values of a batch as SQL literals, row by row.
pub struct SqlLiterals<'a> {
    kinds: Vec<Kind>,
    arrays: &'a [ArrayRef],
    formatters: Vec<ArrayFormatter<'a>>,
}

impl<'a> SqlLiterals<'a> {
    pub fn new(table: Table, batch: &'a RecordBatch, options: &'a FormatOptions<'a>) -> Self {
        let formatters = batch
            .columns()
            .iter()
            .map(|array| {
                ArrayFormatter::try_new(array.as_ref(), options)
                    .expect("contract column types have a text form")
            })
            .collect();
        SqlLiterals {
            kinds: table.columns().iter().map(|c| c.kind).collect(),
            arrays: batch.columns(),
            formatters,
        }
    }

    /// Appends `(v1, v2, …)` for `row` to `sql`.
    pub fn write_row(&self, row: usize, sql: &mut String) {
        use std::fmt::Write as _;
        sql.push('(');
        for (i, ((kind, array), formatter)) in self
            .kinds
            .iter()
            .zip(self.arrays)
            .zip(&self.formatters)
            .enumerate()
        {
            if i > 0 {
                sql.push_str(", ");
            }
            if array.is_null(row) {
                sql.push_str("NULL");
            } else if matches!(kind, Kind::Utf8 | Kind::Date) {
                let text = formatter.value(row).to_string();
                sql.push('\'');
                for c in text.chars() {
                    match c {
                        '\'' => sql.push_str("''"),
                        '\\' => sql.push_str("\\\\"),
                        c => sql.push(c),
                    }
                }
                sql.push('\'');
            } else {
                let _ = write!(sql, "{}", formatter.value(row));
            }
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(
        name: &str,
        data_type: &str,
        precision: Option<i64>,
        scale: Option<i64>,
    ) -> CatalogColumn {
        CatalogColumn {
            name: name.to_string(),
            data_type: data_type.to_string(),
            precision,
            scale,
        }
    }

    #[test]
    fn every_difference_is_listed() {
        let found = vec![
            column("cal_dt", "date", None, None),
            column("store_key", "bigint", None, None),
            column("prod_key", "int", None, None),
            column("inventory_on_hand_qty", "decimal", Some(38), Some(4)),
            column("inventory_on_order_qty", "numeric", Some(20), Some(2)),
            column("out_of_stock_flg", "int", None, None),
            column("waste_qty", "double", None, None),
            column("promotion_flg", "tinyint", None, None),
        ];
        let differences = schema_differences(Table::Inventory, &found);
        assert_eq!(
            differences,
            [
                "inventory.store_key: type bigint cannot hold the contract's INT",
                "inventory.inventory_on_hand_qty: type decimal(38,4) cannot hold the contract's DECIMAL(38,2)",
                "inventory.waste_qty: type double cannot hold the contract's DECIMAL(38,2)",
                "inventory.next_delivery_dt: missing (expected DATE)",
            ]
        );
        assert!(schema_differences(Table::Store, &[])[0].contains("does not exist"));
    }
}
