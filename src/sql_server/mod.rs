//! `shelfline sql-server`: a read-only PostgreSQL wire-protocol server over
//! the lake, for psql, drivers (psycopg, pgJDBC, SQLAlchemy) and BI tools.
//!
//! The protocol, `pg_catalog`, `information_schema` and the type mapping
//! come from `datafusion-postgres` (on `pgwire`). This module adds what a
//! shared server over a lake that changes every night needs:
//!
//! - **The latest versions, per statement** ([`sessions`]): a statement
//!   runs on the tables' latest committed versions at its start, so a
//!   client sees a new night's data without reconnecting.
//! - **Read-only** ([`guard`]): only queries run, by `shelfline query`'s
//!   rule; anything else is refused with SQLSTATE 25006 before it runs.
//! - **Contained** ([`queries`]): a statement timeout (57014); a statement
//!   whose files a publication removed while it ran fails with 40001,
//!   saying to run it again; a connection limit (53300, [`login`]).
//! - **Logins** ([`login`]): SCRAM-SHA-256 with the configured password;
//!   without a password, loopback addresses only; TLS when configured.

mod cancel;
mod catalog_queries;
mod functions;
mod guard;
mod login;
mod queries;
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::PgWireServerHandlers;
use pgwire::tokio::process_socket;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Config, SqlServerConfig};
use crate::lake::Lake;
use crate::server::{CredentialsError, resolve, secret};
use cancel::{CancelSignal, Cancels};
use login::{Gate, LoginLog, Logins};
use queries::Queries;
use sessions::LakeSessions;

/// Environment variable holding the SQL server's password (over
/// `sql_server.password_file`).
pub const PASSWORD_ENV: &str = "SHELFLINE_SQL_PASSWORD";

/// Why the SQL server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SqlServerError {
    #[error("`sql_server.bind` = {0:?} is not an address like 127.0.0.1:5433 or localhost:5433")]
    Address(String),
    #[error(
        "the SQL server would listen on {0}, which is not a loopback address, with no password: set {PASSWORD_ENV} or `sql_server.password_file`, or bind 127.0.0.1"
    )]
    Insecure(SocketAddr),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the SQL server's password")]
    Password(#[from] CredentialsError),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The password of `[sql_server]`: `SHELFLINE_SQL_PASSWORD` (from `var`,
/// the environment), else `password_file`; `None` when neither is set.
pub fn password(
    settings: &SqlServerConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, CredentialsError> {
    secret(
        var(PASSWORD_ENV),
        settings.password_file.as_deref(),
        "sql_server.password_file",
        PASSWORD_ENV,
    )
}

/// A bound SQL server, ready to serve.
pub struct SqlServer {
    listener: TcpListener,
    address: SocketAddr,
    shared: Arc<Shared>,
}

/// What every connection shares.
struct Shared {
    sessions: Arc<LakeSessions>,
    logins: Logins,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    connections: Arc<Semaphore>,
    cancels: Arc<Cancels>,
    settings: SqlServerConfig,
}

impl SqlServer {
    /// Checks the `[sql_server]` settings of `config` (the password from
    /// `var`, the environment), then binds `bind`.
    pub async fn bind(
        config: &Config,
        lake: Lake,
        bind: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<SqlServer, SqlServerError> {
        let settings = config.sql_server.clone();
        let password = password(&settings, var)?;
        let tls = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Some(login::tls_acceptor(cert, key)?),
            _ => None,
        };
        let address = resolve(bind)
            .await
            .ok_or_else(|| SqlServerError::Address(bind.to_string()))?;
        if !address.ip().is_loopback() && password.is_none() {
            return Err(SqlServerError::Insecure(address));
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| SqlServerError::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| SqlServerError::Bind { address, source })?;
        let shared = Shared {
            sessions: Arc::new(LakeSessions::new(lake, config.clone())),
            logins: Logins::new(&settings.username, password.as_deref()),
            tls,
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            cancels: Arc::default(),
            settings,
        };
        Ok(SqlServer {
            listener,
            address,
            shared: Arc::new(shared),
        })
    }

    /// The address it listens on (port 0 in `bind` picks one).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether clients log in with a password (else: loopback, no password).
    pub fn has_password(&self) -> bool {
        self.shared.logins.has_password()
    }

    /// Serves connections until the process ends; a connection's failure
    /// ends only that connection.
    pub async fn run(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("SQL server: cannot accept a connection: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                let permit = Arc::clone(&shared.connections).try_acquire_owned().ok();
                let connection = Arc::new(Connection {
                    over_limit: permit.is_none(),
                    shared: Arc::clone(&shared),
                    cancel: CancelSignal::new(),
                });
                let tls = shared.tls.clone();
                if let Err(error) = process_socket(socket, tls, Arc::clone(&connection)).await {
                    tracing::debug!("SQL server: connection from {peer} ended: {error}");
                }
                shared.cancels.forget(&connection.cancel);
                drop(permit);
            });
        }
    }
}

/// The handlers of one connection.
struct Connection {
    shared: Arc<Shared>,
    /// Whether `max_connections` were already served when it came.
    over_limit: bool,
    /// Its cancel requests.
    cancel: Arc<CancelSignal>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(self.queries())
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(self.queries())
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        let settings = &self.shared.settings;
        Arc::new(Gate::new(
            &self.shared.logins,
            self.over_limit.then_some(settings.max_connections),
            settings.statement_timeout_secs,
        ))
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::new(LoginLog)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.shared.cancels)
    }
}

impl Connection {
    fn queries(&self) -> Queries {
        let limit = match self.shared.settings.statement_timeout_secs {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        };
        Queries::new(
            Arc::clone(&self.shared.sessions),
            limit,
            Arc::clone(&self.cancel),
            Arc::clone(&self.shared.cancels),
        )
    }
}
