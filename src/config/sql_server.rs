//! The `[sql_server]` table: the PostgreSQL wire-protocol server over the
//! lake (`shelfline sql-server`, or `serve` with `enabled = true`). Plain
//! data; `sql_server` checks it and serves.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[sql_server]` table of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlServerConfig {
    /// Whether `shelfline serve` runs the SQL server too.
    pub enabled: bool,
    /// Address to listen on (`IP:PORT` or `HOST:PORT`). Without a password,
    /// only a loopback address is accepted.
    pub bind: String,
    /// The one user clients log in as.
    pub username: String,
    /// File holding the password (`SHELFLINE_SQL_PASSWORD` takes
    /// precedence). With a password, clients log in with SCRAM-SHA-256;
    /// without one, only clients on this machine can connect, with no
    /// password.
    pub password_file: Option<PathBuf>,
    /// PEM certificate chain for TLS (with `key_file`); clients may then
    /// use `sslmode=require`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for TLS.
    pub key_file: Option<PathBuf>,
    /// Connections served at the same time; one more is refused with
    /// SQLSTATE 53300.
    pub max_connections: usize,
    /// Seconds a statement may run (planning and sending its rows) before
    /// it is cancelled with SQLSTATE 57014; 0 = no limit. A session may
    /// change it with `SET statement_timeout`.
    pub statement_timeout_secs: u64,
}

impl Default for SqlServerConfig {
    fn default() -> Self {
        SqlServerConfig {
            enabled: false,
            bind: "127.0.0.1:5433".to_string(),
            username: "shelfline".to_string(),
            password_file: None,
            cert_file: None,
            key_file: None,
            max_connections: 64,
            statement_timeout_secs: 300,
        }
    }
}

impl SqlServerConfig {
    /// The problems of this table, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.username.is_empty() {
            problems.push("sql_server.username is empty: name the user clients log in as".into());
        }
        if self.max_connections == 0 {
            problems.push("sql_server.max_connections = 0: must be at least 1".into());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push(
                "sql_server.cert_file and sql_server.key_file: TLS needs both, or neither".into(),
            );
        }
        problems
    }
}
