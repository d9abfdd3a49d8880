//! Where a networked source lives: `mysql://` and `postgres://` URLs, the
//! password (which never reaches a message) and the TLS mode.

use std::fmt;
use std::path::{Path, PathBuf};

use super::SourceError;

/// Environment variable that holds the source password.
pub const PASSWORD_ENV: &str = "SHELFLINE_SOURCE_PASSWORD";

/// A password. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the connection is encrypted, with the names each client uses
/// (`ssl-mode` for MySQL, `sslmode` for PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified (both clients' default).
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS with a certificate signed by a trusted CA (`ssl-ca`/`sslrootcert`
    /// or the built-in roots), any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host name.
    VerifyFull,
}

/// The server kind behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Mysql,
    Postgres,
}

impl Dialect {
    fn scheme(self) -> &'static str {
        match self {
            Dialect::Mysql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Dialect::Mysql => 3306,
            Dialect::Postgres => 5432,
        }
    }

    /// The URL query key of the TLS mode and of the CA file.
    fn tls_keys(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Mysql => ("ssl-mode", "ssl-ca"),
            Dialect::Postgres => ("sslmode", "sslrootcert"),
        }
    }
}

/// A networked source database: `scheme://user[:password]@host[:port]/db`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub dialect: Dialect,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<Secret>,
    pub tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
}

impl Endpoint {
    /// Parses `url`. The password is, in order of precedence, the
    /// `SHELFLINE_SOURCE_PASSWORD` value `env_password`, the content of
    /// `password_file` (without its final newline), or the URL's.
    pub fn parse(
        dialect: Dialect,
        url: &str,
        env_password: Option<String>,
        password_file: Option<&Path>,
    ) -> Result<Endpoint, SourceError> {
        let unsupported = |reason: &str| SourceError::BadUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| unsupported(&e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| unsupported("no host"))?
            .to_string();
        let database = parsed.path().trim_start_matches('/').to_string();
        if database.is_empty() || database.contains('/') {
            return Err(unsupported(
                "the path must be the database name, e.g. /retail",
            ));
        }
        let user = decode(parsed.username());
        if user.is_empty() {
            return Err(unsupported(
                "no user, e.g. mysql://etl@db.example.com/retail",
            ));
        }
        let (tls_key, ca_key) = dialect.tls_keys();
        let mut tls = TlsMode::Prefer;
        let mut ca_file = None;
        for (key, value) in parsed.query_pairs() {
            if key == tls_key {
                tls = parse_tls_mode(&value).ok_or_else(|| {
                    unsupported(&format!(
                        "{tls_key} must be one of disable, prefer, require, verify-ca, verify-full (or MySQL's DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY), not '{value}'"
                    ))
                })?;
            } else if key == ca_key {
                ca_file = Some(PathBuf::from(value.as_ref()));
            } else {
                return Err(unsupported(&format!(
                    "unknown option '{key}' (known: {tls_key}, {ca_key})"
                )));
            }
        }
        let password = match (env_password.filter(|p| !p.is_empty()), password_file) {
            (Some(password), _) => Some(password),
            (None, Some(file)) => Some(read_password_file(file)?),
            (None, None) => parsed.password().map(decode),
        };
        Ok(Endpoint {
            dialect,
            host,
            port: parsed.port().unwrap_or(dialect.default_port()),
            user,
            database,
            password: password.map(Secret),
            tls,
            ca_file,
        })
    }

