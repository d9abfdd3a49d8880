//! Transactional databases that hold the five contract tables.
//!
//! A source is chosen by URL. The embedded default is SQLite
//! (`sqlite://PATH`); every source reads a table as a stream of Arrow
//! batches with the contract schema and loads generated batches in bulk.

pub mod sqlite;

use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::Table;
pub use sqlite::{SqliteLoader, SqliteSource};

/// A source database problem.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source '{url}' is not supported: use sqlite://PATH (MySQL and PostgreSQL are planned)"
    )]
    Unsupported { url: String },
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
}

impl Source {
    /// Parses `sqlite://PATH` (relative paths are relative to the current folder).
    pub fn from_url(url: &str) -> Result<Source, SourceError> {
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(Source::Sqlite(SqliteSource::new(path))),
            _ => Err(SourceError::Unsupported {
                url: url.to_string(),
            }),
        }
    }

    /// A name for messages (never holds a password).
    pub fn describe(&self) -> String {
        match self {
            Source::Sqlite(s) => format!("sqlite://{}", s.path().display()),
        }
    }

    /// Drops and recreates the contract tables.
    pub fn create_tables(&self) -> Result<(), SourceError> {
        match self {
            Source::Sqlite(s) => s.create_tables(),
        }
    }

    /// Opens a bulk loader.
    pub fn loader(&self) -> Result<Loader, SourceError> {
        match self {
            Source::Sqlite(s) => Ok(Loader::Sqlite(s.loader()?)),
        }
    }

    /// Streams `table` as batches; returns the rows read.
    pub fn read_table(
        &self,
        table: Table,
        batch_rows: usize,
        sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        match self {
            Source::Sqlite(s) => s.read_table(table, batch_rows, sink),
        }
    }
}

/// A bulk loader into a source.
pub enum Loader {
    Sqlite(SqliteLoader),
}

impl Loader {
    /// Inserts every row of `batch` into `table`.
    pub fn insert(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SourceError> {
        match self {
            Loader::Sqlite(l) => l.insert(table, batch),
        }
    }

    /// Makes the load durable.
    pub fn commit(self) -> Result<(), SourceError> {
        match self {
            Loader::Sqlite(l) => l.commit(),
        }
    }
}
