//! Telling people about DAG runs: email over SMTP and a webhook (JSON, or
//! a Slack-compatible message).
//!
//! The `[notify]` table names the channels. [`Notifier::new`] validates it
//! up front (every address parsed, the password and token files read, the
//! SMTP transport built) so a bad setting stops `shelfline serve` at start
//! rather than at 3 a.m. when the first failure needs reporting. A
//! [`Notification`] renders itself once per channel: a subject and a plain
//! text body for email ([`message`]), [`Notification::to_json`] or
//! [`Notification::to_slack`] for the webhook.
//!
//! [`Notifier::send`] tries every channel even when one fails (a dead SMTP
//! relay must not also silence the webhook) and returns one error naming each
//! channel that failed. Secrets never reach a message: the password and the
//! token live only inside the transports, and `Debug` shows them as `***`.

use std::fmt;
use std::path::Path;

use email::EmailChannel;
use webhook::WebhookChannel;

/// Environment variable holding the SMTP password; it takes precedence over
/// `notify.email.password_file`.
pub const SMTP_PASSWORD_ENV: &str = "SHELFLINE_SMTP_PASSWORD";
/// Environment variable holding the webhook's bearer token; it takes
/// precedence over `notify.webhook.bearer_token_file`.
pub const WEBHOOK_TOKEN_ENV: &str = "SHELFLINE_WEBHOOK_TOKEN";

mod email;
mod message;
mod webhook;

pub use crate::config::{EmailConfig, NotifyConfig, SmtpSecurity, WebhookConfig, WebhookFormat};
pub use message::{Event, Notification};

/// A notification setting that cannot be used, or a notification that did
/// not get through.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A `[notify]` key has a value that cannot work.
    #[error("bad setting {key}: {reason}")]
    Config {
        /// The key, e.g. `notify.email.to`.
        key: String,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// Some channels failed; each entry names the channel and why.
    #[error("notification not delivered: {}", .failures.join("; "))]
    Delivery {
        /// One entry per failed channel, e.g. `webhook https://host/hook: HTTP 500 Internal Server Error`.
        failures: Vec<String>,
    },
}

fn config_error(key: &str, reason: impl Into<String>) -> NotifyError {
    NotifyError::Config {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Sends notifications to every configured channel.
#[derive(Clone)]
pub struct Notifier {
    on_success: bool,
    email: Option<EmailChannel>,
    webhook: Option<WebhookChannel>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("on_success", &self.on_success)
            .field("email", &self.email)
            .field("webhook", &self.webhook)
            .finish()
    }
}

impl Notifier {
    /// Validates the config (parses every address, reads the password/token
    /// files, builds the SMTP transport and the HTTP client) and fails naming
    /// the bad key.
    pub fn new(config: &NotifyConfig) -> Result<Notifier, NotifyError> {
        Notifier::build(config, |key| std::env::var(key).ok())
    }

    /// [`Notifier::new`] with the environment given as a function.
    fn build(
        config: &NotifyConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Notifier, NotifyError> {
        let var = |key: &str| var(key).filter(|v| !v.is_empty());
        let email = match &config.email {
            Some(email) => Some(EmailChannel::new(email, var(SMTP_PASSWORD_ENV))?),
            None => None,
        };
        let webhook = match &config.webhook {
            Some(webhook) => Some(WebhookChannel::new(webhook, var(WEBHOOK_TOKEN_ENV))?),
            None => None,
        };
        Ok(Notifier {
            on_success: config.on_success,
            email,
            webhook,
        })
    }

    /// Whether this event should be sent at all (success only when
    /// `on_success`) and some channel is configured.
    pub fn wants(&self, event: &Event) -> bool {
        let channel = self.email.is_some() || self.webhook.is_some();
        channel && (self.on_success || !matches!(event, Event::Success { .. }))
    }

    /// Sends to every channel, all at once; tries all channels even when one
    /// fails. The error names each failed channel (e.g. `email via
    /// smtp.example.com:587: ...`, `webhook https://...: HTTP 500 ...`) and
    /// never contains a password or token.
    pub async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let email = async {
            match &self.email {
                Some(email) => email.send(notification).await.err(),
                None => None,
            }
        };
        let webhook = async {
            match &self.webhook {
                Some(webhook) => webhook.send(notification).await.err(),
                None => None,
            }
        };
        let (email, webhook) = tokio::join!(email, webhook);
        let failures: Vec<String> = [email, webhook].into_iter().flatten().collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotifyError::Delivery { failures })
        }
    }
}

