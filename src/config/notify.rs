//! The `[notify]` table: who is told about runs, by email and by webhook.
//! Plain data; `orchestrator::notify` validates it and sends.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[notify]` table of the config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Also notify when a run succeeds (with its figures). Failures and
    /// sensor timeouts always notify.
    pub on_success: bool,
    /// Send email through an SMTP server (`[notify.email]`).
    pub email: Option<EmailConfig>,
    /// POST JSON to a URL (`[notify.webhook]`).
    pub webhook: Option<WebhookConfig>,
}

/// The `[notify.email]` table: an SMTP server and who gets the mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// SMTP server port; default by security: 587 starttls, 465 tls, 25 none.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is encrypted.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User to log in as; no login when unset.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the SMTP password; `SHELFLINE_SMTP_PASSWORD` takes
    /// precedence.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender, e.g. `shelfline <shelfline@example.com>`.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Seconds each step of the SMTP conversation may take.
    #[serde(default = "default_email_timeout_secs")]
    pub timeout_secs: u64,
    /// Log in with `security = "none"` to a server that is not on this
    /// machine, sending the password in clear. Refused unless set.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
}

/// How the SMTP connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption at all (port 25): only for a relay on a trusted network.
    None,
}

impl SmtpSecurity {
    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// The `[notify.webhook]` table: a URL that receives each notification as
/// JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// File holding a bearer token sent as `Authorization: Bearer`;
    /// `SHELFLINE_WEBHOOK_TOKEN` takes precedence.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// What the body looks like: shelfline's JSON, or a Slack-compatible
    /// message.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Seconds the whole request may take.
    #[serde(default = "default_webhook_timeout_secs")]
    pub timeout_secs: u64,
    /// Send the bearer token to an `http://` URL that is not on this
    /// machine, in clear. Refused unless set.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// shelfline's JSON: the event, the run and its figures or error.
    #[default]
    Json,
    /// `{"text": "…"}` with the run's outcome, as Slack's incoming webhooks
    /// (and Mattermost's, Rocket.Chat's) take it.
    Slack,
}

fn default_email_timeout_secs() -> u64 {
    30
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_with_defaults() {
        let config: NotifyConfig = toml::from_str(
            "on_success = true\n\
             [email]\n\
             host = \"smtp.example.com\"\n\
             from = \"shelfline@example.com\"\n\
             to = [\"a@example.com\", \"b@example.com\"]\n\
             [webhook]\n\
             url = \"https://hooks.example.com/x\"\n",
        )
        .unwrap();
        assert!(config.on_success);
        let email = config.email.unwrap();
        assert_eq!(email.port, None);
        assert_eq!(email.security, SmtpSecurity::StartTls);
        assert_eq!(email.username, None);
        assert_eq!(email.cc, Vec::<String>::new());
        assert_eq!(email.timeout_secs, 30);
        assert_eq!(email.to.len(), 2);
        let webhook = config.webhook.unwrap();
        assert_eq!(webhook.bearer_token_file, None);
        assert_eq!(webhook.timeout_secs, 10);
        assert_eq!(webhook.format, WebhookFormat::Json);

        let empty: NotifyConfig = toml::from_str("").unwrap();
        assert_eq!(empty, NotifyConfig::default());
        assert!(!empty.on_success);
    }

    #[test]
    fn config_parses_every_key() {
        let config: NotifyConfig = toml::from_str(
            "[email]\n\
             host = \"mail.example.com\"\n\
             port = 2465\n\
             security = \"tls\"\n\
             username = \"bot\"\n\
             password_file = \"/run/secrets/smtp\"\n\
             from = \"bot@example.com\"\n\
             to = [\"a@example.com\"]\n\
             cc = [\"c@example.com\"]\n\
             timeout_secs = 5\n\
             [webhook]\n\
             url = \"https://hooks.example.com/x\"\n\
             bearer_token_file = \"/run/secrets/hook\"\n\
             format = \"slack\"\n\
             timeout_secs = 3\n",
        )
        .unwrap();
        let email = config.email.unwrap();
        assert_eq!(email.port, Some(2465));
        assert_eq!(email.security, SmtpSecurity::Tls);
        assert_eq!(email.username.as_deref(), Some("bot"));
        assert_eq!(
            email.password_file,
            Some(PathBuf::from("/run/secrets/smtp"))
        );
        assert_eq!(email.cc, ["c@example.com"]);
        assert_eq!(email.timeout_secs, 5);
        let webhook = config.webhook.unwrap();
        assert_eq!(
            webhook.bearer_token_file,
            Some(PathBuf::from("/run/secrets/hook"))
        );
        assert_eq!(webhook.timeout_secs, 3);
        assert_eq!(webhook.format, WebhookFormat::Slack);
        let none: EmailConfig = toml::from_str(
            "host = \"h\"\nsecurity = \"none\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\n",
        )
        .unwrap();
        assert_eq!(none.security, SmtpSecurity::None);
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        let err = toml::from_str::<NotifyConfig>("on_sucess = true\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `on_sucess`"),
            "{err}"
        );
        let err = toml::from_str::<NotifyConfig>(
            "[email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\npassword = \"x\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `password`"),
            "{err}"
        );
        let err = toml::from_str::<NotifyConfig>("[webhook]\nurl = \"https://x\"\ntoken = \"x\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `token`"), "{err}");
        let err = toml::from_str::<NotifyConfig>(
            "[email]\nhost = \"h\"\nsecurity = \"ssl\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant `ssl`"), "{err}");
        let err = toml::from_str::<NotifyConfig>("[email]\nhost = \"h\"\nto = [\"a@b.c\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("missing field `from`"), "{err}");
    }
}
