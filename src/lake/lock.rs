//! The lake's writer lock: one run at a time publishes to a lake, and a run
//! that lost the lock can neither commit nor vacuum.
//!
//! Delta's optimistic commits already keep the log consistent when two
//! writers race (a commit is a put-if-absent of the next log file). The
//! lock adds what a lake with vacuum needs: a second run *waits* instead of
//! failing on a commit conflict, and vacuum may delete files no commit
//! references (the leftovers of a killed run) knowing which writers could
//! still commit them.
//!
//! **Generations.** The lock is a sequence of objects
//! `<lake>/_shelfline/writer/<generation>.json`, each created with a
//! put-if-absent (`If-None-Match: *` on S3): taking the lock is creating
//! the next generation, so of two runs taking over the same stale lock
//! exactly one wins, with no check-then-delete race. A generation's record
//! names its holder (host, process, and the kernel and PID namespace it
//! runs in) and carries a lease that only its holder renews; releasing it
//! marks the record released. Nothing is ever deleted to give a lock back,
//! so no release or renewal can touch another holder's lock.
//!
//! **When a lock is free.** Its latest generation was released, or its
//! holder is a process that no longer runs in the same kernel and PID
//! namespace, or its lease ran out (a process stopped, a VM paused, a
//! storage stall, renewals failing). Unless the previous holder released
//! the lock after a publication that succeeded, a holder may still be alive
//! and about to commit (the one whose lease ran out, or one before it that
//! a failed successor did not finish fencing), so the new holder *fences*
//! the tables before it writes (see [`crate::lake`]).
//!
//! **Fencing.** Every shelfline commit carries a Delta application
//! transaction with app id [`WRITER_APP_ID`] and the lock's generation.
//! Delta's conflict check fails a commit when a commit that landed after
//! the committer read the table carries the same app id, so once a newer
//! holder has committed to a table (a write, or the fence commit right
//! after a take-over), no older holder's commit to it can land. A holder
//! also checks [`WriterLock::ensure_held`] after opening a table and before
//! committing or vacuuming: its lease must not have run out by its own
//! monotonic clock, and no newer generation may exist.
//!
//! **Vacuum.** A holder deletes unreferenced files only when the storage
//! last modified them before its own generation was created
//! ([`WriterLock::acquired_at`], the storage's clock, like the files'): a
//! newer holder's files are always newer, and an older holder's can no
//! longer be committed once this holder committed to the table.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::storage::Location;

/// The Delta application transaction id every shelfline commit carries,
/// with the writer lock's generation as its version.
pub const WRITER_APP_ID: &str = "shelfline.writer";
/// How often a waiting run looks at the lock again.
const POLL: Duration = Duration::from_millis(250);
/// Where shelfline versions before generations kept the lock; a live one
/// is waited for, so that an old daemon and a new run never publish at once.
fn legacy_path() -> Path {
    crate::storage::path(&["_shelfline", "writer.lock"])
}
/// Generations kept below the newest (for `shelfline` to name a holder).
const KEPT_GENERATIONS: u64 = 1;

/// How a run takes the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How long to wait for another run's lock; zero fails at once.
    pub wait: Duration,
    /// How long the lock stays valid without a renewal; renewed every
    /// quarter of it.
    pub lease: Duration,
}

/// The folder of the lock's generations, below the lake's root.
fn folder() -> Path {
    crate::storage::path(&["_shelfline", "writer"])
}

fn record_path(generation: u64) -> Path {
    crate::storage::path(&["_shelfline", "writer", &format!("{generation:020}.json")])
}

