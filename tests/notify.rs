//! Notifications through real servers: the SMTP server `.ci/smtp` starts
//! (aiosmtpd, which stores what it accepts in a maildir) and a webhook
//! receiver on loopback inside the test:
//! - a sensor timeout arrives by email with its sender, both recipients, the
//!   copy, the subject and every missing file;
//! - the webhook gets the JSON with the bearer token;
//! - a webhook answering 500 and an SMTP server that is not there give one
//!   error naming both channels, which never shows the password or token.

mod common;

use std::time::Duration;

use chrono::NaiveDate;
use common::smtp;
use shelfline::orchestrator::notify::{
    EmailConfig, Event, Notification, Notifier, NotifyConfig, NotifyError, SmtpSecurity,
    WebhookConfig, WebhookFormat,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PASSWORD: &str = "smtp-pw-never-shown";
const TOKEN: &str = "hook-token-never-shown";

fn sensor_timeout(run_id: &str) -> Notification {
    Notification {
        dag_id: "daily".to_string(),
        run_id: run_id.to_string(),
        logical_date: NaiveDate::from_ymd_opt(2025, 1, 7).unwrap(),
        event: Event::SensorTimeout {
            raw: "file:///data/raw".to_string(),
            missing: vec![
                "sales/sales_2025-01-07.csv.gz".to_string(),
                "inventory/inventory_2025-01-07.csv.gz".to_string(),
                "calendar/calendar_2025-01-07.csv.gz".to_string(),
            ],
            waited: Duration::from_secs(6 * 3600),
        },
    }
}

fn email(host: String, port: u16, to: Vec<String>, cc: Vec<String>) -> EmailConfig {
    EmailConfig {
        host,
        port: Some(port),
        security: SmtpSecurity::None,
        username: None,
        password_file: None,
        from: "shelfline <shelfline@example.com>".to_string(),
        to,
        cc,
        timeout_secs: 10,
        allow_plaintext_credentials: false,
    }
}

/// A file under `dir` holding `secret` and a newline.
fn secret_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// What the webhook receiver got.
struct Request {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that takes one request, answers it with `status`
/// and a body echoing the request's headers (so a leak of the token from a
/// server's reply into an error would show), and returns the request.
async fn webhook_receiver(status: &'static str) -> (String, JoinHandle<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).await.unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut request = Request {
            request_line: request_line.trim_end().to_string(),
            headers,
            body: Vec::new(),
        };
        let length: usize = request.header("content-length").unwrap().parse().unwrap();
        request.body = vec![0; length];
        reader.read_exact(&mut request.body).await.unwrap();
        let echo: String = request
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
            echo.len()
        );
        let mut stream = reader.into_inner();
        stream.write_all(reply.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        request
    });
    (url, task)
}

