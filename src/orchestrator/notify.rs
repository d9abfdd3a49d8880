//! Telling people about DAG runs: email over SMTP and a JSON webhook.
//!
//! The `[notify]` table names the channels. [`Notifier::new`] validates it
//! up front (every address parsed, the password and token files read, the
//! SMTP transport built) so a bad setting stops `shelfline serve` at start
//! rather than at 3 a.m. when the first failure needs reporting. A
//! [`Notification`] renders itself once per channel: a subject and a plain
//! text body for email, [`Notification::to_json`] for the webhook.
//!
//! [`Notifier::send`] tries every channel even when one fails (a dead SMTP
//! relay must not also silence the webhook) and returns one error naming each
//! channel that failed. Secrets never reach a message: the password and the
//! token live only inside the transports, and `Debug` shows them as `***`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::Url;

use crate::storage::is_loopback_host;
use reqwest::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Environment variable holding the SMTP password; it takes precedence over
/// `notify.email.password_file`.
pub const SMTP_PASSWORD_ENV: &str = "SHELFLINE_SMTP_PASSWORD";
/// Environment variable holding the webhook's bearer token; it takes
/// precedence over `notify.webhook.bearer_token_file`.
pub const WEBHOOK_TOKEN_ENV: &str = "SHELFLINE_WEBHOOK_TOKEN";

/// How much of a failing webhook's answer goes into the error.
const WEBHOOK_REPLY_CHARS: usize = 200;

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
    /// Seconds the whole request may take.
    #[serde(default = "default_webhook_timeout_secs")]
    pub timeout_secs: u64,
    /// Send the bearer token to an `http://` URL that is not on this
    /// machine, in clear. Refused unless set.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
}

fn default_email_timeout_secs() -> u64 {
    30
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

/// One message about one DAG run.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The DAG the run belongs to.
    pub dag_id: String,
    /// The run, e.g. `scheduled__2025-01-07`.
    pub run_id: String,
    /// The day of data the run processes.
    pub logical_date: NaiveDate,
    /// What happened.
    pub event: Event,
}

/// What happened to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The sensor gave up: these raw files (paths relative to the raw zone)
    /// were still missing.
    SensorTimeout {
        /// The raw zone's location, e.g. `file:///data/raw`.
        raw: String,
        /// The missing files, relative to `raw`.
        missing: Vec<String>,
        /// How long the sensor waited.
        waited: Duration,
    },
    /// A task failed for good (after its retries).
    Failure {
        /// The task that failed.
        task: String,
        /// Its last error.
        error: String,
        /// How many times it was tried.
        attempts: u32,
    },
    /// The run succeeded; figures are (name, value) pairs such as
    /// `("rows_written", "1234")`.
    Success {
        /// What the run did, in the order to show it.
        figures: Vec<(String, String)>,
    },
}

impl Event {
    /// The event's name in the webhook JSON: `sensor_timeout`, `failure` or
    /// `success`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SensorTimeout { .. } => "sensor_timeout",
            Event::Failure { .. } => "failure",
            Event::Success { .. } => "success",
        }
    }
}

impl Notification {
    /// The email subject, which says what happened in one line.
    pub fn subject(&self) -> String {
        let (date, run) = (self.logical_date, &self.run_id);
        match &self.event {
            Event::SensorTimeout { .. } => {
                format!("[shelfline] raw files missing for {date} (run {run})")
            }
            Event::Failure { task, .. } => format!("[shelfline] run {run} failed at task {task}"),
            Event::Success { .. } => format!("[shelfline] run {run} succeeded"),
        }
    }