/// A secret file's content without its final newline; never empty.
fn read_secret_file(key: &str, file: &Path) -> Result<String, NotifyError> {
    let secret = crate::config::read_secret_file(file)
        .map_err(|e| config_error(key, format!("cannot read {}: {e}", file.display())))?;
    if secret.is_empty() {
        return Err(config_error(key, format!("{} is empty", file.display())));
    }
    Ok(secret)
}

/// An error and its sources, each cause once.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::email::smtp_password;
    use super::message::examples::*;
    use super::*;
    use crate::storage::is_loopback_host;

    const PASSWORD: &str = "smtp-pw-never-shown";
    const TOKEN: &str = "hook-token-never-shown";

    fn email_config() -> EmailConfig {
        EmailConfig {
            host: "smtp.example.com".to_string(),
            port: None,
            security: SmtpSecurity::StartTls,
            username: None,
            password_file: None,
            from: "shelfline <shelfline@example.com>".to_string(),
            to: vec!["ops@example.com".to_string()],
            cc: Vec::new(),
            timeout_secs: 30,
            allow_plaintext_credentials: false,
        }
    }

    pub(super) fn webhook_config() -> WebhookConfig {
        WebhookConfig {
            url: "https://hooks.example.com/shelfline".to_string(),
            bearer_token_file: None,
            format: WebhookFormat::Json,
            timeout_secs: 10,
            allow_plaintext_credentials: false,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config_key(result: Result<Notifier, NotifyError>) -> (String, String) {
        match result {
            Err(NotifyError::Config { key, reason }) => (key, reason),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn wants_failures_always_and_successes_only_when_asked() {
        let nothing = Notifier::build(&NotifyConfig::default(), no_env).unwrap();
        assert!(!nothing.wants(&failure()));
        assert!(!nothing.wants(&sensor_timeout()));

        let mut config = NotifyConfig {
            webhook: Some(webhook_config()),
            ..NotifyConfig::default()
        };
        let quiet = Notifier::build(&config, no_env).unwrap();
        assert!(quiet.wants(&failure()));
        assert!(quiet.wants(&sensor_timeout()));
        assert!(!quiet.wants(&success()));

        config.on_success = true;
        config.webhook = None;
        config.email = Some(email_config());
        let chatty = Notifier::build(&config, no_env).unwrap();
        assert!(chatty.wants(&success()));
        assert!(chatty.wants(&failure()));
    }

    #[test]
    fn debug_never_shows_the_password_or_token() {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("smtp");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let token_file = dir.path().join("hook");
        std::fs::write(&token_file, TOKEN).unwrap();
        let config = NotifyConfig {
            on_success: false,
            email: Some(EmailConfig {
                username: Some("bot".to_string()),
                password_file: Some(password_file),
                ..email_config()
            }),
            webhook: Some(WebhookConfig {
                bearer_token_file: Some(token_file),
                ..webhook_config()
            }),
        };
        let notifier = Notifier::build(&config, no_env).unwrap();
        for shown in [format!("{notifier:?}"), format!("{notifier:#?}")] {
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(!shown.contains(TOKEN), "{shown}");
            assert!(shown.contains("***"), "{shown}");
            assert!(shown.contains("smtp.example.com:587"), "{shown}");
        }
    }

    #[test]
    fn the_password_comes_from_the_environment_first_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp");
        std::fs::write(&file, format!("{PASSWORD}\r\n")).unwrap();
        let config = EmailConfig {
            username: Some("bot".to_string()),
            password_file: Some(file),
            ..email_config()
        };
        assert_eq!(
            smtp_password(&config, None).unwrap().as_deref(),
            Some(PASSWORD)
        );
        assert_eq!(
            smtp_password(&config, Some("from-env".to_string()))
                .unwrap()
                .as_deref(),
            Some("from-env")
        );
        assert_eq!(smtp_password(&email_config(), None).unwrap(), None);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let email = |config: EmailConfig| {
            config_key(Notifier::build(
                &NotifyConfig {
                    email: Some(config),
                    ..NotifyConfig::default()
                },
                no_env,
            ))
        };
        let webhook = |config: WebhookConfig| {
            config_key(Notifier::build(
                &NotifyConfig {
                    webhook: Some(config),
                    ..NotifyConfig::default()
                },
                no_env,
            ))
        };

        let (key, reason) = email(EmailConfig {
            to: vec!["ops@example.com".to_string(), "not an address".to_string()],
            ..email_config()
        });
        assert_eq!(key, "notify.email.to");
        assert!(reason.contains("'not an address'"), "{reason}");
        let (key, _) = email(EmailConfig {
            from: "shelfline@".to_string(),
            ..email_config()
        });
        assert_eq!(key, "notify.email.from");
        let (key, _) = email(EmailConfig {
            cc: vec!["@example.com".to_string()],
            ..email_config()
        });
        assert_eq!(key, "notify.email.cc");
        let (key, _) = email(EmailConfig {
            to: Vec::new(),
            ..email_config()
        });
        assert_eq!(key, "notify.email.to");
        let (key, reason) = email(EmailConfig {
            username: Some("bot".to_string()),
            ..email_config()
        });
        assert_eq!(key, "notify.email.password_file");
        assert!(reason.contains(SMTP_PASSWORD_ENV), "{reason}");
        let (key, _) = email(EmailConfig {
            password_file: Some(PathBuf::from("/no/such/file")),
            ..email_config()
        });
        assert_eq!(key, "notify.email.password_file");
        let (key, reason) = email(EmailConfig {
            username: Some("bot".to_string()),
            password_file: Some(PathBuf::from("/no/such/file")),
            ..email_config()
        });
        assert_eq!(key, "notify.email.password_file");
        assert!(reason.contains("/no/such/file"), "{reason}");
        let (key, _) = email(EmailConfig {
            timeout_secs: 0,
            ..email_config()
        });
        assert_eq!(key, "notify.email.timeout_secs");

        let (key, _) = webhook(WebhookConfig {
            url: "hooks.example.com/x".to_string(),
            ..webhook_config()
        });
        assert_eq!(key, "notify.webhook.url");
        let (key, reason) = webhook(WebhookConfig {
            url: "ftp://user:secret@hooks.example.com/x".to_string(),
            ..webhook_config()
        });
        assert_eq!(key, "notify.webhook.url");
        assert!(!reason.contains("secret"), "{reason}");
        let (key, _) = webhook(WebhookConfig {
            bearer_token_file: Some(PathBuf::from("/no/such/token")),
            ..webhook_config()
        });
        assert_eq!(key, "notify.webhook.bearer_token_file");
    }

    #[test]
    fn credentials_in_clear_are_refused_unless_allowed_or_local() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken").unwrap();
        let plain = WebhookConfig {
            url: "http://hooks.example.com/x".to_string(),
            bearer_token_file: Some(token.clone()),
            ..webhook_config()
        };
        let err = WebhookChannel::new(&plain, None).unwrap_err().to_string();
        assert!(err.contains("in clear"), "{err}");
        WebhookChannel::new(
            &WebhookConfig {
                allow_plaintext_credentials: true,
                ..plain.clone()
            },
            None,
        )
        .unwrap();
        WebhookChannel::new(
            &WebhookConfig {
                url: "http://127.0.0.1:9/x".to_string(),
                ..plain
            },
            None,
        )
        .unwrap();
        assert!(is_loopback_host("[::1]") && is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
