//! One executor per run history: the process that holds the lock file
//! beside the history (`<history>.lock`) is the only one that runs tasks.
//! The kernel releases the lock when the process ends, however it ends, so
//! a daemon killed with SIGKILL never leaves a stale lock behind.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A problem taking the executor lock.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorLockError {
    #[error("cannot open the executor lock {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ExecutorLock {
    _file: File,
}

/// Whether the lock was taken or who holds it.
#[derive(Debug)]
pub enum Acquired {
    Held(ExecutorLock),
    /// Another process holds it; its pid as it wrote it.
    Busy {
        holder: String,
    },
}

/// The lock file of the history at `history`.
pub fn lock_path(history: &Path) -> PathBuf {
    let mut name = history.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Tries to take the executor lock of the history at `history`.
pub fn try_acquire(history: &Path) -> Result<Acquired, ExecutorLockError> {
    let path = lock_path(history);
    let open_error = |source| ExecutorLockError::Open {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_error)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        file.read_to_string(&mut holder).map_err(open_error)?;
        return Ok(Acquired::Busy {
            holder: holder.trim().to_string(),
        });
    }
    file.set_len(0).map_err(open_error)?;
    file.rewind().map_err(open_error)?;
    writeln!(file, "pid {}", std::process::id()).map_err(open_error)?;
    Ok(Acquired::Held(ExecutorLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("history.db");
        let first = match try_acquire(&history).unwrap() {
            Acquired::Held(lock) => lock,
            Acquired::Busy { holder } => panic!("busy: {holder}"),
        };
        match try_acquire(&history).unwrap() {
            Acquired::Busy { holder } => assert_eq!(holder, format!("pid {}", std::process::id())),
            Acquired::Held(_) => panic!("two holders"),
        }
        drop(first);
        assert!(matches!(try_acquire(&history).unwrap(), Acquired::Held(_)));
    }
}