    /// `scheme://user@host:port/database`, never with the password.
    pub fn describe(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            self.dialect.scheme(),
            self.user,
            self.host,
            self.port,
            self.database
        )
    }

    /// A connection failure, told with what to do about it.
    pub fn connect_error(&self, cause: ConnectFailure, detail: &str) -> SourceError {
        let hint = match cause {
            ConnectFailure::Unreachable => format!(
                "is the server running and listening on {}:{}? (check the host, the port and firewalls)",
                self.host, self.port
            ),
            ConnectFailure::Authentication => format!(
                "check the user '{}' and the password (from {PASSWORD_ENV}, `password_file` or the URL)",
                self.user
            ),
            ConnectFailure::UnknownDatabase => format!(
                "database '{}' does not exist on {}:{} or user '{}' may not use it; create it, grant access or fix the URL's path",
                self.database, self.host, self.port, self.user
            ),
            ConnectFailure::Tls => {
                "the TLS handshake failed; check the TLS mode and the CA file".to_string()
            }
            ConnectFailure::Other => "see the server's message".to_string(),
        };
        SourceError::Connect {
            source_name: self.describe(),
            message: format!("{detail}; {hint}"),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Unreachable,
    Authentication,
    UnknownDatabase,
    Tls,
    Other,
}

fn parse_tls_mode(value: &str) -> Option<TlsMode> {
    match value.to_ascii_lowercase().replace('_', "-").as_str() {
        "disable" | "disabled" => Some(TlsMode::Disable),
        "prefer" | "preferred" => Some(TlsMode::Prefer),
        "require" | "required" => Some(TlsMode::Require),
        "verify-ca" => Some(TlsMode::VerifyCa),
        "verify-full" | "verify-identity" => Some(TlsMode::VerifyFull),
        _ => None,
    }
}

fn read_password_file(file: &Path) -> Result<String, SourceError> {
    crate::config::read_secret_file(file).map_err(|e| SourceError::BadUrl {
        url: format!("password_file {}", file.display()),
        reason: format!("cannot read it: {e}"),
    })
}

fn decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `url` for messages: everything between `://` and the last `@` (the
/// user and any password) becomes `***`, whether or not the URL parses (a
/// password with an unencoded `/`, `?` or `#` makes the URL parse as
/// something else), and a query that names a password is dropped.
pub fn redact(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}***{}", &url[..start + 3], &url[at..])
        }
        _ => url.to_string(),
    };
    if let Some(query) = shown.find('?')
        && shown[query..].to_ascii_lowercase().contains("password")
    {
        shown.truncate(query);
        shown.push_str("?***");
    }
    crate::text::excerpt(shown.as_bytes(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_parts_and_hides_the_password() {
        let e = Endpoint::parse(
            Dialect::Mysql,
            "mysql://etl:s%40cret@db.example.com/retail?ssl-mode=VERIFY_IDENTITY",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("db.example.com", 3306, "etl")
        );
        assert_eq!(e.database, "retail");
        assert_eq!(e.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(e.tls, TlsMode::VerifyFull);
        assert_eq!(e.describe(), "mysql://etl@db.example.com:3306/retail");
        assert!(!format!("{e:?}").contains("s@cret"));
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let url = "postgres://etl:from-url@h:6543/retail?sslmode=disable";
        let parse = |env: Option<&str>, file: Option<&Path>| {
            Endpoint::parse(Dialect::Postgres, url, env.map(String::from), file).unwrap()
        };
        assert_eq!(
            parse(Some("from-env"), Some(&file))
                .password
                .unwrap()
                .expose(),
            "from-env"
        );
        assert_eq!(
            parse(None, Some(&file)).password.unwrap().expose(),
            "from-file"
        );
        let from_url = parse(None, None);
        assert_eq!(from_url.password.unwrap().expose(), "from-url");
        assert_eq!((from_url.port, from_url.tls), (6543, TlsMode::Disable));
    }

    #[test]
    fn bad_urls_name_the_problem_without_the_password() {
        for (url, expected) in [
            ("mysql://etl:pw1@h", "database name"),
            ("mysql://h/retail", "no user"),
            (
                "mysql://etl:pw1@h/retail?ssl-mode=maybe",
                "ssl-mode must be one of",
            ),
            (
                "mysql://etl:pw1@h/retail?timeout=3",
                "unknown option 'timeout'",
            ),
            // A password with an unencoded `/` makes `etl:123` host and port.
            ("mysql://etl:123/pw1@host/db", ""),
            ("postgres://etl@h/db?password=pw1&x=y", ""),
        ] {
            let err = Endpoint::parse(Dialect::Mysql, url, None, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("pw1"), "{url}: {err}");
        }
    }
}
