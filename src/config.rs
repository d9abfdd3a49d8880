//! One `Config` for the whole pipeline.
//!
//! Values come, lowest precedence first, from the embedded defaults (which
//! work offline, with no setup), a TOML file (`--config FILE`), the
//! environment (`SHELFLINE_SOURCE`, `SHELFLINE_RAW`, `SHELFLINE_LAKE`) and
//! finally command-line flags. Unknown keys in the file are errors, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raw::RawFormat;

/// Default source: an embedded SQLite database.
pub const DEFAULT_SOURCE: &str = "sqlite://./shelfline-data/source.db";
/// Default raw zone: a local folder.
pub const DEFAULT_RAW: &str = "file://./shelfline-data/raw";
/// Default lake: a local folder.
pub const DEFAULT_LAKE: &str = "file://./shelfline-data/lake";

/// Every setting of the pipeline, with its documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Transactional database to extract from (`sqlite://PATH`,
    /// `mysql://USER@HOST:PORT/DB`, `postgres://USER@HOST:PORT/DB`).
    pub source: String,
    /// File holding the source server's password (used when
    /// `SHELFLINE_SOURCE_PASSWORD` is not set).
    pub password_file: Option<PathBuf>,
    /// Attempts to read a source table when its connection drops (1 = no retry).
    pub source_attempts: u32,
    /// Wait before the first retry of a table, in milliseconds; it doubles
    /// with every further attempt.
    pub source_retry_backoff_ms: u64,
    /// Raw zone root (`file://DIR`, `memory://`).
    pub raw: String,
    /// Lake root; each table is a Delta table in `<lake>/<table>/`.
    pub lake: String,
    /// File format `extract` writes into the raw zone.
    pub raw_format: RawFormat,
    /// How many unparsable raw rows a transform may set aside in quarantine
    /// before it fails (contract section 4). 0 = fail on the first one.
    pub error_budget: u64,
    /// Hours a file removed by a lake commit is kept before it is deleted.
    /// 0 = delete right after the commit (contract section 3.1).
    pub vacuum_retention_hours: u64,
    /// Partitions DataFusion runs in parallel (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Memory DataFusion's operators may hold before they spill, in MiB
    /// (default: no limit besides the machine's).
    pub memory_limit_mb: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: DEFAULT_SOURCE.to_string(),
            password_file: None,
            source_attempts: 3,
            source_retry_backoff_ms: 1000,
            raw: DEFAULT_RAW.to_string(),
            lake: DEFAULT_LAKE.to_string(),
            raw_format: RawFormat::CsvGz,
            error_budget: 0,
            vacuum_retention_hours: 0,
            target_partitions: None,
            memory_limit_mb: None,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl Config {
    /// Loads the defaults, then `path` (if any), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok());
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Applies `SHELFLINE_SOURCE`, `SHELFLINE_RAW` and `SHELFLINE_LAKE`.
    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        for (key, slot) in [
            ("SHELFLINE_SOURCE", &mut self.source),
            ("SHELFLINE_RAW", &mut self.raw),
            ("SHELFLINE_LAKE", &mut self.lake),
        ] {
            if let Some(value) = var(key).filter(|v| !v.is_empty()) {
                *slot = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shelfline.toml");
        std::fs::write(&path, "lake = \"file:///data/lake\"\nerror_budget = 3\n").unwrap();
        let mut config = Config::from_file(&path).unwrap();
        assert_eq!(config.lake, "file:///data/lake");
        assert_eq!(config.error_budget, 3);
        assert_eq!(config.raw, DEFAULT_RAW);

        config.apply_env(|key| (key == "SHELFLINE_LAKE").then(|| "memory://".to_string()));
        assert_eq!(config.lake, "memory://");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shelfline.toml");
        std::fs::write(&path, "lakes = \"file:///data/lake\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `lakes`"), "{err}");
    }
}