#[tokio::test]
async fn sensor_timeout_email_arrives_with_every_missing_file() {
    let (host, port) = smtp::server();
    let to = [smtp::unique_address("ops"), smtp::unique_address("buyer")];
    let cc = smtp::unique_address("lead");
    let config = NotifyConfig {
        email: Some(email(host, port, to.to_vec(), vec![cc.clone()])),
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(&config).unwrap();
    let notification = sensor_timeout("scheduled__2025-01-07");
    assert!(notifier.wants(&notification.event));

    notifier.send(&notification).await.unwrap();

    let mail = smtp::wait_for_message(&to[0], "raw files missing", Duration::from_secs(10));
    let header = |name: &str| {
        mail.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {mail:?}"))
    };
    assert!(
        header("From").contains("<shelfline@example.com>"),
        "{mail:?}"
    );
    assert!(header("To").contains(&to[0]), "{mail:?}");
    assert!(header("To").contains(&to[1]), "{mail:?}");
    assert!(header("Cc").contains(&cc), "{mail:?}");
    // The envelope reached the copy too (aiosmtpd records it as X-RcptTo).
    assert!(header("X-RcptTo").contains(&cc), "{mail:?}");
    assert_eq!(
        header("Subject"),
        "[shelfline] raw files missing for 2025-01-07 (run scheduled__2025-01-07)"
    );
    assert!(!header("Date").is_empty());
    assert!(header("Content-Type").starts_with("text/plain"), "{mail:?}");
    for file in [
        "sales/sales_2025-01-07.csv.gz",
        "inventory/inventory_2025-01-07.csv.gz",
        "calendar/calendar_2025-01-07.csv.gz",
    ] {
        assert!(
            mail.body.contains(&format!("\n  - {file}\n")),
            "{}",
            mail.body
        );
    }
    assert!(mail.body.contains("file:///data/raw"), "{}", mail.body);
    assert!(
        mail.body
            .contains("shelfline runs retry scheduled__2025-01-07"),
        "{}",
        mail.body
    );
}

/// `format = "slack"`: the hook gets `{"text": …}` with the run's outcome,
/// as a Slack-compatible incoming webhook wants it.
#[tokio::test]
async fn a_slack_webhook_gets_the_outcome_as_text() {
    let (url, receiver) = webhook_receiver("200 OK").await;
    let config = NotifyConfig {
        webhook: Some(WebhookConfig {
            url,
            bearer_token_file: None,
            format: WebhookFormat::Slack,
            timeout_secs: 10,
            allow_plaintext_credentials: false,
        }),
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(&config).unwrap();
    notifier
        .send(&sensor_timeout("scheduled__2025-01-07"))
        .await
        .unwrap();
    let request = receiver.await.unwrap();
    assert_eq!(request.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let text = json["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "*[shelfline] raw files missing for 2025-01-07 (run scheduled__2025-01-07)*\n"
        ),
        "{text}"
    );
    assert!(text.contains("sales/sales_2025-01-07.csv.gz"), "{text}");
    assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
}

#[tokio::test]
async fn webhook_gets_the_json_with_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (url, receiver) = webhook_receiver("204 No Content").await;
    let config = NotifyConfig {
        on_success: true,
        webhook: Some(WebhookConfig {
            url: url.clone(),
            bearer_token_file: Some(secret_file(&dir, "token", TOKEN)),
            format: WebhookFormat::Json,
            timeout_secs: 10,
            allow_plaintext_credentials: false,
        }),
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(&config).unwrap();
    let notification = Notification {
        dag_id: "daily".to_string(),
        run_id: "manual__2025-01-08".to_string(),
        logical_date: NaiveDate::from_ymd_opt(2025, 1, 8).unwrap(),
        event: Event::Success {
            figures: vec![("rows_written".to_string(), "1234".to_string())],
        },
    };
    assert!(notifier.wants(&notification.event));

    notifier.send(&notification).await.unwrap();

    let request = receiver.await.unwrap();
    assert_eq!(request.request_line, "POST /hook HTTP/1.1");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        request.header("user-agent"),
        Some(concat!("shelfline/", env!("CARGO_PKG_VERSION")))
    );
    let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "dag_id": "daily",
            "dag_run_id": "manual__2025-01-08",
            "logical_date": "2025-01-08",
            "event": "success",
            "subject": "[shelfline] run manual__2025-01-08 succeeded",
            "figures": {"rows_written": "1234"},
        })
    );
}

#[tokio::test]
async fn failed_channels_are_each_named_without_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (url, receiver) = webhook_receiver("500 Internal Server Error").await;
    let config = NotifyConfig {
        email: Some(EmailConfig {
            username: Some("shelfline".to_string()),
            password_file: Some(secret_file(&dir, "password", PASSWORD)),
            // Nothing listens on port 1: the connection is refused.
            ..email(
                "127.0.0.1".to_string(),
                1,
                vec![smtp::unique_address("ops")],
                Vec::new(),
            )
        }),
        webhook: Some(WebhookConfig {
            url: url.clone(),
            bearer_token_file: Some(secret_file(&dir, "token", TOKEN)),
            format: WebhookFormat::Json,
            timeout_secs: 10,
            allow_plaintext_credentials: false,
        }),
        ..NotifyConfig::default()
    };
    let notifier = Notifier::new(&config).unwrap();

    let err = notifier
        .send(&sensor_timeout("scheduled__2025-01-07"))
        .await
        .unwrap_err();

    let request = receiver.await.unwrap();
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let NotifyError::Delivery { failures } = &err else {
        panic!("expected a delivery error, got {err:?}");
    };
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("email via 127.0.0.1:1: ")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.starts_with(&format!(
            "webhook {}: HTTP 500",
            url.trim_end_matches("/hook")
        ))),
        "{failures:?}"
    );
    for shown in [err.to_string(), format!("{err:?}"), format!("{notifier:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}
