//! The embedded default source: a SQLite database file.
//!
//! SQLite stores DECIMAL columns with NUMERIC affinity, i.e. as INTEGER or
//! REAL: reading rounds them to the column's scale, which is exact up to 15
//! significant digits (contract section 2).

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::Decimal128Type;
use datafusion::arrow::record_batch::RecordBatch;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::{Rows, SourceError};
use crate::batch::{BatchBuilder, Value};
use crate::raw::csv::{days_since_epoch, parse_decimal, show_days};
use crate::schema::{Column, Kind, Table};

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    /// A source at `path` (the file need not exist yet for `datagen`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSource { path: path.into() }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, create: bool) -> Result<Connection, SourceError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
            }
        } else if !self.path.exists() {
            return Err(self.error(
                "the database file does not exist; run `shelfline datagen` or point --source at your database"
                    .to_string(),
            ));
        }
        Connection::open_with_flags(&self.path, flags).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> SourceError {
        SourceError::Connect {
            source_name: format!("sqlite://{}", self.path.display()),
            message,
        }
    }

    /// Drops and recreates the five contract tables with the DDL of section 1.
    pub fn create_tables(&self) -> Result<(), SourceError> {
        let conn = self.open(true)?;
        for table in Table::ALL {
            let sql = format!(
                "DROP TABLE IF EXISTS {};\n{};",
                quote(table.name()),
                table.create_table_sql()
            );
            conn.execute_batch(&sql)
                .map_err(|e| SourceError::sql(table, e))?;
        }
        Ok(())
    }

    /// Creates the index on each fact table's business date.
    pub fn create_date_indexes(&self) -> Result<(), SourceError> {
        let conn = self.open(false)?;
        for table in Table::FACTS {
            if let Some(sql) = super::date_index_sql(table, quote) {
                conn.execute_batch(&sql)
                    .map_err(|e| SourceError::sql(table, e))?;
            }
        }
        Ok(())
    }

    /// The number `sql` (a `SELECT count(*)` about `table`) returns.
    pub fn count(&self, table: Table, sql: &str) -> Result<u64, SourceError> {
        let conn = self.open(false)?;
        conn.query_row(sql, [], |row| row.get::<_, i64>(0))
            .map(|count| count.max(0) as u64)
            .map_err(|e| SourceError::sql(table, e))
    }

    /// Whether an index of `table` has `column` as its first column.
    pub fn has_index_on(&self, table: Table, column: &str) -> Result<bool, SourceError> {
        let conn = self.open(false)?;
        conn.query_row(
            "SELECT count(*) FROM pragma_index_list(?1) AS list, pragma_index_info(list.name) AS info \
             WHERE info.seqno = 0 AND info.name = ?2",
            [table.name(), column],
            |row| row.get::<_, i64>(0),
        )
        .map(|count| count > 0)
        .map_err(|e| SourceError::sql(table, e))
    }

    /// Opens a bulk loader: one transaction, prepared inserts.
    pub fn loader(&self) -> Result<SqliteLoader, SourceError> {
        let conn = self.open(true)?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144; BEGIN",
        )
        .map_err(|e| self.error(e.to_string()))?;
        Ok(SqliteLoader { conn })
    }

    /// Streams `table` in batches of `batch_rows`, calling `sink` for each.
    /// Returns the number of rows read.
    pub fn read_table(
        &self,
        table: Table,
        rows: Rows<'_>,
        batch_rows: usize,
        mut sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        let conn = self.open(false)?;
        let select = super::select_sql(table, rows, quote, |name| name, |n| format!("?{n}"));
        let mut statement = conn
            .prepare(&select.sql)
            .map_err(|e| SourceError::sql(table, e))?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(&select.params))
            .map_err(|e| SourceError::sql(table, e))?;
        let mut builder = BatchBuilder::new(table, batch_rows);
        let mut count = 0u64;
        while let Some(row) = rows.next().map_err(|e| SourceError::sql(table, e))? {
            count += 1;
            let values = table
                .columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let cell = row.get_ref(i).map_err(|e| SourceError::sql(table, e))?;
                    read_value(table, column, cell, count)
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder.push(&values);
            if builder.len() == batch_rows {
                sink(builder.finish())?;
            }
        }
        if !builder.is_empty() {
            sink(builder.finish())?;
        }
        Ok(count)
    }
}