    /// The plain-text email body: what happened, the details, and what to do
    /// about it.
    pub fn body(&self) -> String {
        let (dag, run, date) = (&self.dag_id, &self.run_id, self.logical_date);
        let mut text = String::new();
        match &self.event {
            Event::SensorTimeout {
                raw,
                missing,
                waited,
            } => {
                let waited = human_duration(*waited);
                let files = plural(missing.len(), "file");
                text.push_str(&format!(
                    "The sensor of run {run} (DAG {dag}) stopped waiting\n\
                     for the raw files of {date} after {waited}.\n\
                     \n{files} still missing from the raw zone at {raw}:\n\n"
                ));
                for file in missing {
                    text.push_str(&format!("  - {file}\n"));
                }
                text.push_str(&format!(
                    "\nWhat to do: drop the missing files into the raw zone, or copy them\n\
                     from the source with\n\
                     \n    shelfline extract --date {date}\n\
                     \nthen run the DAG again with\n\
                     \n    shelfline runs retry {run}\n"
                ));
            }
            Event::Failure {
                task,
                error,
                attempts,
            } => {
                let tries = plural(*attempts as usize, "attempt");
                text.push_str(&format!(
                    "Run {run} (DAG {dag}, logical date {date})\n\
                     failed at task {task} after {tries}. The last error:\n\n"
                ));
                for line in error.lines() {
                    text.push_str(&format!("  {line}\n"));
                }
                text.push_str(&format!(
                    "\nWhat to do: fix the cause, then run it again with\n\
                     \n    shelfline runs retry {run}\n"
                ));
            }
            Event::Success { figures } => {
                text.push_str(&format!(
                    "Run {run} (DAG {dag}, logical date {date}) succeeded.\n"
                ));
                if !figures.is_empty() {
                    text.push('\n');
                    let width = figures.iter().map(|(name, _)| name.len()).max();
                    let width = width.unwrap_or(0) + 1;
                    for (name, value) in figures {
                        text.push_str(&format!("  {:<width$} {value}\n", format!("{name}:")));
                    }
                }
            }
        }
        text
    }

    /// The webhook payload: `dag_id`, `dag_run_id`, `logical_date`
    /// (`YYYY-MM-DD`), `event` ([`Event::kind`]) and `subject`, plus the
    /// event's fields: `raw`, `missing` and `waited_secs`; `task`, `error` and
    /// `attempts`; or `figures` as an object of name to value.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = json!({
            "dag_id": self.dag_id,
            "dag_run_id": self.run_id,
            "logical_date": self.logical_date.to_string(),
            "event": self.event.kind(),
            "subject": self.subject(),
        });
        let fields = match &self.event {
            Event::SensorTimeout {
                raw,
                missing,
                waited,
            } => json!({ "raw": raw, "missing": missing, "waited_secs": waited.as_secs() }),
            Event::Failure {
                task,
                error,
                attempts,
            } => json!({ "task": task, "error": error, "attempts": attempts }),
            Event::Success { figures } => {
                let figures: serde_json::Map<String, serde_json::Value> = figures
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone().into()))
                    .collect();
                json!({ "figures": figures })
            }
        };
        if let (Some(all), serde_json::Value::Object(fields)) = (value.as_object_mut(), fields) {
            all.extend(fields);
        }
        value
    }
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// `2h 5m`, `45m`, `1m 30s`, `0s`: whole seconds, largest units first.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let parts: Vec<String> = [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

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

/// A built SMTP transport and the message's addresses.
#[derive(Clone)]
struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for messages.
    server: String,
    security: SmtpSecurity,
    username: Option<String>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses = |list: &[Mailbox]| list.iter().map(Mailbox::to_string).collect::<Vec<_>>();
        f.debug_struct("EmailChannel")
            .field("server", &self.server)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.username.as_ref().map(|_| "***"))
            .field("from", &self.from.to_string())
            .field("to", &addresses(&self.to))
            .field("cc", &addresses(&self.cc))
            .finish()
    }
}

