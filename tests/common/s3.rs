//! The S3-compatible test servers that `.ci/s3` starts (moto), a fresh
//! bucket per test, and a loopback proxy that fails some requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shelfline::config::S3Config;

/// The test server's access key; the server takes any.
pub const ACCESS_KEY: &str = "shelfline-test-key";
/// The secret the tests hand over; no output may ever show it.
pub const SECRET: &str = "s3-secret-never-printed";

/// `http://host:port` of the moto server that takes any credentials.
pub fn endpoint() -> String {
    setting("SHELFLINE_TEST_S3_ENDPOINT")
}

/// `http://host:port` of the moto server that refuses every key.
pub fn auth_endpoint() -> String {
    setting("SHELFLINE_TEST_S3_AUTH_ENDPOINT")
}

/// `https://host:port` of the moto server behind TLS (for its STS).
pub fn tls_endpoint() -> String {
    setting("SHELFLINE_TEST_S3_TLS_ENDPOINT")
}

/// The certificate that the TLS server presents, for clients to trust.
pub fn ca_file() -> String {
    setting("SHELFLINE_TEST_S3_CA_FILE")
}

fn setting(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test S3 servers with `bash .ci/s3 start` \
             and `source /tmp/shelfline-s3/env` (README, Development)"
        )
    })
}

/// Creates a bucket named after `test` and this process, and returns its
/// name.
pub fn new_bucket(test: &str) -> String {
    let name = format!("{test}-{}", std::process::id()).replace('_', "-");
    let status = request(&endpoint(), "PUT", &format!("/{name}"));
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "creating {name}: {status}"
    );
    name
}

/// Sends an unsigned request (moto accepts them) and returns the status
/// line.
fn request(endpoint: &str, method: &str, path: &str) -> String {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    status.trim_end().to_string()
}

/// The `[s3]` settings for `endpoint`, the secret in a file under `dir`.
pub fn config(endpoint: &str, dir: &std::path::Path) -> S3Config {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, SECRET).unwrap();
    S3Config {
        endpoint: Some(endpoint.to_string()),
        allow_http: true,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key_file: Some(secret),
        ..S3Config::default()
    }
}

/// The environment a user sets to reach `endpoint`.
pub fn env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
    ]
}

/// A loopback HTTP proxy in front of `upstream` that answers every
/// `fail_every`-th request with `503 Slow Down` instead of forwarding it.
pub struct FaultyProxy {
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
    fail_every: usize,
}

impl FaultyProxy {
    pub fn start(upstream: &str, fail_every: usize) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let counter = Arc::clone(&requests);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let number = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let fail = number.is_multiple_of(fail_every);
                let upstream = upstream.clone();
                std::thread::spawn(move || serve(client, &upstream, fail));
            }
        });
        FaultyProxy {
            endpoint,
            requests,
            fail_every,
        }
    }

    /// Requests seen, and how many of them were failed.
    pub fn counts(&self) -> (usize, usize) {
        let seen = self.requests.load(Ordering::SeqCst);
        (seen, seen / self.fail_every)
    }
}

/// One request per connection: the request is read whole, then failed or
/// forwarded with `Connection: close`, and the answer copied back.
fn serve(mut client: TcpStream, upstream: &str, fail: bool) {
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    if fail {
        let reply = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let forwarded = server
        .write_all(head.as_bytes())
        .and_then(|()| server.write_all(b"Connection: close\r\n\r\n"))
        .and_then(|()| server.write_all(&body));
    if forwarded.is_ok() {
        let _ = std::io::copy(&mut server, &mut client);
    }
}

/// The request's head (without the blank line) and its body.
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}
