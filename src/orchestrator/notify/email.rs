//! The email channel: one message per notification through an SMTP server.

use std::fmt;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{
    Notification, NotifyError, SMTP_PASSWORD_ENV, config_error, describe, read_secret_file,
};
use crate::config::{EmailConfig, SmtpSecurity};
use crate::storage::is_loopback_host;

/// A built SMTP transport and the message's addresses.
#[derive(Clone)]
pub(super) struct EmailChannel {
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
    pub(super) fn new(
        config: &EmailConfig,
        env_password: Option<String>,
    ) -> Result<Self, NotifyError> {
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
    pub(super) async fn send(&self, notification: &Notification) -> Result<(), String> {
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
pub(super) fn smtp_password(
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

fn parse_mailbox(key: &str, address: &str) -> Result<Mailbox, NotifyError> {
    address
        .parse()
        .map_err(|e| config_error(key, format!("'{address}' is not an email address: {e}")))
}

fn parse_mailboxes(key: &str, addresses: &[String]) -> Result<Vec<Mailbox>, NotifyError> {
    addresses.iter().map(|a| parse_mailbox(key, a)).collect()
}
