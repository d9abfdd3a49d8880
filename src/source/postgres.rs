//! PostgreSQL sources (`postgres://user@host:port/db`).
//!
//! A table is read with one `SELECT` of the contract's columns, each as
//! text, whose rows the server streams: they become Arrow batches as they
//! arrive, so memory stays at one batch whatever the table size. Values are
//! parsed from text by the raw zone's parsers, so decimals stay exact.
//! Loading uses `COPY … FROM STDIN` with the raw zone's CSV.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::endpoint::{ConnectFailure, Endpoint, TlsMode};
use super::network::{
    CatalogColumn, TextRows, block_on, create_table_sql, schema_differences, schema_result,
};
use super::{Rows, SourceError};
use crate::raw::csv::CsvEncoder;
use crate::schema::Table;

/// A PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    endpoint: Endpoint,
}

impl PostgresSource {
    pub fn new(endpoint: Endpoint) -> Self {
        PostgresSource { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a connection (its I/O runs on a spawned task), telling refused
    /// connections, bad credentials and unknown databases apart.
    pub async fn connect(&self) -> Result<Client, SourceError> {
        let e = &self.endpoint;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&e.host)
            .port(e.port)
            .user(&e.user)
            .dbname(&e.database)
            .application_name("shelfline")
            .ssl_mode(match e.tls {
                TlsMode::Disable => SslMode::Disable,
                TlsMode::Prefer => SslMode::Prefer,
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
            });
        if let Some(password) = &e.password {
            config.password(password.expose());
        }
        let connected = match e.tls {
            TlsMode::Disable => match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    Ok(client)
                }
                Err(error) => Err(error),
            },
            _ => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(e)?);
                match config.connect(tls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        Ok(client)
                    }
                    Err(error) => Err(error),
                }
            }
        };
        connected.map_err(|error| e.connect_error(connect_failure(&error), &error_text(&error)))
    }

    /// Drops and recreates the five contract tables.
    pub fn create_tables(&self) -> Result<(), SourceError> {
        block_on(async {
            let client = self.connect().await?;
            for table in Table::ALL {
                let sql = format!(
                    "DROP TABLE IF EXISTS {};\n{}",
                    quote(table.name()),
                    create_table_sql(table, quote)
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| sql_error(table, &e))?;
            }
            Ok(())
        })?
    }

    /// Checks that the five tables have the contract's columns with fitting
    /// types; fails listing every difference.
    pub fn check_tables(&self) -> Result<(), SourceError> {
        block_on(async {
            let client = self.connect().await?;
            let mut differences = Vec::new();
            for table in Table::ALL {
                differences.extend(self.table_differences(&client, table).await?);
            }
            schema_result(self.endpoint.describe(), differences)
        })?
    }

    async fn table_differences(
        &self,
        client: &Client,
        table: Table,
    ) -> Result<Vec<String>, SourceError> {
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, numeric_precision::bigint, numeric_scale::bigint \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table.name()],
            )
            .await
            .map_err(|e| sql_error(table, &e))?;
        let found: Vec<CatalogColumn> = rows
            .iter()
            .map(|row| CatalogColumn {
                name: row.get(0),
                data_type: row.get::<_, String>(1).to_ascii_lowercase(),
                precision: row.get(2),
                scale: row.get(3),
            })
            .collect();
        Ok(schema_differences(table, &found))
    }

    /// Streams the `rows` of `table` in batches of `batch_rows`; returns
    /// the rows read. `sink` runs outside the async driver, so it may
    /// block.
    pub fn read_table(
        &self,
        table: Table,
        rows: Rows<'_>,
        batch_rows: usize,
        mut sink: impl FnMut(RecordBatch) -> Result<(), SourceError>,
    ) -> Result<u64, SourceError> {
        let client = block_on(self.connect())??;
        let as_text = |name| format!("{name}::text");
        let select =
            super::select_sql(table, rows, quote, as_text, |n| format!("${n}::text::date"));
        let stream = block_on(client.query_raw(&select.sql, &select.params))?
            .map_err(|e| self.read_error(table, &e))?;
        let mut stream = Box::pin(stream);
        let mut rows = TextRows::new(table, batch_rows);
        loop {
            let next = block_on(async {
                while let Some(row) = stream.next().await {
                    let row = row.map_err(|e| self.read_error(table, &e))?;
                    let cells =
                        (0..row.len()).map(|i| row.get::<_, Option<&str>>(i).map(str::as_bytes));
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
        let (last, count) = rows.finish();
        if let Some(batch) = last {
            sink(batch)?;
        }
        Ok(count)
    }

    /// Creates the index on each fact table's business date.
    pub fn create_date_indexes(&self) -> Result<(), SourceError> {
        block_on(async {
            let client = self.connect().await?;
            for table in Table::FACTS {
                if let Some(sql) = super::date_index_sql(table, quote) {
                    client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| sql_error(table, &e))?;
                }
            }
            Ok(())
        })?
    }

    /// The number `sql` (a `SELECT count(*)` about `table`) returns.
    pub fn count(&self, table: Table, sql: &str) -> Result<u64, SourceError> {
        block_on(async {
            let client = self.connect().await?;
            let row = client
                .query_one(sql, &[])
                .await
                .map_err(|e| sql_error(table, &e))?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })?
    }

    /// Whether an index of `table` has `column` as its first column.
    pub fn has_index_on(&self, table: Table, column: &str) -> Result<bool, SourceError> {
        block_on(async {
            let client = self.connect().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                     WHERE i.indrelid = $1::text::regclass AND a.attname = $2",
                    &[&quote(table.name()), &column],
                )
                .await
                .map_err(|e| sql_error(table, &e))?;
            Ok(row.get::<_, i64>(0) > 0)
        })?
    }

    /// An error while a table streams: a lost connection can be retried.
    fn read_error(&self, table: Table, error: &tokio_postgres::Error) -> SourceError {
        let dropped = error.is_closed()
            || error.code().is_some_and(|c| {
                *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CONNECTION_FAILURE
            })
            || error.as_db_error().is_none();
        if dropped {
            SourceError::Dropped {
                source_name: self.endpoint.describe(),
                table,
                message: error_text(error),
            }
        } else {
            sql_error(table, error)
        }
    }

    /// Opens a loader that copies batches in as CSV.
    pub fn loader(&self) -> Result<PostgresLoader, SourceError> {
        let client = block_on(self.connect())??;
        Ok(PostgresLoader { client })
    }
}

/// Loads generated batches into PostgreSQL with `COPY … FROM STDIN`.
pub struct PostgresLoader {
    client: Client,
}

impl PostgresLoader {
    /// Copies every row of `batch` into `table`.
    pub fn insert(&mut self, table: Table, batch: &RecordBatch) -> Result<(), SourceError> {
        let load_error = |message: String| SourceError::Sql { table, message };
        let mut csv = CsvEncoder::new(Vec::new(), table).map_err(|e| load_error(e.to_string()))?;
        csv.write(batch).map_err(|e| load_error(e.to_string()))?;
        let data = Bytes::from(csv.finish().map_err(|e| load_error(e.to_string()))?);
        let sql = format!(
            "COPY {} FROM STDIN (FORMAT csv, HEADER true)",
            quote(table.name())
        );
        block_on(async {
            let sink = self
                .client
                .copy_in::<_, Bytes>(&sql)
                .await
                .map_err(|e| sql_error(table, &e))?;
            futures::pin_mut!(sink);
            sink.send(data).await.map_err(|e| sql_error(table, &e))?;
            sink.as_mut()
                .finish()
                .await
                .map_err(|e| sql_error(table, &e))?;
            Ok(())
        })?
    }

    /// Ends the load (each `COPY` committed on its own).
    pub fn commit(self) -> Result<(), SourceError> {
        Ok(())
    }
}

fn connect_failure(error: &tokio_postgres::Error) -> ConnectFailure {
    match error.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => ConnectFailure::Authentication,
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            ConnectFailure::Authentication
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => ConnectFailure::UnknownDatabase,
        Some(_) => ConnectFailure::Other,
        None => {
            let text = error_text(error).to_ascii_lowercase();
            if text.contains("tls") || text.contains("certificate") || text.contains("ssl") {
                ConnectFailure::Tls
            } else {
                ConnectFailure::Unreachable
            }
        }
    }
}

