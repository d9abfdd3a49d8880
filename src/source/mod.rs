//! Transactional databases that hold the five contract tables.
//!
//! A source is chosen by URL: the embedded default SQLite
//! (`sqlite://PATH`), MySQL/MariaDB (`mysql://user@host:port/db`) or
//! PostgreSQL (`postgres://user@host:port/db`). Every source reads a table
//! as a stream of Arrow batches with the contract schema and loads
//! generated batches in bulk.

pub mod endpoint;
pub mod mysql;
mod network;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::Table;
use crate::window::DateRange;
use endpoint::{Dialect, Endpoint, PASSWORD_ENV};
pub use mysql::{MysqlLoader, MysqlSource};
pub use postgres::{PostgresLoader, PostgresSource};
pub use sqlite::{SqliteLoader, SqliteSource};

/// A source database problem.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source '{url}' is not supported: use sqlite://PATH, mysql://USER@HOST:PORT/DB or postgres://USER@HOST:PORT/DB"
    )]
    Unsupported { url: String },
    #[error("source {url} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "source {source_name} does not match the contract (section 1):\n{}",
        .differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n")
    )]
    Schema {
        source_name: String,
        differences: Vec<String>,
    },
    /// The connection was lost while a table streamed; the table can be
    /// read again from its start.
    #[error("the connection to {source_name} was lost while reading table {table}: {message}")]
    Dropped {
        source_name: String,
        table: Table,
        message: String,
    },
    #[error("cannot open source {source_name}: {message}")]
    Connect {
        source_name: String,
        message: String,
    },
    #[error("source table {table}: {message}")]
    Sql { table: Table, message: String },
    #[error("source table {table}, row {row}, column {column}: {reason}")]
    Value {
        table: Table,
        column: &'static str,
        row: u64,
        reason: String,
    },
    #[error("loading the source failed: {message}")]
    Load { message: String },
    #[error("writing a batch of table {table} failed: {message}")]
    Sink { table: Table, message: String },
}

impl SourceError {
    /// Whether reading the table again may succeed (a lost connection, or
    /// a server that is not reachable yet).
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Dropped { .. })
    }

    fn sql(table: Table, error: rusqlite::Error) -> Self {
        let message = match &error {
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such table") => {
                format!("{m}; create the contract tables (`shelfline datagen` does)")
            }
            _ => error.to_string(),
        };
        SourceError::Sql { table, message }
    }
}

/// A transactional database, chosen by URL.
#[derive(Debug, Clone)]
pub enum Source {
    Sqlite(SqliteSource),
    Mysql(MysqlSource),
    Postgres(PostgresSource),
}

impl Source {
    /// Parses a source URL: `sqlite://PATH` (relative to the current
    /// folder), `mysql://…` or `postgres://…` (`postgresql://` too). The
    /// password of a server comes from `SHELFLINE_SOURCE_PASSWORD`, else
    /// `password_file`, else the URL.
    pub fn from_url(url: &str, password_file: Option<&Path>) -> Result<Source, SourceError> {
        let server = |dialect| {
            let env_password = std::env::var(PASSWORD_ENV).ok();
            Endpoint::parse(dialect, url, env_password, password_file)
        };
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("sqlite") if url.len() > "sqlite://".len() => {
                Ok(Source::Sqlite(SqliteSource::new(&url["sqlite://".len()..])))
            }
            Some("mysql") => Ok(Source::Mysql(MysqlSource::new(server(Dialect::Mysql)?))),
            Some("postgres" | "postgresql") => Ok(Source::Postgres(PostgresSource::new(server(
                Dialect::Postgres,
            )?))),
            _ => Err(SourceError::Unsupported {
                url: endpoint::redact(url),
            }),
        }
    }

    /// A name for messages (never holds a password).
    pub fn describe(&self) -> String {
        match self {
            Source::Sqlite(s) => format!("sqlite://{}", s.path().display()),
            Source::Mysql(s) => s.endpoint().describe(),
            Source::Postgres(s) => s.endpoint().describe(),
        }
    }

    /// Drops and recreates the contract tables.
    pub fn create_tables(&self) -> Result<(), SourceError> {
        match self {
            Source::Sqlite(s) => s.create_tables(),
            Source::Mysql(s) => s.create_tables(),
            Source::Postgres(s) => s.create_tables(),
        }
    }

    /// Checks that the source's tables have the contract's columns with
    /// types that hold their values; fails listing every difference. (The
    /// SQLite source's tables are read by name and checked value by value.)
    pub fn check_tables(&self) -> Result<(), SourceError> {
        match self {
            Source::Sqlite(_) => Ok(()),
            Source::Mysql(s) => s.check_tables(),
            Source::Postgres(s) => s.check_tables(),
        }
    }

    /// Opens a bulk loader.
    pub fn loader(&self) -> Result<Loader, SourceError> {
        match self {
            Source::Sqlite(s) => Ok(Loader::Sqlite(s.loader()?)),
            Source::Mysql(s) => Ok(Loader::Mysql(s.loader()?)),
            Source::Postgres(s) => Ok(Loader::Postgres(s.loader()?)),
        }
    }

    /// Streams the `rows` of `table` as batches; returns the rows read.
    pub fn read_table(
        &self,
        table: Table,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        match self {
            Source::Sqlite(s) => s.read_table(table, rows, batch_rows, sink),
            Source::Mysql(s) => s.read_table(table, rows, batch_rows, sink),
            Source::Postgres(s) => s.read_table(table, rows, batch_rows, sink),
        }
    }

    /// Creates an index on the business date of each fact table
    /// ([`Table::window_column`]), which windowed reads range over.
    pub fn create_date_indexes(&self) -> Result<(), SourceError> {
        match self {
            Source::Sqlite(s) => s.create_date_indexes(),
            Source::Mysql(s) => s.create_date_indexes(),
            Source::Postgres(s) => s.create_date_indexes(),
        }
    }

    /// The rows of the fact `table` that no date window holds (a NULL or
    /// unreadable business date); 0 for a dimension.
    pub fn undated_rows(&self, table: Table) -> Result<u64, SourceError> {
        let count = |quote| undated_sql(table, quote);
        match self {
            Source::Sqlite(s) => count(sqlite::quote).map_or(Ok(0), |sql| s.count(table, &sql)),
            Source::Mysql(s) => count(mysql::quote).map_or(Ok(0), |sql| s.count(table, &sql)),
            Source::Postgres(s) => count(postgres::quote).map_or(Ok(0), |sql| s.count(table, &sql)),
        }
    }

    /// When the fact `table` has no index led by its business date, the
    /// statement that creates one; `None` when it has one (or is a
    /// dimension).
    pub fn missing_date_index(&self, table: Table) -> Result<Option<String>, SourceError> {
        let Some(column) = table.window_column() else {
            return Ok(None);
        };
        let (indexed, quote) = match self {
            Source::Sqlite(s) => (
                s.has_index_on(table, column)?,
                sqlite::quote as fn(&str) -> String,
            ),
            Source::Mysql(s) => (
                s.has_index_on(table, column)?,
                mysql::quote as fn(&str) -> String,
            ),
            Source::Postgres(s) => (
                s.has_index_on(table, column)?,
                postgres::quote as fn(&str) -> String,
            ),
        };
        Ok((!indexed).then(|| date_index_sql(table, quote)).flatten())
    }
}