impl EmailChannel {
    fn new(config: &EmailConfig, env_password: Option<String>) -> Result<Self, NotifyError> {
        if config.host.trim().is_empty() {
            return Err(config_error("notify.email.host", "is empty"));
        }
        let from = parse_mailbox("notify.email.from", &config.from)?;
        if config.to.is_empty() {
            return Err(config_error(
                "notify.email.to",
                "names no recipient; list at least one address",
            ));
        }
        let to = parse_mailboxes("notify.email.to", &config.to)?;
        let cc = parse_mailboxes("notify.email.cc", &config.cc)?;
        if config.timeout_secs == 0 {
            return Err(config_error(
                "notify.email.timeout_secs",
                "must be at least 1",
            ));
        }
        let port = config.port.unwrap_or(config.security.default_port());
        if port == 0 {
            return Err(config_error(
                "notify.email.port",
                "must be a TCP port (1-65535)",
            ));
        }
        let password = smtp_password(config, env_password)?;
        if password.is_some()
            && config.security == SmtpSecurity::None
            && !config.allow_plaintext_credentials
            && !is_loopback_host(&config.host)
        {
            return Err(config_error(
                "notify.email.security",
                format!(
                    "\"none\" would send the SMTP password to {} in clear; use \"starttls\" or \"tls\", or set allow_plaintext_credentials = true in [notify.email] if the network is trusted",
                    config.host
                ),
            ));
        }

        let host = config.host.as_str();
        let mut builder = match config.security {
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| config_error("notify.email.host", format!("'{host}': {e}")))?
        .port(port)
        .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if let (Some(username), Some(password)) = (&config.username, password) {
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(EmailChannel {
            transport: builder.build(),
            server: format!("{host}:{port}"),
            security: config.security,
            username: config.username.clone(),
            from,
            to,
            cc,
        })
    }

    /// Builds the message and hands it to the server; the error starts with
    /// `email via host:port`.
    async fn send(&self, notification: &Notification) -> Result<(), String> {
        let fail = |what: String| format!("email via {}: {what}", self.server);
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(notification.subject())
            .date_now()
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        for cc in &self.cc {
            message = message.cc(cc.clone());
        }
        let message = message
            .body(notification.body())
            .map_err(|e| fail(format!("cannot build the message: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| fail(describe(&e)))?;
        tracing::info!(server = %self.server, run = %notification.run_id, "notification emailed");
        Ok(())
    }
}

/// The SMTP password: `SHELFLINE_SMTP_PASSWORD` (`env_password`), else
/// `password_file` without its final newline. Only a login needs one, and a
/// login needs one.
fn smtp_password(
    config: &EmailConfig,
    env_password: Option<String>,
) -> Result<Option<String>, NotifyError> {
    if config.username.is_none() {
        return match config.password_file {
            Some(_) => Err(config_error(
                "notify.email.password_file",
                "is set but notify.email.username is not; set both to log in, or neither",
            )),
            None => Ok(None),
        };
    }
    if let Some(password) = env_password {
        return Ok(Some(password));
    }
    match &config.password_file {
        Some(file) => read_secret_file("notify.email.password_file", file).map(Some),
        None => Err(config_error(
            "notify.email.password_file",
            format!(
                "notify.email.username is set but there is no password: set {SMTP_PASSWORD_ENV} \
                 or point notify.email.password_file at a file holding it"
            ),
        )),
    }
}

/// A webhook URL, its HTTP client and the `Authorization` header.
#[derive(Clone)]
struct WebhookChannel {
    client: reqwest::Client,
    url: Url,
    /// The URL without any password or query string, for messages.
    shown: String,
    authorization: Option<HeaderValue>,
    /// The token, only to blank it out of a server's reply.
    token: Option<String>,
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
    fn new(config: &WebhookConfig, env_token: Option<String>) -> Result<Self, NotifyError> {
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
        })
    }

    /// POSTs the JSON; any answer but 2xx is a failure. The error starts with
    /// `webhook URL`.
    async fn send(&self, notification: &Notification) -> Result<(), String> {
        let fail = |what: String| format!("webhook {}: {what}", self.shown);
        let mut request = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(notification.to_json().to_string());
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
fn shown_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// [`shown_url`] for text that is not a valid URL: its scheme and host as
/// far as they can be told, nothing of a path, query or user part.
fn shown_url_text(url: &str) -> String {
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

fn parse_mailbox(key: &str, address: &str) -> Result<Mailbox, NotifyError> {
    address
        .parse()
        .map_err(|e| config_error(key, format!("'{address}' is not an email address: {e}")))
}

fn parse_mailboxes(key: &str, addresses: &[String]) -> Result<Vec<Mailbox>, NotifyError> {
    addresses.iter().map(|a| parse_mailbox(key, a)).collect()
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
    use super::*;

    const PASSWORD: &str = "smtp-pw-never-shown";
    const TOKEN: &str = "hook-token-never-shown";

    fn notification(event: Event) -> Notification {
        Notification {
            dag_id: "daily".to_string(),
            run_id: "scheduled__2025-01-07".to_string(),
            logical_date: NaiveDate::from_ymd_opt(2025, 1, 7).unwrap(),
            event,
        }
    }

    fn sensor_timeout() -> Event {
        Event::SensorTimeout {
            raw: "file:///data/raw".to_string(),
            missing: vec![
                "sales/sales_2025-01-07.csv.gz".to_string(),
                "inventory/inventory_2025-01-07.csv.gz".to_string(),
            ],
            waited: Duration::from_secs(6 * 3600 + 30 * 60),
        }
    }

    fn failure() -> Event {
        Event::Failure {
            task: "transform".to_string(),
            error: "quality rule failed\n3 rows with a negative price".to_string(),
            attempts: 3,
        }
    }

    fn success() -> Event {
        Event::Success {
            figures: vec![
                ("rows_written".to_string(), "1234".to_string()),
                ("weeks".to_string(), "2".to_string()),
            ],
        }
    }

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

    fn webhook_config() -> WebhookConfig {
        WebhookConfig {
            url: "https://hooks.example.com/shelfline".to_string(),
            bearer_token_file: None,
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
    fn sensor_timeout_lists_every_missing_file_and_what_to_do() {
        let n = notification(sensor_timeout());
        assert_eq!(n.event.kind(), "sensor_timeout");
        assert_eq!(
            n.subject(),
            "[shelfline] raw files missing for 2025-01-07 (run scheduled__2025-01-07)"
        );
        let body = n.body();
        assert!(
            body.contains("\n  - sales/sales_2025-01-07.csv.gz\n"),
            "{body}"
        );
        assert!(
            body.contains("\n  - inventory/inventory_2025-01-07.csv.gz\n"),
            "{body}"
        );
        assert!(
            body.contains("2 files still missing from the raw zone at file:///data/raw"),
            "{body}"
        );
        assert!(body.contains("after 6h 30m."), "{body}");
        assert!(
            body.contains("shelfline extract --date 2025-01-07"),
            "{body}"
        );
        assert!(
            body.contains("shelfline runs retry scheduled__2025-01-07"),
            "{body}"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "sensor_timeout",
                "subject": n.subject(),
                "raw": "file:///data/raw",
                "missing": ["sales/sales_2025-01-07.csv.gz", "inventory/inventory_2025-01-07.csv.gz"],
                "waited_secs": 23400,
            })
        );
    }

    #[test]
    fn failure_names_the_task_and_quotes_the_error() {
        let n = notification(failure());
        assert_eq!(n.event.kind(), "failure");
        assert_eq!(
            n.subject(),
            "[shelfline] run scheduled__2025-01-07 failed at task transform"
        );
        let body = n.body();
        assert!(
            body.contains("failed at task transform after 3 attempts"),
            "{body}"
        );
        assert!(
            body.contains("\n  quality rule failed\n  3 rows with a negative price\n"),
            "{body}"
        );
        assert!(
            body.contains("shelfline runs retry scheduled__2025-01-07"),
            "{body}"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "failure",
                "subject": n.subject(),
                "task": "transform",
                "error": "quality rule failed\n3 rows with a negative price",
                "attempts": 3,
            })
        );
    }

    #[test]
    fn success_lists_the_figures() {
        let n = notification(success());
        assert_eq!(n.event.kind(), "success");
        assert_eq!(
            n.subject(),
            "[shelfline] run scheduled__2025-01-07 succeeded"
        );
        assert_eq!(
            n.body(),
            "Run scheduled__2025-01-07 (DAG daily, logical date 2025-01-07) succeeded.\n\
             \n  rows_written: 1234\n  weeks:        2\n"
        );
        assert_eq!(
            n.to_json(),
            json!({
                "dag_id": "daily",
                "dag_run_id": "scheduled__2025-01-07",
                "logical_date": "2025-01-07",
                "event": "success",
                "subject": n.subject(),
                "figures": {"rows_written": "1234", "weeks": "2"},
            })
        );
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_duration(Duration::from_millis(90_500)), "1m 30s");
        assert_eq!(human_duration(Duration::from_secs(2 * 3600 + 5)), "2h 5s");
        assert_eq!(human_duration(Duration::from_secs(45 * 60)), "45m");
    }

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
