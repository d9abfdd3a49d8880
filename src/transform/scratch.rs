//! The transform's scratch folders, under `scratch_dir`: one per transform,
//! holding its staged fact until the lake commit has encoded it (about
//! 3.8 GB at SF 100). A folder is locked (`flock` on its `.lock` file) for
//! as long as its transform lives; a transform that was killed leaves it
//! unlocked, and the next transform to start removes it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The prefix of every scratch folder's name.
const PREFIX: &str = "transform-";
/// The lock file in each scratch folder.
const LOCK: &str = ".lock";
/// A folder without its lock file is left alone this long: its transform
/// may be about to create it.
const GRACE: Duration = Duration::from_secs(60);

/// A live scratch folder; dropping it removes the folder.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// Creates a scratch folder under `root` (created if needed), first
    /// removing the folders of transforms that no longer run.
    pub fn create(root: &Path) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(root)?;
        for stale in stale_folders(root) {
            tracing::info!(folder = %stale.display(), "removing the scratch folder of a transform that stopped");
            if let Err(e) = std::fs::remove_dir_all(&stale) {
                tracing::warn!(folder = %stale.display(), "cannot remove a stale scratch folder: {e}");
            }
        }
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(root)?;
        // Locked before it takes its name, so that no other transform ever
        // sees the folder with a lock file nobody holds.
        let unnamed = dir.path().join(format!("{LOCK}.new"));
        let lock = File::create(&unnamed)?;
        if !try_lock(&lock) {
            return Err(std::io::Error::other("cannot lock a new scratch folder"));
        }
        std::fs::rename(&unnamed, dir.path().join(LOCK))?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The scratch folders under `root` whose transform no longer runs.
fn stale_folders(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|entry| entry.path())
        .filter(|dir| dir.is_dir() && is_stale(dir))
        .collect()
}

fn is_stale(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        // Locked by its live transform, or free: its transform is gone.
        Ok(lock) => try_lock(&lock),
        Err(_) => std::fs::metadata(dir)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > GRACE),
    }
}

/// Takes the lock of `file` without waiting; the kernel releases it when
/// the process ends, however it ends.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_a_stopped_transform_is_removed_a_live_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let live = Scratch::create(root.path()).unwrap();
        // What a killed transform leaves: a folder whose lock nobody holds.
        let stopped = root.path().join(format!("{PREFIX}killed"));
        std::fs::create_dir(&stopped).unwrap();
        std::fs::write(stopped.join(LOCK), "").unwrap();
        std::fs::write(stopped.join("staged.arrow"), "data").unwrap();
        let fresh = root.path().join(format!("{PREFIX}starting"));
        std::fs::create_dir(&fresh).unwrap();

        let next = Scratch::create(root.path()).unwrap();
        assert!(!stopped.exists());
        assert!(live.path().exists() && fresh.exists() && next.path().exists());
        let (live_path, next_path) = (live.path().to_path_buf(), next.path().to_path_buf());
        drop((live, next));
        assert!(!live_path.exists() && !next_path.exists());
    }
}