/// The statement counting the rows of the fact `table` that no date range
/// holds: a NULL business date, or one before year 1 (MySQL's zero
/// dates; in SQLite, numbers sort before text) or, in SQLite, after every
/// date (blobs sort after text). Ranges over the date's index.
fn undated_sql(table: Table, quote: fn(&str) -> String) -> Option<String> {
    let column = quote(table.window_column()?);
    Some(format!(
        "SELECT count(*) FROM {} WHERE {column} IS NULL OR {column} < '0001-01-01' OR {column} > '9999-12-31'",
        quote(table.name())
    ))
}

/// Which rows of a table a read returns.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// Every row.
    All,
    /// For a fact table, the rows whose business date lies in one of these
    /// ranges; a dimension is read whole.
    Dated(&'a [DateRange]),
}

/// A read's statement and its parameters (dates as `YYYY-MM-DD`).
struct Select {
    sql: String,
    params: Vec<String>,
}

/// `SELECT` of `table`'s contract columns in contract order, each column
/// spelled by `column` from its quoted name and the table name quoted by
/// `quote` (identifiers come from the contract, never from user input);
/// for dated `rows` of a fact table, a range condition on its business
/// date per range, each bound spelled by `param` from its 1-based number.
fn select_sql(
    table: Table,
    rows: Rows<'_>,
    quote: fn(&str) -> String,
    column: impl Fn(String) -> String,
    param: impl Fn(usize) -> String,
) -> Select {
    let columns: Vec<String> = table
        .columns()
        .iter()
        .map(|c| column(quote(c.name)))
        .collect();
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), quote(table.name()));
    let mut params = Vec::new();
    if let (Rows::Dated(ranges), Some(date)) = (rows, table.window_column()) {
        let mut conditions = Vec::new();
        for range in ranges {
            params.push(range.from.to_string());
            params.push(range.to.to_string());
            let (from, to) = (param(params.len() - 1), param(params.len()));
            conditions.push(format!("{} BETWEEN {from} AND {to}", quote(date)));
        }
        if conditions.is_empty() {
            conditions.push("1 = 0".to_string());
        }
        sql = format!("{sql} WHERE {}", conditions.join(" OR "));
    }
    Select { sql, params }
}

/// The name of the index on `table`'s business date that `datagen`
/// creates, and the statement that creates it.
pub fn date_index_sql(table: Table, quote: fn(&str) -> String) -> Option<String> {
    let column = table.window_column()?;
    Some(format!(
        "CREATE INDEX {} ON {} ({})",
        quote(&format!("{}_{column}", table.name())),
        quote(table.name()),
        quote(column)
    ))
}

/// A bulk loader into a source.
pub enum Loader {
    Sqlite(SqliteLoader),
    Mysql(MysqlLoader),
    Postgres(PostgresLoader),
}

impl Loader {
    /// Inserts every row of `batch` into `table`.
    pub fn insert(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SourceError> {
        match self {
            Loader::Sqlite(l) => l.insert(table, batch),
            Loader::Mysql(l) => l.insert(table, batch),
            Loader::Postgres(l) => l.insert(table, batch),
        }
    }

    /// Makes the load durable.
    pub fn commit(self) -> Result<(), SourceError> {
        match self {
            Loader::Sqlite(l) => l.commit(),
            Loader::Mysql(l) => l.commit(),
            Loader::Postgres(l) => l.commit(),
        }
    }
}