/// Converts one SQLite value to the column's kind.
fn read_value<'a>(
    table: Table,
    column: &Column,
    cell: ValueRef<'a>,
    row: u64,
) -> Result<Value<'a>, SourceError> {
    let bad = |reason: &str| SourceError::Value {
        table,
        column: column.name,
        row,
        reason: reason.to_string(),
    };
    let value = match (column.kind, cell) {
        (_, ValueRef::Null) => Value::Null,
        (Kind::Int32 | Kind::Int64, ValueRef::Integer(i)) => Value::Int(i),
        (Kind::Decimal(_, scale), ValueRef::Integer(i)) => {
            Value::Decimal(i128::from(i) * 10i128.pow(scale as u32))
        }
        (Kind::Decimal(_, scale), ValueRef::Real(f)) => {
            let scaled = (f * 10f64.powi(scale.into())).round();
            if !scaled.is_finite() || scaled.abs() >= 1e37 {
                return Err(bad("out of range"));
            }
            Value::Decimal(scaled as i128)
        }
        (Kind::Decimal(precision, scale), ValueRef::Text(t)) => {
            Value::Decimal(parse_decimal(t, precision, scale).map_err(|e| bad(&e))?)
        }
        (Kind::Date, ValueRef::Text(t)) => {
            let t = std::str::from_utf8(t).map_err(|_| bad("date is not UTF-8"))?;
            // Exactly YYYY-MM-DD, which sorts as the date does, so that a
            // window's range over the text holds the days it should.
            let date = Some(t)
                .filter(|t| t.len() == 10)
                .and_then(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
                .ok_or_else(|| bad("expected a date YYYY-MM-DD"))?;
            Value::Date(days_since_epoch(date))
        }
        (Kind::Boolean, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (Kind::Boolean, ValueRef::Text(t)) => match t {
            b"1" | b"true" | b"TRUE" => Value::Bool(true),
            b"0" | b"false" | b"FALSE" => Value::Bool(false),
            _ => return Err(bad("expected a boolean")),
        },
        (Kind::Utf8, ValueRef::Text(t)) => {
            Value::Text(std::str::from_utf8(t).map_err(|_| bad("text is not UTF-8"))?)
        }
        (kind, other) => {
            return Err(bad(&format!(
                "a {:?} value cannot be read as {kind:?}",
                other.data_type()
            )));
        }
    };
    Ok(value)
}

/// Inserts Arrow batches into SQLite inside one transaction.
pub struct SqliteLoader {
    conn: Connection,
}

impl SqliteLoader {
    /// Inserts every row of `batch` (whose schema is `table`'s).
    pub fn insert(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SourceError> {
        let placeholders = vec!["?"; table.columns().len()].join(", ");
        let sql = format!(
            "INSERT INTO {} VALUES ({placeholders})",
            quote(table.name())
        );
        let mut statement = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| SourceError::sql(table, e))?;
        let mut params: Vec<ToSqlOutput<'_>> = Vec::with_capacity(table.columns().len());
        for row in 0..batch.num_rows() {
            params.clear();
            for (array, column) in batch.columns().iter().zip(table.columns()) {
                params.push(sql_value(array.as_ref(), column.kind, row));
            }
            statement
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| SourceError::sql(table, e))?;
        }
        Ok(())
    }

    /// Commits the load.
    pub fn commit(self) -> Result<(), SourceError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| SourceError::Load {
                message: e.to_string(),
            })
    }
}

fn sql_value(array: &dyn Array, kind: Kind, row: usize) -> ToSqlOutput<'_> {
    if array.is_null(row) {
        return ToSqlOutput::Owned(SqlValue::Null);
    }
    let value = match kind {
        Kind::Int32 => SqlValue::Integer(downcast::<Int32Array>(array).value(row).into()),
        Kind::Int64 => SqlValue::Integer(downcast::<Int64Array>(array).value(row)),
        Kind::Decimal(_, scale) => {
            let scaled = array.as_primitive::<Decimal128Type>().value(row);
            SqlValue::Real(scaled as f64 / 10f64.powi(scale.into()))
        }
        Kind::Date => SqlValue::Text(show_days(downcast::<Date32Array>(array).value(row))),
        Kind::Boolean => SqlValue::Integer(downcast::<BooleanArray>(array).value(row).into()),
        Kind::Utf8 => {
            return ToSqlOutput::Borrowed(ValueRef::Text(
                downcast::<StringArray>(array).value(row).as_bytes(),
            ));
        }
        Kind::Float64 => SqlValue::Real(
            array
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(row),
        ),
    };
    ToSqlOutput::Owned(value)
}

fn downcast<T: 'static>(array: &dyn Array) -> &T {
    array
        .as_any()
        .downcast_ref::<T>()
        .expect("array type follows the contract schema")
}

/// Quotes an identifier from the contract (never from user input).
pub fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}