/// Why the lock could not be taken or is no longer held.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another shelfline run ({owner}, since {since}) is publishing to {lake}; waited {waited_secs} s (lake_lock_wait_secs). Let it finish; a lock whose holder stopped renewing it is taken over when its lease runs out"
    )]
    Busy {
        lake: String,
        owner: String,
        since: String,
        waited_secs: u64,
    },
    #[error(
        "this run lost the writer lock of {lake} ({reason}) and stopped before its next commit; what it committed before stays, each table as one commit. Run the date again"
    )]
    Lost { lake: String, reason: String },
    #[error(
        "the storage of {lake} ignores conditional writes (a put-if-absent of an existing object succeeded): two writers could overwrite each other's commits. Use a server that supports `If-None-Match: *` (AWS S3 does since 2024)"
    )]
    NoConditionalPut { lake: String },
    #[error("the writer lock of {lake}: {source}")]
    Store {
        lake: String,
        source: object_store::Error,
    },
    #[error(
        "the writer lock of {lake} is at its last possible generation; move _shelfline/writer/ aside when no run publishes"
    )]
    Exhausted { lake: String },
}

/// What a generation's record holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    generation: u64,
    host: String,
    pid: u32,
    /// The kernel boot and PID namespace the process runs in: a pid means
    /// the same process only within both.
    machine: Option<String>,
    acquired: DateTime<Utc>,
    expires: DateTime<Utc>,
    #[serde(default)]
    released: bool,
    /// Released before this holder finished fencing the tables: the next
    /// holder must fence them.
    #[serde(default)]
    fence_pending: bool,
}

/// Whether the latest generation can be taken over, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Held,
    /// Released, or its holder is gone: nothing to fence.
    Free,
    /// Its lease ran out with its holder perhaps alive: fence the tables.
    Expired,
}

impl Holder {
    fn me(generation: u64, lease: Duration) -> Holder {
        let now = Utc::now();
        Holder {
            generation,
            host: host_name(),
            pid: std::process::id(),
            machine: machine_id(),
            acquired: now,
            expires: now + lease,
            released: false,
            fence_pending: false,
        }
    }

    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a lock record serializes"))
    }

    fn standing(&self) -> Standing {
        if self.released || self.is_dead_process_here() {
            Standing::Free
        } else if self.expires < Utc::now() {
            Standing::Expired
        } else {
            Standing::Held
        }
    }

    /// A holder in this kernel and PID namespace whose process is gone (a
    /// run killed with SIGKILL). Elsewhere only the lease tells.
    fn is_dead_process_here(&self) -> bool {
        self.host == host_name()
            && self.machine.is_some()
            && self.machine == machine_id()
            && !process_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "process {} on {}, generation {}",
            self.pid, self.host, self.generation
        )
    }
}

/// The newest generation and its record (`None` when the record is not
/// shelfline's), or `None` when the lock was never taken.
async fn latest(
    store: &Arc<dyn ObjectStore>,
) -> Result<Option<(u64, Option<Holder>)>, object_store::Error> {
    let Some(generation) = generations(store).await?.into_iter().max() else {
        return Ok(None);
    };
    let bytes = match store.get(&record_path(generation)).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Some((generation, None))),
        Err(e) => return Err(e),
    };
    Ok(Some((generation, serde_json::from_slice(&bytes).ok())))
}

