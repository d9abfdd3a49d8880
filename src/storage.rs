//! Object stores chosen by URL: `file://` (local folder, the default) and
//! `memory://` (tests). The raw zone and the lake are each one [`Location`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

/// A storage URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "storage location '{url}' is not supported: use file://DIR (or a plain path) or memory://NAME"
    )]
    Unsupported { url: String },
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid storage location '{url}': {reason}")]
    Invalid { url: String, reason: String },
}

/// A root folder in an object store: the raw zone or the lake.
#[derive(Debug, Clone)]
pub struct Location {
    url: Url,
    store: Arc<dyn ObjectStore>,
}

impl Location {
    /// Parses `file://DIR`, a plain path, or `memory://NAME`.
    ///
    /// Relative `file://./dir` paths are resolved against the current
    /// directory, and the folder is created, so the embedded defaults work
    /// on a fresh machine.
    pub fn parse(text: &str) -> Result<Location, StorageError> {
        if let Some(name) = text.strip_prefix("memory://") {
            return Ok(memory_location(name));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return local_location(path);
        }
        if text.contains("://") {
            return Err(StorageError::Unsupported {
                url: text.to_string(),
            });
        }
        local_location(text)
    }

    /// The normalized URL of this root (absolute for local folders).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object store holding this root. Paths are relative to the root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A location for a sub-folder (e.g. one lake table).
    pub fn child(&self, name: &str) -> Result<Location, StorageError> {
        let url = self
            .url
            .join(&format!("{name}/"))
            .map_err(|e| StorageError::Invalid {
                url: self.url.to_string(),
                reason: e.to_string(),
            })?;
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::prefix::PrefixStore::new(
            Arc::clone(&self.store),
            name,
        ));
        Ok(Location { url, store })
    }

    /// The local folder behind a `file://` location.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        (self.url.scheme() == "file")
            .then(|| self.url.to_file_path().ok())
            .flatten()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local_dir() {
            Some(dir) => write!(f, "{}", dir.display()),
            None => write!(f, "{}", self.url),
        }
    }
}

fn local_location(path: &str) -> Result<Location, StorageError> {
    let dir = std::path::absolute(path).map_err(|source| StorageError::CreateDir {
        path: path.to_string(),
        source,
    })?;
    std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir {
        path: dir.display().to_string(),
        source,
    })?;
    let dir = dir
        .canonicalize()
        .map_err(|source| StorageError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    let url = Url::from_directory_path(&dir).map_err(|()| StorageError::Invalid {
        url: path.to_string(),
        reason: "not an absolute path".to_string(),
    })?;
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| StorageError::Invalid {
            url: path.to_string(),
            reason: e.to_string(),
        })?
        .with_automatic_cleanup(true);
    Ok(Location {
        url,
        store: Arc::new(store),
    })
}

/// In-memory stores live for the process, one per name, so that the stages
/// of one test see the same `memory://NAME`.
fn memory_location(name: &str) -> Location {
    static STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
        LazyLock::new(Default::default);
    let name = name.trim_end_matches('/');
    let store = Arc::clone(
        STORES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name.to_string())
            .or_default(),
    );
    let url = Url::parse(&format!("memory://{name}/"))
        .unwrap_or_else(|_| Url::parse("memory://default/").expect("a constant URL parses"));
    Location { url, store }
}

/// Joins path segments below a root.
pub fn path(parts: &[&str]) -> Path {
    Path::from_iter(parts.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::ObjectStoreExt as _;

    #[tokio::test]
    async fn memory_locations_are_shared_by_name() {
        let a = Location::parse("memory://shared-test").unwrap();
        let b = Location::parse("memory://shared-test").unwrap();
        a.store()
            .put(&path(&["x"]), Bytes::from_static(b"1").into())
            .await
            .unwrap();
        assert!(b.store().head(&path(&["x"])).await.is_ok());
    }

    #[test]
    fn relative_file_urls_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("file://{}/lake", dir.path().display());
        let location = Location::parse(&text).unwrap();
        assert_eq!(location.url().scheme(), "file");
        assert!(location.local_dir().unwrap().ends_with("lake"));
    }

    #[test]
    fn unknown_schemes_name_the_url() {
        let err = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("ftp://host/x"), "{err}");
    }
}
