//! Cancel requests: psql's Ctrl-C, or a driver's `cancel()`, sends the
//! connection's key (from its BackendKeyData) on a new connection; the
//! statement that connection is running then ends with SQLSTATE 57014, as
//! in PostgreSQL. A request while no statement runs, or with a key no
//! connection has, does nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// A connection's key: its process id and secret, as bytes (a cancel
/// request's four-byte secret may be decoded as bytes or as an integer).
type Key = (i32, Vec<u8>);

fn key_of(pid: i32, secret: &SecretKey) -> Key {
    match secret {
        SecretKey::I32(secret) => (pid, secret.to_be_bytes().to_vec()),
        SecretKey::Bytes(secret) => (pid, secret.to_vec()),
    }
}

/// The connections whose statements can be cancelled, by key.
#[derive(Default)]
pub(super) struct Cancels {
    connections: Mutex<HashMap<Key, Arc<CancelSignal>>>,
}

/// One connection's cancel requests, counted.
pub(super) struct CancelSignal {
    key: OnceLock<Key>,
    requests: watch::Sender<u64>,
}

/// What a statement watches: any change is a cancel request.
pub(super) type Cancel = watch::Receiver<u64>;

impl CancelSignal {
    pub(super) fn new() -> Arc<CancelSignal> {
        Arc::new(CancelSignal {
            key: OnceLock::new(),
            requests: watch::Sender::new(0),
        })
    }

    /// A statement of the connection with `key` starts: the connection is
    /// registered with `cancels` the first time; the statement sees the
    /// requests that come from now on.
    pub(super) fn statement(
        self: &Arc<Self>,
        cancels: &Cancels,
        (pid, secret): (i32, SecretKey),
    ) -> Cancel {
        let key = key_of(pid, &secret);
        if self.key.set(key.clone()).is_ok() {
            cancels.lock().insert(key, Arc::clone(self));
        }
        self.requests.subscribe()
    }
}

impl Cancels {
    /// The connection of `signal` has ended.
    pub(super) fn forget(&self, signal: &CancelSignal) {
        if let Some(key) = signal.key.get() {
            self.lock().remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<CancelSignal>>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = key_of(request.pid, &request.secret_key);
        let signal = self.lock().get(&key).cloned();
        if let Some(signal) = signal {
            tracing::info!("SQL server: cancel request for connection {}", request.pid);
            signal.requests.send_modify(|count| *count += 1);
        }
    }
}

/// Resolves when a cancel request comes for the statement watching
/// `cancel` (never, once its connection is gone).
pub(super) async fn requested(cancel: &mut Cancel) {
    if cancel.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(pid: i32, secret: i32) -> (i32, SecretKey) {
        (pid, SecretKey::I32(secret))
    }

    #[tokio::test]
    async fn a_request_with_the_key_cancels_the_running_statement_only() {
        let cancels = Cancels::default();
        let signal = CancelSignal::new();
        let mut statement = signal.statement(&cancels, key(7, 42));
        // A wrong secret or another pid does nothing.
        cancels
            .on_cancel_request(CancelRequest::new(7, SecretKey::I32(41)))
            .await;
        cancels
            .on_cancel_request(CancelRequest::new(8, SecretKey::I32(42)))
            .await;
        let waited = tokio::time::timeout(Duration::from_millis(50), requested(&mut statement));
        assert!(waited.await.is_err(), "not cancelled");
        // The same secret, decoded as bytes.
        let bytes = SecretKey::Bytes(42i32.to_be_bytes().to_vec().into());
        cancels
            .on_cancel_request(CancelRequest::new(7, bytes))
            .await;
        requested(&mut statement).await;
        // The next statement starts afresh.
        let mut next = signal.statement(&cancels, key(7, 42));
        let waited = tokio::time::timeout(Duration::from_millis(50), requested(&mut next));
        assert!(waited.await.is_err(), "a new statement is not cancelled");
        cancels.forget(&signal);
        assert!(cancels.lock().is_empty());
    }
}