async fn generations(store: &Arc<dyn ObjectStore>) -> Result<Vec<u64>, object_store::Error> {
    let listed: Vec<_> = store.list(Some(&folder())).try_collect().await?;
    Ok(listed
        .iter()
        .filter_map(|meta| {
            meta.location
                .filename()?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect())
}

/// How the holder's lease stands, by its own monotonic clock (which keeps
/// counting while the process is stopped).
#[derive(Debug)]
struct Lease {
    valid_until: Instant,
    last_error: Option<String>,
}

/// A held writer lock; [`WriterLock::release`] gives it back. Dropped
/// without a release (a publication abandoned on an error path), it stops
/// renewing at once and marks itself released when it can.
pub struct WriterLock {
    store: Arc<dyn ObjectStore>,
    lake: String,
    me: Holder,
    acquired_at: DateTime<Utc>,
    must_fence: bool,
    lease: Arc<Mutex<Lease>>,
    /// Held while the lease is written: a release waits for a renewal in
    /// flight, then stops the renewals (true), so no renewal can land after
    /// the released record.
    writes: Arc<tokio::sync::Mutex<bool>>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl WriterLock {
    /// Takes the lock of the lake at `root`, waiting up to `options.wait`
    /// for another run to release it.
    pub async fn acquire(root: &Location, options: LockOptions) -> Result<WriterLock, LockError> {
        let store = Arc::clone(root.store());
        let lake = root.url().to_string();
        let store_error = |source| LockError::Store {
            lake: lake.clone(),
            source,
        };
        let started = Instant::now();
        let mut told = false;
        loop {
            let latest = latest(&store).await.map_err(store_error)?;
            // A holder that did not release its lock may be alive (a lease
            // that ran out) or may have died before it finished fencing.
            let must_fence = match &latest {
                Some((_, Some(holder))) if holder.released => holder.fence_pending,
                _ => true,
            };
            let (next, standing) = match &latest {
                None => (Some(1), Standing::Free),
                Some((generation, None)) => (generation.checked_add(1), Standing::Expired),
                Some((generation, Some(holder))) => (generation.checked_add(1), holder.standing()),
            };
            let next = next.ok_or_else(|| LockError::Exhausted { lake: lake.clone() })?;
            let busy = match (standing, &latest) {
                (Standing::Held, Some((_, Some(holder)))) => Some(holder.clone()),
                _ => legacy_holder(&store).await.map_err(store_error)?,
            };
            if let Some(holder) = busy {
                if started.elapsed() >= options.wait {
                    return Err(LockError::Busy {
                        lake,
                        owner: holder.describe(),
                        since: holder.acquired.to_rfc3339(),
                        waited_secs: options.wait.as_secs(),
                    });
                }
                if !told {
                    tracing::info!(
                        lake,
                        holder = holder.describe(),
                        "waiting for the writer lock"
                    );
                    told = true;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            let sent = Instant::now();
            let me = Holder::me(next, options.lease);
            match store
                .put_opts(&record_path(next), me.bytes().into(), create())
                .await
            {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(store_error(e)),
            }
            check_conditional_put(&store, &me, &lake).await?;
            if standing == Standing::Expired {
                tracing::warn!(
                    lake,
                    generation = next,
                    "took over a writer lock whose lease ran out"
                );
            }
            let acquired_at = store
                .head(&record_path(next))
                .await
                .map_err(store_error)?
                .last_modified;
            forget_old_generations(&store, next).await;
            let lease = Arc::new(Mutex::new(Lease {
                valid_until: sent + options.lease,
                last_error: None,
            }));
            let writes = Arc::new(tokio::sync::Mutex::new(false));
            let renewal = tokio::spawn(renew(
                Arc::clone(&store),
                me.clone(),
                options.lease,
                Arc::clone(&lease),
                Arc::clone(&writes),
            ));
            tracing::info!(lake, generation = next, "writer lock acquired");
            return Ok(WriterLock {
                store,
                lake,
                me,
                acquired_at,
                must_fence,
                lease,
                writes,
                renewal: Some(renewal),
            });
        }
    }

    /// This lock's generation: the version of the [`WRITER_APP_ID`]
    /// transaction in every commit made under it.
    pub fn generation(&self) -> u64 {
        self.me.generation
    }

    /// When the storage created this generation (its clock, not ours).
    pub fn acquired_at(&self) -> DateTime<Utc> {
        self.acquired_at
    }

    /// Whether the tables must be fenced before anything else: the previous
    /// holder did not release the lock (its lease ran out: it may be alive
    /// and about to commit), or released it before it finished fencing for
    /// a holder before it.
    pub fn must_fence(&self) -> bool {
        self.must_fence
    }

    /// Fails when this lock is no longer held: its lease ran out by this
    /// process's clock (it was stopped, or renewals failed), or a newer
    /// generation exists.
    pub async fn ensure_held(&self) -> Result<(), LockError> {
        let lost = |reason: String| self.lost(reason);
        {
            let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
            if Instant::now() >= lease.valid_until {
                let why = match &lease.last_error {
                    Some(error) => format!("; the last renewal failed: {error}"),
                    None => " while the process was not running".to_string(),
                };
                return Err(lost(format!("its lease ran out{why}")));
            }
        }
        let latest = latest(&self.store)
            .await
            .map_err(|source| LockError::Store {
                lake: self.lake.clone(),
                source,
            })?;
        match latest {
            Some((generation, _)) if generation == self.me.generation => Ok(()),
            Some((_, Some(holder))) => Err(lost(format!("taken over by {}", holder.describe()))),
            _ => Err(lost("its lock record is gone".to_string())),
        }
    }

    /// The error of a holder that lost this lock, and why.
    pub fn lost(&self, reason: String) -> LockError {
        LockError::Lost {
            lake: self.lake.clone(),
            reason,
        }
    }

    /// Stops renewing and marks the lock released; `fence_pending` when
    /// this holder had to fence the tables and did not finish (the next
    /// holder then fences them).
    pub async fn release(mut self, fence_pending: bool) {
        let renewal = self.renewal.take();
        let record = self.released_record(fence_pending);
        let path = record_path(self.me.generation);
        let store = Arc::clone(&self.store);
        if let Err(e) = stop_and_write(&self.writes, renewal, &store, &path, record).await {
            tracing::warn!(error = %e, "could not release the writer lock; its lease runs out in a minute");
        }
    }

    fn released_record(&self, fence_pending: bool) -> Bytes {
        Holder {
            released: true,
            fence_pending,
            ..self.me.clone()
        }
        .bytes()
    }
}

impl Drop for WriterLock {
    /// A lock dropped without [`WriterLock::release`] (a publication
    /// abandoned mid-way: a request of it may still land) stops renewing and
    /// is released with a fence pending, when a runtime is there to do it;
    /// otherwise its lease runs out.
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            renewal.abort();
            return;
        };
        let (writes, store, path, record) = (
            Arc::clone(&self.writes),
            Arc::clone(&self.store),
            record_path(self.me.generation),
            self.released_record(true),
        );
        runtime.spawn(async move {
            let _ = stop_and_write(&writes, Some(renewal), &store, &path, record).await;
        });
    }
}

/// Waits for a renewal in flight, stops the renewals and writes `record`.
async fn stop_and_write(
    writes: &tokio::sync::Mutex<bool>,
    renewal: Option<tokio::task::JoinHandle<()>>,
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    record: Bytes,
) -> Result<(), object_store::Error> {
    let mut stopped = writes.lock().await;
    *stopped = true;
    if let Some(renewal) = renewal {
        renewal.abort();
    }
    store.put(path, record.into()).await.map(|_| ())
}

/// The holder of a lock file of an older shelfline, when it is live.
async fn legacy_holder(
    store: &Arc<dyn ObjectStore>,
) -> Result<Option<Holder>, object_store::Error> {
    #[derive(Deserialize)]
    struct Legacy {
        host: String,
        pid: u32,
        acquired: DateTime<Utc>,
        expires: DateTime<Utc>,
    }
    let bytes = match store.get(&legacy_path()).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(legacy) = serde_json::from_slice::<Legacy>(&bytes) else {
        return Ok(None);
    };
    let dead_here = legacy.host == host_name() && !process_alive(legacy.pid);
    let live = legacy.expires > Utc::now() && !dead_here;
    Ok(live.then_some(Holder {
        generation: 0,
        host: legacy.host,
        pid: legacy.pid,
        machine: None,
        acquired: legacy.acquired,
        expires: legacy.expires,
        released: false,
        fence_pending: false,
    }))
}

fn create() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    }
}

/// A second put-if-absent of the record just created must be refused; a
/// server that accepts it would let two writers overwrite one log entry.
async fn check_conditional_put(
    store: &Arc<dyn ObjectStore>,
    me: &Holder,
    lake: &str,
) -> Result<(), LockError> {
    let path = record_path(me.generation);
    match store.put_opts(&path, me.bytes().into(), create()).await {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
            let _ = store.delete(&path).await;
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

/// Deletes the records of generations older than the one before `newest`.
/// A holder that lost its lock still sees `newest` when it looks.
async fn forget_old_generations(store: &Arc<dyn ObjectStore>, newest: u64) {
    let Ok(all) = generations(store).await else {
        return;
    };
    for old in all.into_iter().filter(|g| *g + KEPT_GENERATIONS < newest) {
        let _ = store.delete(&record_path(old)).await;
    }
}

/// Renews the lease every quarter of it until stopped, noting in `lease`
/// until when it is valid by this process's clock. Each write holds
/// `writes`, which is true once the lock is released.
async fn renew(
    store: Arc<dyn ObjectStore>,
    mut me: Holder,
    length: Duration,
    lease: Arc<Mutex<Lease>>,
    writes: Arc<tokio::sync::Mutex<bool>>,
) {
    loop {
        tokio::time::sleep(length / 4).await;
        let stopped = writes.lock().await;
        if *stopped {
            return;
        }
        let sent = Instant::now();
        me.expires = Utc::now() + length;
        let result = store
            .put(&record_path(me.generation), me.bytes().into())
            .await;
        drop(stopped);
        let mut state = lease.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                state.valid_until = sent + length;
                state.last_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the writer lock");
                state.last_error = Some(e.to_string());
            }
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

/// The kernel's boot id and this process's PID namespace: two processes
/// with the same pid are the same only when both match.
fn machine_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), namespace.display()))
}

