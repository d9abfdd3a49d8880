//! MySQL and MariaDB sources (`mysql://user@host:port/db`).
//!
//! A table is read with one `SELECT` of the contract's columns over the
//! text protocol, which the server streams: rows become Arrow batches as
//! they arrive, so memory stays at one batch whatever the table size.
//! Values are parsed from the server's text by the raw zone's parsers, so
//! decimals stay exact.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::FormatOptions;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use super::endpoint::{ConnectFailure, Endpoint, TlsMode};
use super::network::{
    CatalogColumn, SqlLiterals, TextRows, block_on, create_table_sql, install_crypto_provider,
    schema_differences, schema_result,
};
use super::{Rows, SourceError};
use crate::schema::Table;

/// Rows per multi-row `INSERT` when loading.
const INSERT_ROWS: usize = 2000;

/// A MySQL-compatible server.
#[derive(Debug, Clone)]
pub struct MysqlSource {
    endpoint: Endpoint,
}

impl MysqlSource {
    pub fn new(endpoint: Endpoint) -> Self {
        MysqlSource { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a connection, telling refused connections, bad credentials and
    /// unknown databases apart. `PREFERRED` tries TLS (unverified) first and
    /// falls back to plain TCP when the server has no TLS, as the `mysql`
    /// client does.
    pub async fn connect(&self) -> Result<Conn, SourceError> {
        install_crypto_provider();
        let e = &self.endpoint;
        let opts = |ssl: Option<SslOpts>| {
            OptsBuilder::default()
                .ip_or_hostname(e.host.clone())
                .tcp_port(e.port)
                .user(Some(e.user.clone()))
                .pass(e.password.as_ref().map(|p| p.expose().to_string()))
                .db_name(Some(e.database.clone()))
                .prefer_socket(false)
                .ssl_opts(ssl)
        };
        let connected = match Conn::new(opts(ssl_opts(e))).await {
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if e.tls == TlsMode::Prefer => Conn::new(opts(None)).await,
            other => other,
        };
        connected.map_err(|error| {
            let cause = match &error {
                mysql_async::Error::Server(s) if s.code == 1045 => ConnectFailure::Authentication,
                mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1049) => {
                    ConnectFailure::UnknownDatabase
                }
                mysql_async::Error::Io(mysql_async::IoError::Tls(_)) => ConnectFailure::Tls,
                // rustls errors arrive as plain I/O errors.
                mysql_async::Error::Io(io) if is_tls_failure(&io.to_string()) => {
                    ConnectFailure::Tls
                }
                mysql_async::Error::Io(_) => ConnectFailure::Unreachable,
                _ => ConnectFailure::Other,
            };
            e.connect_error(cause, &error.to_string())
        })
    }

    /// Drops and recreates the five contract tables.
    pub fn create_tables(&self) -> Result<(), SourceError> {
        block_on(async {
            let mut conn = self.connect().await?;
            for table in Table::ALL {
                let drop = format!("DROP TABLE IF EXISTS {}", quote(table.name()));
                conn.query_drop(drop)
                    .await
                    .map_err(|e| sql_error(table, e))?;
                conn.query_drop(create_table_sql(table, quote))
                    .await
                    .map_err(|e| sql_error(table, e))?;
            }
            conn.disconnect().await.ok();
            Ok(())
        })?
    }

    /// Checks that the five tables have the contract's columns with fitting
    /// types; fails listing every difference.
    pub fn check_tables(&self) -> Result<(), SourceError> {
        block_on(async {
            let mut conn = self.connect().await?;
            let mut differences = Vec::new();
            for table in Table::ALL {
                differences.extend(self.table_differences(&mut conn, table).await?);
            }
            conn.disconnect().await.ok();
            schema_result(self.endpoint.describe(), differences)
        })?
    }

    async fn table_differences(
        &self,
        conn: &mut Conn,
        table: Table,
    ) -> Result<Vec<String>, SourceError> {
        let rows: Vec<(String, String, Option<i64>, Option<i64>)> = conn
            .exec(
                "SELECT column_name, data_type, numeric_precision, numeric_scale \
                 FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (table.name(),),
            )
            .await
            .map_err(|e| sql_error(table, e))?;
        let found: Vec<CatalogColumn> = rows
            .into_iter()
            .map(|(name, data_type, precision, scale)| CatalogColumn {
                name,
                data_type: data_type.to_ascii_lowercase(),
                precision,
                scale,
            })
            .collect();
        Ok(schema_differences(table, &found))
    }

    /// Streams the `rows` of `table` in batches of `batch_rows`; returns
    /// the rows read. `sink` runs outside the async driver, so it may
    /// block. A whole table is read over the text protocol; dated rows
    /// with a prepared statement whose columns are cast to text, so both
    /// arrive as the server's text.
    pub fn read_table(
        &self,
        table: Table,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        let mut conn = block_on(self.connect())??;
        let count = match rows {
            Rows::All => {
                let select = super::select_sql(table, rows, quote, |name| name, |_| "?".into());
                let result = block_on(conn.query_iter(select.sql))?
                    .map_err(|e| self.read_error(table, e))?;
                self.stream(table, result, batch_rows, sink)?
            }
            Rows::Dated(_) => {
                let as_text = |name| format!("CAST({name} AS CHAR)");
                let select = super::select_sql(table, rows, quote, as_text, |_| "?".into());
                let result = block_on(conn.exec_iter(select.sql, select.params))?
                    .map_err(|e| self.read_error(table, e))?;
                self.stream(table, result, batch_rows, sink)?
            }
        };
        block_on(conn.disconnect())?.ok();
        Ok(count)
    }

    /// Turns the text rows of `result` into batches for `sink`.
    fn stream<P: mysql_async::prelude::Protocol>(
        &self,
        table: Table,
        mut result: mysql_async::QueryResult<'_, 'static, P>,
        batch_rows: usize,
        mut sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        let mut rows = TextRows::new(table, batch_rows);
        loop {
            let next = block_on(async {
                while let Some(row) = result.next().await.map_err(|e| self.read_error(table, e))? {
                    let cells = (0..row.len()).map(|i| match row.as_ref(i) {
                        Some(mysql_async::Value::Bytes(bytes)) => Some(bytes.as_slice()),
                        _ => None,
                    });
                    if let Some(batch) = rows.push(cells)? {
                        return Ok(Some(batch));
                    }
                }
                Ok::<_, SourceError>(None)
            })??;
            match next {
                Some(batch) => sink(batch)?,
                None => break,
            }
        }
        drop(result);
        let (last, count) = rows.finish();
        if let Some(batch) = last {
            sink(batch)?;
        }
        Ok(count)
    }

    /// Creates the index on each fact table's business date.
    pub fn create_date_indexes(&self) -> Result<(), SourceError> {
        block_on(async {
            let mut conn = self.connect().await?;
            for table in Table::FACTS {
                if let Some(sql) = super::date_index_sql(table, quote) {
                    conn.query_drop(sql)
                        .await
                        .map_err(|e| sql_error(table, e))?;
                }
            }
            conn.disconnect().await.ok();
            Ok(())
        })?
    }

    /// The number `sql` (a `SELECT count(*)` about `table`) returns.
    pub fn count(&self, table: Table, sql: &str) -> Result<u64, SourceError> {
        block_on(async {
            let mut conn = self.connect().await?;
            let count: Option<i64> = conn
                .query_first(sql)
                .await
                .map_err(|e| sql_error(table, e))?;
            conn.disconnect().await.ok();
            Ok(count.unwrap_or(0).max(0) as u64)
        })?
    }

    /// Whether an index of `table` has `column` as its first column.
    pub fn has_index_on(&self, table: Table, column: &str) -> Result<bool, SourceError> {
        block_on(async {
            let mut conn = self.connect().await?;
            let count: Option<i64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.statistics \
                     WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ? AND seq_in_index = 1",
                    (table.name(), column),
                )
                .await
                .map_err(|e| sql_error(table, e))?;
            conn.disconnect().await.ok();
            Ok(count.unwrap_or(0) > 0)
        })?
    }

