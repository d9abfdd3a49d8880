//! The webhook channel: each notification POSTed as JSON (shelfline's, or
//! a Slack-compatible message).

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{self, HeaderValue};

use super::{
    Notification, NotifyError, WEBHOOK_TOKEN_ENV, config_error, describe, read_secret_file,
};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::storage::is_loopback_host;

/// How much of a failing webhook's answer goes into the error.
const WEBHOOK_REPLY_CHARS: usize = 200;

/// A webhook URL, its HTTP client and the `Authorization` header.
#[derive(Clone)]
pub(super) struct WebhookChannel {
    client: reqwest::Client,
    url: Url,
    /// The URL without any password or query string, for messages.
    shown: String,
    authorization: Option<HeaderValue>,
    /// The token, only to blank it out of a server's reply.
    token: Option<String>,
    format: WebhookFormat,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("url", &self.shown)
            .field("bearer_token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl WebhookChannel {
    pub(super) fn new(
        config: &WebhookConfig,
        env_token: Option<String>,
    ) -> Result<Self, NotifyError> {
        let url = Url::parse(&config.url).map_err(|e| {
            config_error(
                "notify.webhook.url",
                format!("'{}': {e}", shown_url_text(&config.url)),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(
                "notify.webhook.url",
                format!("'{}' is not an http:// or https:// URL", shown_url(&url)),
            ));
        }
        if config.timeout_secs == 0 {
            return Err(config_error(
                "notify.webhook.timeout_secs",
                "must be at least 1",
            ));
        }
        let token = match (env_token, &config.bearer_token_file) {
            (Some(token), _) => Some(token),
            (None, Some(file)) => Some(read_secret_file("notify.webhook.bearer_token_file", file)?),
            (None, None) => None,
        };
        let local = url.host_str().is_some_and(is_loopback_host);
        if token.is_some()
            && url.scheme() == "http"
            && !local
            && !config.allow_plaintext_credentials
        {
            return Err(config_error(
                "notify.webhook.url",
                format!(
                    "'{}' is plain http: the bearer token would travel in clear; use https, or set allow_plaintext_credentials = true in [notify.webhook] if the network is trusted",
                    shown_url(&url)
                ),
            ));
        }
        let authorization = match &token {
            Some(token) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        config_error(
                            "notify.webhook.bearer_token_file",
                            format!(
                                "the token (from {WEBHOOK_TOKEN_ENV} or the file) holds characters \
                             an HTTP header cannot carry"
                            ),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        // A redirect would turn the POST into a GET; the hook's URL should be
        // fixed in the config instead.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .user_agent(concat!("shelfline/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                config_error(
                    "notify.webhook",
                    format!("cannot build an HTTP client: {}", describe(&e)),
                )
            })?;
        Ok(WebhookChannel {
            client,
            shown: shown_url(&url),
            url,
            authorization,
            token,
            format: config.format,
        })
    }

    /// POSTs the JSON; any answer but 2xx is a failure. The error starts with
    /// `webhook URL`.
    pub(super) async fn send(&self, notification: &Notification) -> Result<(), String> {
        let fail = |what: String| format!("webhook {}: {what}", self.shown);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(
                match self.format {
                    WebhookFormat::Json => notification.to_json(),
                    WebhookFormat::Slack => notification.to_slack(),
                }
                .to_string(),
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(describe(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let reply = response.text().await.unwrap_or_default();
            let mut reply: String = reply
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(WEBHOOK_REPLY_CHARS)
                .collect();
            if let Some(token) = &self.token {
                reply = reply.replace(token.as_str(), "***");
            }
            return Err(fail(if reply.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {reply}")
            }));
        }
        tracing::info!(url = %self.shown, run = %notification.run_id, "notification posted");
        Ok(())
    }
}

/// `url` for messages: only its scheme, host and port. Slack, Discord and
/// Teams put the hook's secret in the path, others in the query or the
/// user part.
pub(super) fn shown_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// [`shown_url`] for text that is not a valid URL: its scheme and host as
/// far as they can be told, nothing of a path, query or user part.
pub(super) fn shown_url_text(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The user part ends at the last `@`, wherever a password's `/` is.
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let host = after_user.split(['/', '?', '#']).next().unwrap_or_default();
    let shown = if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    };
    crate::text::excerpt(shown.as_bytes(), crate::text::VALUE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::super::tests::webhook_config;
    use super::*;

    #[test]
    fn the_token_comes_from_the_environment_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "from-file\n").unwrap();
        let config = WebhookConfig {
            bearer_token_file: Some(file),
            ..webhook_config()
        };
        let from_file = WebhookChannel::new(&config, None).unwrap();
        assert_eq!(from_file.token.as_deref(), Some("from-file"));
        let from_env = WebhookChannel::new(&config, Some("from-env".to_string())).unwrap();
        assert_eq!(from_env.token.as_deref(), Some("from-env"));
        assert!(from_env.authorization.unwrap().is_sensitive());
    }

    #[test]
    fn urls_in_messages_hide_passwords_and_queries() {
        let url = Url::parse("https://bot:pw@hooks.example.com/x?token=abc").unwrap();
        assert_eq!(shown_url(&url), "https://hooks.example.com");
        let slack = Url::parse("https://hooks.slack.com:8443/services/T0/B0/SeCrEt").unwrap();
        assert_eq!(shown_url(&slack), "https://hooks.slack.com:8443");
        assert_eq!(shown_url_text("hooks?token=abc"), "hooks");
        assert_eq!(
            shown_url_text("ftp://u:p@host/services/SeCrEt"),
            "ftp://host"
        );
        assert_eq!(
            shown_url_text("https://bot:s3/cr3t@hooks.example.com/x"),
            "https://hooks.example.com"
        );
    }
}