/// Whether a process with this id runs in this PID namespace.
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

    fn options(wait_ms: u64) -> LockOptions {
        LockOptions {
            wait: Duration::from_millis(wait_ms),
            lease: Duration::from_secs(60),
        }
    }

    async fn put_record(root: &Location, holder: &Holder) {
        root.store()
            .put(&record_path(holder.generation), holder.bytes().into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_second_writer_waits_then_fails_naming_the_holder() {
        let root = lake("lock-busy");
        let held = WriterLock::acquire(&root, options(0)).await.unwrap();
        let err = WriterLock::acquire(&root, options(300))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("memory://lock-busy/"), "{err}");
        held.release(false).await;
        let next = WriterLock::acquire(&root, options(0)).await.unwrap();
        assert_eq!(next.generation(), 2);
        assert!(!next.must_fence(), "the previous holder released it");
        next.release(true).await;
        let after = WriterLock::acquire(&root, options(0)).await.unwrap();
        assert!(
            after.must_fence(),
            "the previous holder left its fence pending"
        );
    }

    /// A holder that is gone or whose lease ran out is taken over; the new
    /// holder fences, since a holder that did not finish may be alive.
    #[tokio::test]
    async fn a_dead_holder_or_an_expired_lease_is_taken_over_and_fenced() {
        let root = lake("lock-stale");
        let dead = Holder {
            pid: u32::try_from(libc::pid_t::MAX).unwrap(),
            ..Holder::me(1, Duration::from_secs(60))
        };
        put_record(&root, &dead).await;
        let lock = WriterLock::acquire(&root, options(0)).await.unwrap();
        assert!(lock.must_fence());
        lock.release(false).await;

        let expired = Holder {
            host: "elsewhere".to_string(),
            expires: Utc::now() - chrono::Duration::seconds(1),
            ..Holder::me(3, Duration::from_secs(60))
        };
        put_record(&root, &expired).await;
        let lock = WriterLock::acquire(&root, options(0)).await.unwrap();
        assert_eq!(lock.generation(), 4);
        assert!(lock.must_fence());
    }

    /// A live lock file of a shelfline from before generations is waited
    /// for; a stale one is not.
    #[tokio::test]
    async fn a_live_lock_of_an_older_shelfline_is_waited_for() {
        let root = lake("lock-legacy");
        let legacy = |expires: DateTime<Utc>| {
            serde_json::json!({"host": "elsewhere", "pid": 7, "acquired": Utc::now(), "expires": expires})
                .to_string()
        };
        root.store()
            .put(
                &legacy_path(),
                legacy(Utc::now() + chrono::Duration::seconds(60)).into(),
            )
            .await
            .unwrap();
        let err = WriterLock::acquire(&root, options(0)).await.err().unwrap();
        assert!(err.to_string().contains("process 7 on elsewhere"), "{err}");
        root.store()
            .put(
                &legacy_path(),
                legacy(Utc::now() - chrono::Duration::seconds(1)).into(),
            )
            .await
            .unwrap();
        WriterLock::acquire(&root, options(0)).await.unwrap();
    }

    /// A live holder elsewhere, or in another PID namespace of this host
    /// with a pid that does not run here, keeps its lock until its lease
    /// runs out.
    #[tokio::test]
    async fn a_live_lease_elsewhere_or_in_another_namespace_is_respected() {
        for (name, holder) in [
            (
                "lock-elsewhere",
                Holder {
                    host: "elsewhere".to_string(),
                    ..Holder::me(1, Duration::from_secs(60))
                },
            ),
            (
                "lock-namespace",
                Holder {
                    pid: u32::try_from(libc::pid_t::MAX).unwrap(),
                    machine: Some("another boot, pid:[1]".to_string()),
                    ..Holder::me(1, Duration::from_secs(60))
                },
            ),
        ] {
            let root = lake(name);
            put_record(&root, &holder).await;
            assert!(
                WriterLock::acquire(&root, options(0)).await.is_err(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_holder_whose_lock_was_taken_over_knows_it() {
        let root = lake("lock-lost");
        let first = WriterLock::acquire(&root, options(0)).await.unwrap();
        first.ensure_held().await.unwrap();
        let newer = Holder {
            host: "elsewhere".to_string(),
            ..Holder::me(first.generation() + 1, Duration::from_secs(60))
        };
        put_record(&root, &newer).await;
        let err = first.ensure_held().await.unwrap_err().to_string();
        assert!(err.contains("taken over by process"), "{err}");
        // Its release leaves the newer holder's lock alone.
        first.release(false).await;
        assert!(WriterLock::acquire(&root, options(0)).await.is_err());
    }

    #[tokio::test]
    async fn a_lease_that_ran_out_is_lost_even_if_nobody_took_it() {
        let root = lake("lock-lapsed");
        let lock = WriterLock::acquire(
            &root,
            LockOptions {
                wait: Duration::ZERO,
                lease: Duration::from_millis(40),
            },
        )
        .await
        .unwrap();
        *lock.writes.lock().await = true;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let err = lock.ensure_held().await.unwrap_err().to_string();
        assert!(err.contains("its lease ran out"), "{err}");
    }

    #[tokio::test]
    async fn two_takers_of_one_stale_lock_get_one_generation_each() {
        let root = lake("lock-race");
        let expired = Holder {
            host: "elsewhere".to_string(),
            expires: Utc::now() - chrono::Duration::seconds(1),
            ..Holder::me(7, Duration::from_secs(60))
        };
        put_record(&root, &expired).await;
        let (a, b) = tokio::join!(
            WriterLock::acquire(&root, options(0)),
            WriterLock::acquire(&root, options(0))
        );
        let won: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(won.len(), 1);
        assert_eq!(won[0].generation(), 8);
    }

    #[tokio::test]
    async fn a_dropped_lock_is_released() {
        let root = lake("lock-dropped");
        drop(WriterLock::acquire(&root, options(0)).await.unwrap());
        WriterLock::acquire(&root, options(2000)).await.unwrap();
    }
}
