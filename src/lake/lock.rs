//! The lake's writer lock: one run at a time publishes to a lake.
//!
//! Delta's optimistic commits already keep the log consistent when two
//! writers race (a commit is a put-if-absent of the next log file, so one
//! of two equal versions loses). The lock adds two things a lake with
//! vacuum needs: a second run for the same lake *waits* instead of failing
//! on a commit conflict, and the vacuum after a commit can delete every
//! unreferenced file (the leftovers of a killed run) knowing that no other
//! run is half-way through writing its files.
//!
//! The lock is the object `<lake>/_shelfline/writer.lock`, created with a
//! put-if-absent (`If-None-Match: *` on S3). It names its holder (host and
//! process) and carries a lease that a background task renews. A lock whose
//! lease ran out, or whose holder is a dead process on this host (a run
//! killed with SIGKILL), is stale and taken over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::storage::Location;

/// How long a lock stays valid without renewal.
const LEASE: Duration = Duration::from_secs(60);
/// How often the holder renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// How often a waiting run looks at the lock again.
const POLL: Duration = Duration::from_millis(250);

/// Where the lock lives, below the lake's root.
fn lock_path() -> Path {
    crate::storage::path(&["_shelfline", "writer.lock"])
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another shelfline run ({owner}, since {since}) is publishing to {lake}; waited {waited_secs} s (lake_lock_wait_secs). Let it finish, or, if that process is gone on another host, delete {lake}_shelfline/writer.lock"
    )]
    Busy {
        lake: String,
        owner: String,
        since: String,
        waited_secs: u64,
    },
    #[error(
        "the storage of {lake} ignores conditional writes (a put-if-absent of an existing object succeeded): two writers could overwrite each other's commits. Use a server that supports `If-None-Match: *` (AWS S3 does since 2024)"
    )]
    NoConditionalPut { lake: String },
    #[error("the writer lock of {lake}: {source}")]
    Store {
        lake: String,
        source: object_store::Error,
    },
}

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    acquired: DateTime<Utc>,
    expires: DateTime<Utc>,
}

impl Holder {
    fn me() -> Holder {
        let now = Utc::now();
        Holder {
            host: host_name(),
            pid: std::process::id(),
            acquired: now,
            expires: now + LEASE,
        }
    }

    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a lock record serializes"))
    }

    /// A lease run out, or a holder on this host that is no longer running.
    fn is_stale(&self) -> bool {
        self.expires < Utc::now() || (self.host == host_name() && !process_alive(self.pid))
    }

    fn describe(&self) -> String {
        format!("process {} on {}", self.pid, self.host)
    }
}

/// A held writer lock; [`WriterLock::release`] gives it back.
pub struct WriterLock {
    store: Arc<dyn ObjectStore>,
    path: Path,
    renewal: tokio::task::JoinHandle<()>,
}

impl WriterLock {
    /// Takes the lock of the lake at `root`, waiting up to `wait` for
    /// another run to release it.
    pub async fn acquire(root: &Location, wait: Duration) -> Result<WriterLock, LockError> {
        let store = Arc::clone(root.store());
        let path = lock_path();
        let lake = root.url().to_string();
        let store_error = |source| LockError::Store {
            lake: lake.clone(),
            source,
        };
        let started = Instant::now();
        loop {
            let me = Holder::me();
            match store.put_opts(&path, me.bytes().into(), create()).await {
                Ok(_) => {
                    check_conditional_put(&store, &path, &me, &lake).await?;
                    let renewal = tokio::spawn(renew(Arc::clone(&store), path.clone(), me));
                    return Ok(WriterLock {
                        store,
                        path,
                        renewal,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
            let Some(holder) = read_holder(&store, &path).await.map_err(store_error)? else {
                continue;
            };
            if holder.is_stale() {
                tracing::warn!(
                    lake,
                    holder = holder.describe(),
                    "taking over a stale writer lock"
                );
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(store_error(e)),
                }
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    lake,
                    owner: holder.describe(),
                    since: holder.acquired.to_rfc3339(),
                    waited_secs: wait.as_secs(),
                });
            }
            tracing::info!(
                lake,
                holder = holder.describe(),
                "waiting for the writer lock"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops renewing and deletes the lock.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(error = %e, "could not delete the writer lock; its lease runs out in a minute");
        }
    }
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    }
}

/// A second put-if-absent of the lock just created must be refused; a
/// server that accepts it would let two writers overwrite one log entry.
async fn check_conditional_put(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    me: &Holder,
    lake: &str,
) -> Result<(), LockError> {
    match store.put_opts(path, me.bytes().into(), create()).await {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
            let _ = store.delete(path).await;
            Err(LockError::NoConditionalPut {
                lake: lake.to_string(),
            })
        }
        Err(source) => Err(LockError::Store {
            lake: lake.to_string(),
            source,
        }),
    }
}

/// The holder of the lock, `None` when it vanished meanwhile. A record
/// that does not parse (not written by shelfline) counts as stale.
async fn read_holder(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<Holder>, object_store::Error> {
    let bytes = match store.get(path).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        Holder {
            expires: DateTime::<Utc>::MIN_UTC,
            ..Holder::me()
        }
    })))
}

/// Renews the lease every [`RENEW_EVERY`] until aborted.
async fn renew(store: Arc<dyn ObjectStore>, path: Path, mut me: Holder) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        me.expires = Utc::now() + LEASE;
        if let Err(e) = store.put(&path, me.bytes().into()).await {
            tracing::warn!(error = %e, "could not renew the writer lock");
        }
    }
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "unknown-host".to_string();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// Whether a process with this id runs on this host.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::S3Config;

    fn lake(name: &str) -> Location {
        Location::parse(&format!("memory://{name}"), &S3Config::default()).unwrap()
    }

    #[tokio::test]
    async fn a_second_writer_waits_then_fails_naming_the_holder() {
        let root = lake("lock-busy");
        let held = WriterLock::acquire(&root, Duration::ZERO).await.unwrap();
        let err = WriterLock::acquire(&root, Duration::from_millis(300))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("memory://lock-busy/"), "{err}");
        held.release().await;
        WriterLock::acquire(&root, Duration::ZERO)
            .await
            .unwrap()
            .release()
            .await;
    }

    #[tokio::test]
    async fn a_lock_of_a_dead_process_or_an_expired_lease_is_taken_over() {
        let root = lake("lock-stale");
        let path = lock_path();
        let dead = Holder {
            pid: u32::try_from(libc::pid_t::MAX).unwrap(),
            ..Holder::me()
        };
        let expired = Holder {
            host: "elsewhere".to_string(),
            expires: Utc::now() - chrono::Duration::seconds(1),
            ..Holder::me()
        };
        for holder in [dead, expired] {
            root.store()
                .put(&path, holder.bytes().into())
                .await
                .unwrap();
            let lock = WriterLock::acquire(&root, Duration::ZERO).await.unwrap();
            lock.release().await;
        }
        let alive_elsewhere = Holder {
            host: "elsewhere".to_string(),
            ..Holder::me()
        };
        root.store()
            .put(&path, alive_elsewhere.bytes().into())
            .await
            .unwrap();
        assert!(WriterLock::acquire(&root, Duration::ZERO).await.is_err());
    }
}