/// The error with its causes (tokio-postgres keeps the useful part there).
fn error_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

fn sql_error(table: Table, error: &tokio_postgres::Error) -> SourceError {
    let mut message = error_text(error);
    if error.code() == Some(&SqlState::UNDEFINED_TABLE) {
        message.push_str("; create the contract tables (`shelfline datagen` does)");
    }
    SourceError::Sql { table, message }
}

/// Quotes an identifier from the contract (never from user input).
pub fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

/// The rustls client configuration for `endpoint`'s TLS mode, as libpq reads
/// `sslmode`: `prefer` and `require` encrypt without verifying the server,
/// `verify-ca` checks the chain, `verify-full` the chain and the host name.
fn tls_config(endpoint: &Endpoint) -> Result<rustls::ClientConfig, SourceError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| endpoint.connect_error(ConnectFailure::Tls, &e.to_string()))?;
    let config = match endpoint.tls {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(root_store(endpoint)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| endpoint.connect_error(ConnectFailure::Tls, &e.to_string()))?;
            let verifier: Arc<dyn ServerCertVerifier> = if endpoint.tls == TlsMode::VerifyCa {
                Arc::new(AnyHostName(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(config)
}

fn root_store(endpoint: &Endpoint) -> Result<RootCertStore, SourceError> {
    let mut roots = RootCertStore::empty();
    match &endpoint.ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(file) => {
            let bad = |detail: String| {
                endpoint.connect_error(
                    ConnectFailure::Tls,
                    &format!("sslrootcert {}: {detail}", file.display()),
                )
            };
            let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(roots)
}

/// Accepts any certificate: encryption without authentication, which is
/// what `sslmode=prefer` and `require` mean.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the chain but not the host name (`sslmode=verify-ca`).
#[derive(Debug)]
struct AnyHostName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