    /// An error while a table streams: a lost connection can be retried.
    fn read_error(&self, table: Table, error: mysql_async::Error) -> SourceError {
        match error {
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => SourceError::Dropped {
                source_name: self.endpoint.describe(),
                table,
                message: error.to_string(),
            },
            mysql_async::Error::Server(ref s) if is_connection_killed(s.code) => {
                SourceError::Dropped {
                    source_name: self.endpoint.describe(),
                    table,
                    message: error.to_string(),
                }
            }
            other => sql_error(table, other),
        }
    }

    /// Opens a loader that inserts with multi-row `INSERT`s.
    pub fn loader(&self) -> Result<MysqlLoader, SourceError> {
        let conn = block_on(self.connect())??;
        Ok(MysqlLoader { conn })
    }
}

fn is_tls_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["certificate", "tls", "handshake"]
        .iter()
        .any(|word| message.contains(word))
}

/// Server errors that mean the connection was killed or the server is going
/// away (ER_SERVER_SHUTDOWN, ER_QUERY_INTERRUPTED, ER_CONNECTION_KILLED).
fn is_connection_killed(code: u16) -> bool {
    matches!(code, 1053 | 1317 | 1927)
}

/// Loads generated batches into MySQL.
pub struct MysqlLoader {
    conn: Conn,
}

impl MysqlLoader {
    /// Inserts every row of `batch` into `table`.
    pub fn insert(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SourceError> {
        let options = FormatOptions::default();
        let literals = SqlLiterals::new(table, batch, &options);
        let head = format!("INSERT INTO {} VALUES ", quote(table.name()));
        block_on(async {
            let mut start = 0;
            while start < batch.num_rows() {
                let end = (start + INSERT_ROWS).min(batch.num_rows());
                let mut sql = head.clone();
                for row in start..end {
                    if row > start {
                        sql.push_str(", ");
                    }
                    literals.write_row(row, &mut sql);
                }
                self.conn
                    .query_drop(sql)
                    .await
                    .map_err(|e| sql_error(table, e))?;
                start = end;
            }
            Ok(())
        })?
    }

    /// Ends the load (each `INSERT` committed on its own).
    pub fn commit(self) -> Result<(), SourceError> {
        block_on(self.conn.disconnect())?.map_err(|e| SourceError::Load {
            message: e.to_string(),
        })
    }
}

fn ssl_opts(endpoint: &Endpoint) -> Option<SslOpts> {
    let base = || {
        let opts = SslOpts::default();
        match &endpoint.ca_file {
            Some(file) => opts
                .with_root_certs(vec![file.clone().into()])
                .with_disable_built_in_roots(true),
            None => opts,
        }
    };
    match endpoint.tls {
        TlsMode::Disable => None,
        TlsMode::Prefer | TlsMode::Require => Some(
            base()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyCa => Some(base().with_danger_skip_domain_validation(true)),
        TlsMode::VerifyFull => Some(base()),
    }
}

fn sql_error(table: Table, error: mysql_async::Error) -> SourceError {
    let message = match &error {
        mysql_async::Error::Server(s) if s.code == 1146 => format!(
            "{}; create the contract tables (`shelfline datagen` does)",
            s.message
        ),
        _ => error.to_string(),
    };
    SourceError::Sql { table, message }
}

/// Quotes an identifier from the contract (never from user input).
pub fn quote(identifier: &str) -> String {
    format!("`{identifier}`")
}
