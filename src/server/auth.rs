//! HTTP basic and bearer authentication of the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::ApiError;
use super::session::Sessions;
use crate::config::{ApiAuth, read_secret_file};
use std::time::SystemTime;

/// Environment variable holding the API password (over `password_file`).
pub const PASSWORD_ENV: &str = "SHELFLINE_API_PASSWORD";
/// Environment variable holding the API bearer token (over `token_file`).
pub const TOKEN_ENV: &str = "SHELFLINE_API_TOKEN";

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {key} {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`serve.auth.username` is set but no password: set SHELFLINE_API_PASSWORD or `serve.auth.password_file`"
    )]
    NoPassword,
    #[error("a password is set but no `serve.auth.username`")]
    NoUsername,
    #[error("{0} is empty")]
    Empty(&'static str),
}

/// The accepted credentials. `Debug` never shows the secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    basic: Option<(String, String)>,
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.basic.as_ref().map(|(user, _)| user))
            .field("password", &self.basic.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Credentials {
    /// Reads the credentials of `[serve.auth]`, secrets from the
    /// environment first, then from their files.
    pub fn load(
        auth: &ApiAuth,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        let password = secret(
            var(PASSWORD_ENV),
            auth.password_file.as_deref(),
            "serve.auth.password_file",
            PASSWORD_ENV,
        )?;
        let token = secret(
            var(TOKEN_ENV),
            auth.token_file.as_deref(),
            "serve.auth.token_file",
            TOKEN_ENV,
        )?;
        let basic = match (&auth.username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (Some(_), None) => return Err(CredentialsError::NoPassword),
            (None, Some(_)) => return Err(CredentialsError::NoUsername),
            (None, None) => None,
        };
        Ok(Credentials { basic, token })
    }

    /// HTTP basic credentials.
    pub fn basic(username: &str, password: &str) -> Credentials {
        Credentials {
            basic: Some((username.to_string(), password.to_string())),
            token: None,
        }
    }

    /// Whether `username` and `password` are the configured basic
    /// credentials (Airflow 3's login).
    pub fn check_login(&self, username: &str, password: &str) -> bool {
        self.basic.as_ref().is_some_and(|(user, secret)| {
            // Both compared, so the time taken says nothing of which failed.
            let user_ok = constant_time_eq(username.as_bytes(), user.as_bytes());
            let password_ok = constant_time_eq(password.as_bytes(), secret.as_bytes());
            user_ok & password_ok
        })
    }

    /// Whether no credentials are configured (then nothing is accepted).
    pub fn is_empty(&self) -> bool {
        self.basic.is_none() && self.token.is_none()
    }

    /// Whether an `Authorization` header value carries accepted credentials.
    fn accepts(&self, authorization: &str) -> bool {
        // The scheme is case-insensitive (RFC 7235).
        let Some((scheme, given)) = authorization.trim_start().split_once(' ') else {
            return false;
        };
        if let (true, Some(token)) = (scheme.eq_ignore_ascii_case("bearer"), &self.token) {
            return constant_time_eq(given.trim().as_bytes(), token.as_bytes());
        }
        let (true, Some((user, password))) = (scheme.eq_ignore_ascii_case("basic"), &self.basic)
        else {
            return false;
        };
        let encoded = given;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{user}:{password}");
        constant_time_eq(&decoded, expected.as_bytes())
    }
}

/// A secret from the environment variable `env` (its value `from_env`),
/// else from `file` (the setting `key`); `None` when neither is set.
pub(crate) fn secret(
    from_env: Option<String>,
    file: Option<&Path>,
    key: &'static str,
    env: &'static str,
) -> Result<Option<String>, CredentialsError> {
    let value = match (from_env.filter(|v| !v.is_empty()), file) {
        (Some(value), _) => value,
        (None, Some(path)) => read_secret_file(path).map_err(|source| CredentialsError::File {
            key,
            path: path.to_path_buf(),
            source,
        })?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(CredentialsError::Empty(if file.is_some() {
            key
        } else {
            env
        }));
    }
    Ok(Some(value))
}

/// Compares the SHA-256 digests of `a` and `b` without stopping at the
/// first difference, so the time taken says nothing of where they differ,
/// nor of their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request may authenticate with: the configured credentials, or a
/// token this server issued at login.
#[derive(Debug)]
pub struct Auth {
    pub credentials: Credentials,
    pub sessions: Sessions,
}

impl Auth {
    fn accepts(&self, authorization: &str) -> bool {
        if self.credentials.accepts(authorization) {
            return true;
        }
        match authorization.trim_start().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                self.sessions.accepts(token.trim(), SystemTime::now())
            }
            _ => false,
        }
    }
}

/// Refuses (401) a request without credentials that [`Auth`] accepts.
pub async fn require(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given.is_some_and(|value| auth.accepts(value)) {
        return next.run(request).await;
    }
    let credentials = &auth.credentials;
    let detail = if credentials.is_empty() {
        "no API credentials are configured on this server: set `[serve.auth]` (username + password, or a token)"
    } else if given.is_none() {
        "authentication required: HTTP basic or a bearer token"
    } else {
        "wrong credentials"
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"shelfline\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn accepts_only_the_configured_credentials() {
        let credentials = Credentials::basic("airflow", "s3cret");
        assert!(credentials.accepts(&basic_header("airflow", "s3cret")));
        assert!(!credentials.accepts(&basic_header("airflow", "s3cre")));
        assert!(!credentials.accepts(&basic_header("other", "s3cret")));
        assert!(!credentials.accepts("Bearer s3cret"));
        let encoded = base64::engine::general_purpose::STANDARD.encode("airflow:s3cret");
        assert!(credentials.accepts(&format!("basic {encoded}")));
        assert!(credentials.accepts(&format!("BASIC {encoded}")));
        assert!(!credentials.accepts("Basic not-base64!"));
        assert!(!Credentials::default().accepts(&basic_header("", "")));
    }

    #[test]
    fn secrets_come_from_the_environment_first_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let auth = ApiAuth {
            username: Some("ops".to_string()),
            password_file: None,
            token_file: Some(file),
        };
        let credentials =
            Credentials::load(&auth, |key| (key == PASSWORD_ENV).then(|| "pw".to_string()))
                .unwrap();
        assert!(credentials.accepts("Bearer from-file"));
        assert!(credentials.accepts(&basic_header("ops", "pw")));
        let shown = format!("{credentials:?}");
        assert!(
            !shown.contains("from-file") && !shown.contains("\"pw\""),
            "{shown}"
        );

        let err = Credentials::load(&auth, |_| None).unwrap_err();
        assert!(matches!(err, CredentialsError::NoPassword), "{err}");
    }
}
