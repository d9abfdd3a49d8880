//! The SMTP test server that `.ci/smtp` starts (aiosmtpd, storing every
//! message it accepts in a maildir) and a small reader for what it stored.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// Host and port of the test SMTP server.
pub fn server() -> (String, u16) {
    let address = setting("SHELFLINE_TEST_SMTP");
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("SHELFLINE_TEST_SMTP={address} is not HOST:PORT"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("SHELFLINE_TEST_SMTP={address} is not HOST:PORT"));
    (host.to_string(), port)
}

/// The maildir the test server stores messages in.
pub fn maildir() -> PathBuf {
    PathBuf::from(setting("SHELFLINE_TEST_MAILDIR"))
}

fn setting(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test SMTP server with `bash .ci/smtp start` \
             and `source /tmp/shelfline-smtp/env` (README, Development)"
        )
    })
}

/// An address no other test (or earlier run) uses: `NAME-PID-NANOS@example.com`.
pub fn unique_address(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}@example.com", std::process::id())
}

/// A stored message: its headers (unfolded, in order) and its decoded body
/// with `\n` line ends.
#[derive(Debug, Clone)]
pub struct ParsedMail {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ParsedMail {
    /// Parses a message as the maildir stores it (`\n` or `\r\n` line ends).
    pub fn parse(raw: &str) -> ParsedMail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                // A folded header continues the previous one.
                if let Some((_, value)) = headers.last_mut() {
                    value.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut mail = ParsedMail {
            headers,
            body: String::new(),
        };
        let encoding = mail
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        mail.body = match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(body),
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body");
                String::from_utf8(bytes)
                    .expect("UTF-8 body")
                    .replace("\r\n", "\n")
            }
            _ => body.to_string(),
        };
        mail
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Quoted-printable (RFC 2045): `=XX` is a byte, `=` at a line end joins the
/// line with the next.
fn decode_quoted_printable(text: &str) -> String {
    let mut bytes = Vec::new();
    for line in text.split('\n') {
        let (line, soft) = match line.strip_suffix('=') {
            Some(line) => (line, true),
            None => (line, false),
        };
        let mut rest = line.as_bytes();
        while let Some((&byte, tail)) = rest.split_first() {
            let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
            match (byte, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'=', Some(decoded)) => {
                    bytes.push(decoded);
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(byte);
                    rest = tail;
                }
            }
        }
        if !soft {
            bytes.push(b'\n');
        }
    }
    bytes.pop(); // the split gives one line more than there are line ends
    String::from_utf8(bytes).expect("UTF-8 body")
}

/// Waits until the test server has stored a message whose `To` header
/// contains `to` and whose `Subject` contains `subject_contains`, and returns
/// it; panics after `timeout`.
pub fn wait_for_message(to: &str, subject_contains: &str, timeout: Duration) -> ParsedMail {
    let new = maildir().join("new");
    let start = Instant::now();
    loop {
        for entry in std::fs::read_dir(&new).unwrap().flatten() {
            let Ok(raw) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mail = ParsedMail::parse(&raw);
            let matches = mail.header("To").is_some_and(|t| t.contains(to))
                && mail
                    .header("Subject")
                    .is_some_and(|s| s.contains(subject_contains));
            if matches {
                return mail;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "no message to {to} with a subject containing {subject_contains:?} in {} after {timeout:?}",
            new.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
