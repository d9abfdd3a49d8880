//! Who may connect, and how: the connection limit, SCRAM-SHA-256 logins
//! (or, with no password, loopback clients without one), TLS, and the log
//! of failed logins.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{
    SCRAM_ITERATIONS, ScramAuth, gen_salted_password, random_nonce,
};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ErrorHandler, METADATA_USER, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::SqlServerError;
use super::queries::STATEMENT_TIMEOUT_KEY;
use crate::text::{VALUE_CHARS, excerpt};

/// How clients log in.
pub(super) struct Logins {
    /// The configured user's password as SCRAM keeps it; `None`: no
    /// password (loopback clients only, any user).
    scram: Option<Arc<ScramSecret>>,
    /// The connections' process ids and cancel secrets: one generator for
    /// the server, so that each connection gets its own process id.
    keys: Arc<RandomPidSecretKeyGenerator>,
}

impl Logins {
    pub(super) fn new(username: &str, password: Option<&str>) -> Logins {
        let scram = password.map(|password| {
            let salt = random_nonce().into_bytes();
            let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
            let decoy = gen_salted_password(&random_nonce(), &salt, SCRAM_ITERATIONS);
            Arc::new(ScramSecret {
                username: username.to_string(),
                salt,
                salted,
                decoy,
            })
        });
        Logins {
            scram,
            keys: Arc::default(),
        }
    }

    pub(super) fn has_password(&self) -> bool {
        self.scram.is_some()
    }
}

/// The configured user's password, salted and hashed (never the password
/// itself), and a decoy for every other user name, so that their logins
/// fail exactly like a wrong password. `Debug` shows neither.
struct ScramSecret {
    username: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
    decoy: Vec<u8>,
}

impl Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for ScramSecret {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salted = if login.user() == Some(self.username.as_str()) {
            &self.salted
        } else {
            &self.decoy
        };
        Ok(Password::new(Some(self.salt.clone()), salted.clone()))
    }
}

/// No password: every client on this machine gets in.
struct Trust;

impl NoopStartupHandler for Trust {}

/// How one connection logs in.
enum Login {
    Trust(Trust),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

/// The startup of one connection: refused when the server is full, else
/// the login, with the session's statement timeout set.
pub(super) struct Gate {
    login: Login,
    /// `Some(max_connections)` when the server already serves that many.
    full: Option<usize>,
    statement_timeout_secs: u64,
}

impl Gate {
    pub(super) fn new(logins: &Logins, full: Option<usize>, statement_timeout_secs: u64) -> Gate {
        let login = match &logins.scram {
            Some(secret) => {
                let source: Arc<dyn AuthSource> = Arc::clone(secret) as _;
                let parameters = Arc::new(DefaultServerParameterProvider::default());
                let keys: Arc<dyn PidSecretKeyGenerator> = Arc::clone(&logins.keys) as _;
                Login::Scram(
                    SASLAuthStartupHandler::new(parameters)
                        .with_scram(ScramAuth::new(source))
                        .with_pid_secret_key_generator(keys),
                )
            }
            None => Login::Trust(Trust),
        };
        Gate {
            login,
            full,
            statement_timeout_secs,
        }
    }
}

#[async_trait]
impl StartupHandler for Gate {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = message {
            if let Some(limit) = self.full {
                return Err(fatal(
                    "53300",
                    format!(
                        "sorry, too many clients already: the SQL server serves {limit} connections at once (sql_server.max_connections)"
                    ),
                ));
            }
            if self.statement_timeout_secs > 0 {
                let millis = self.statement_timeout_secs.saturating_mul(1000);
                client
                    .metadata_mut()
                    .insert(STATEMENT_TIMEOUT_KEY.to_string(), millis.to_string());
            }
        }
        match &self.login {
            Login::Trust(trust) => trust.on_startup(client, message).await,
            Login::Scram(scram) => scram.on_startup(client, message).await,
        }
    }
}

/// An error that ends the connection.
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message,
    )))
}

/// Logs failed logins, with the user name and the client's address, and
/// tells the client as PostgreSQL does (SCRAM's own message names the user
/// of its exchange, which libpq leaves empty).
pub(super) struct LoginLog;

impl ErrorHandler for LoginLog {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if !matches!(
            error,
            PgWireError::InvalidPassword(_)
                | PgWireError::InvalidScramMessage(_)
                | PgWireError::UnsupportedSASLAuthMethod(_)
                | PgWireError::FailedToCoercePasswordMessage
        ) {
            return;
        }
        let user = client.metadata().get(METADATA_USER).map_or_else(
            || "(none)".to_string(),
            |user| excerpt(user.as_bytes(), VALUE_CHARS),
        );
        tracing::warn!(
            "SQL server: failed login as \"{user}\" from {}",
            client.socket_addr()
        );
        *error = fatal(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        );
    }
}

/// The TLS acceptor of `cert` (a PEM certificate chain) and `key` (its PEM
/// private key).
pub(super) fn tls_acceptor(
    cert: &Path,
    key: &Path,
) -> Result<pgwire::tokio::TlsAcceptor, SqlServerError> {
    let unreadable = |path: &Path, e: std::io::Error| {
        SqlServerError::Tls(format!("cannot read {}: {e}", path.display()))
    };
    let pem = std::fs::read(cert).map_err(|e| unreadable(cert, e))?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(cert, e))?;
    if chain.is_empty() {
        return Err(SqlServerError::Tls(format!(
            "{} holds no PEM certificate (sql_server.cert_file)",
            cert.display()
        )));
    }
    let pem = std::fs::read(key).map_err(|e| unreadable(key, e))?;
    let private_key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| unreadable(key, e))?
        .ok_or_else(|| {
            SqlServerError::Tls(format!(
                "{} holds no PEM private key (sql_server.key_file)",
                key.display()
            ))
        })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|e| {
            SqlServerError::Tls(format!(
                "{} and {} do not make a usable certificate: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}
