//! One `Config` for the whole pipeline.
//!
//! Values come, lowest precedence first, from the embedded defaults (which
//! work offline, with no setup), a TOML file (`--config FILE`), the
//! environment (`SHELFLINE_SOURCE`, `SHELFLINE_RAW`, `SHELFLINE_LAKE`) and
//! finally command-line flags. Unknown keys in the file are errors, so a typo
//! never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raw::RawFormat;

mod catalog;
mod notify;
mod sql_server;
pub use catalog::{CatalogConfig, is_database_name};
pub use notify::{EmailConfig, NotifyConfig, SmtpSecurity, WebhookConfig, WebhookFormat};
pub use sql_server::SqlServerConfig;

/// Default source: an embedded SQLite database.
pub const DEFAULT_SOURCE: &str = "sqlite://./shelfline-data/source.db";
/// Default raw zone: a local folder.
pub const DEFAULT_RAW: &str = "file://./shelfline-data/raw";
/// Default lake: a local folder.
pub const DEFAULT_LAKE: &str = "file://./shelfline-data/lake";

/// The largest `memory_limit_mb`: 1 PiB, far beyond any machine, and far
/// from overflowing a byte count.
pub const MAX_MEMORY_LIMIT_MB: usize = 1 << 30;
/// Bounds of `max_row_bytes`.
pub const MIN_ROW_BYTES: usize = 1 << 10;
pub const MAX_ROW_BYTES: usize = 1 << 30;

/// A commented config with every key at its default (`shelfline config
/// init`); a test holds it to [`Config::default`].
pub const SAMPLE: &str = include_str!("sample.toml");

/// Default Ballista scheduler (`shelfline cluster scheduler`'s address).
pub const DEFAULT_SCHEDULER: &str = "df://127.0.0.1:50050";

/// Where the transform's SQL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// DataFusion in this process (the default).
    Local,
    /// A Ballista cluster: scheduler and executors (`shelfline cluster`).
    Ballista,
}

/// The longest lookback of an incremental night: ten years.
pub const MAX_LOOKBACK_DAYS: u32 = 3660;

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
    /// Incremental nights: extract only the `sales` and `inventory` rows
    /// from the first day of the calendar week holding `date - N` (further
    /// back after nights the lake missed) to the run's date, and replace
    /// exactly the weeks they cover. Unset = full snapshots every night.
    pub lookback_days: Option<u32>,
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
    /// Partitions DataFusion runs in parallel (default: the number of
    /// cores; for the metric query, half of them: see
    /// [`crate::engine::metric_query_partitions`]).
    pub target_partitions: Option<usize>,
    /// Memory DataFusion's operators may hold before they spill, in MiB
    /// (default: no limit besides the machine's).
    pub memory_limit_mb: Option<usize>,
    /// Where transforms keep their staged output until it is published
    /// (about 4% of the raw files' size); folders of transforms that were
    /// killed are removed when the next transform starts.
    pub scratch_dir: PathBuf,
    /// The longest raw CSV row, in bytes (quoted newlines included). A
    /// longer row (a missing newline, an unclosed quote) fails the run
    /// naming the file and the line where it starts, so that one row can
    /// never take the process's memory.
    pub max_row_bytes: usize,
    /// Seconds a run waits for another run's hold on the lake (the writer
    /// lock) before it fails; 0 fails at once.
    pub lake_lock_wait_secs: u64,
    /// Seconds the writer lock stays valid without a renewal (renewed every
    /// quarter of it). A holder that cannot renew it in time (stopped,
    /// paused, cut off from the storage) loses the lock and commits nothing
    /// more; another run may then take it over.
    pub lake_lock_lease_secs: u64,
    /// What a publication may do to the published fact table.
    pub publish: PublishConfig,
    /// Where the transform's SQL runs: `local` (this process) or `ballista`
    /// (the Ballista cluster at `scheduler`).
    pub engine: EngineKind,
    /// The Ballista scheduler, `df://HOST:PORT`, when `engine = "ballista"`.
    pub scheduler: String,
    /// How `s3://` locations are reached.
    pub s3: S3Config,
    /// The orchestrator (`shelfline serve`, `runs`, `backfill`).
    pub serve: ServeConfig,
    /// Who hears about sensor timeouts, failures and (optionally) successes.
    pub notify: NotifyConfig,
    /// The PostgreSQL wire-protocol server over the lake.
    pub sql_server: SqlServerConfig,
    /// The catalog `serve` registers the lake in after each publication.
    pub catalog: CatalogConfig,
}

/// The `[publish]` table: the guards a publication passes before it
/// commits anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// The largest fraction of the fact table's rows one run may remove
    /// (0.1 = 10%). A run that would remove more, empty the table or drop a
    /// published week fails, naming both counts.
    pub max_shrink: f64,
    /// Publish even when the shrink guard refuses (`--allow-shrink` for
    /// one run).
    pub allow_shrink: bool,
    /// Publish a logical date older than the one the fact table holds,
    /// taking it back to that date (`--allow-older` for one run).
    pub allow_older: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            max_shrink: 0.1,
            allow_shrink: false,
            allow_older: false,
        }
    }
}

/// The `[serve]` table: schedules, retries, the sensor, the run history and
/// the HTTP API of the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The DAG's id in the API (`/api/v1/dags/{dag_id}/dagRuns`).
    pub dag_id: String,
    /// Other ids the API accepts for the DAG: those an existing trigger
    /// sends (the original pipeline's `batch_processing_dag`).
    pub dag_aliases: Vec<String>,
    /// Address of the HTTP API.
    pub bind: String,
    /// The run history (SQLite file).
    pub history: PathBuf,
    /// IANA time zone of the schedules, e.g. `Europe/Paris`.
    pub timezone: String,
    /// Cron expression starting a run with extraction; empty = off (the
    /// raw files come from another producer).
    pub extract_schedule: String,
    /// Cron expression before which a scheduled run's sensor does not
    /// start; empty = right after extraction.
    pub process_schedule: String,
    /// Run every date missed while the daemon was down (else only the latest).
    pub catchup: bool,
    /// Cron expression of the source ↔ lake reconciliation (`shelfline
    /// reconcile` over the last `reconcile_days` days, notified on drift);
    /// empty = off.
    pub reconcile_schedule: String,
    /// Days back from yesterday that the scheduled reconciliation compares.
    pub reconcile_days: u32,
    /// Whether the scheduled reconciliation republishes the weeks that
    /// drifted (else it only notifies).
    pub reconcile_repair: bool,
    /// Runs executed at the same time.
    pub max_active_runs: usize,
    /// Seconds between two checks of the raw set by `wait_for_raw`.
    pub poke_interval_secs: u64,
    /// Seconds `wait_for_raw` waits for a complete raw set, from its first
    /// check, before the run fails and the missing files are notified.
    pub sensor_timeout_secs: u64,
    /// Retries of a failed task (0 = none).
    pub retries: u32,
    /// Seconds before the first retry.
    pub retry_delay_secs: u64,
    /// Factor applied to the delay at each further retry.
    pub retry_backoff: f64,
    /// Longest delay between two attempts, in seconds.
    pub max_retry_delay_secs: u64,
    /// Per-task retry overrides, e.g. `[serve.tasks.publish] retries = 5`.
    pub tasks: BTreeMap<String, TaskRetries>,
    /// Credentials of the HTTP API.
    pub auth: ApiAuth,
}

/// Retry settings of one task, overriding the `[serve]` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaskRetries {
    pub retries: Option<u32>,
    pub retry_delay_secs: Option<u64>,
}

/// The `[serve.auth]` table. Every endpoint but `/health` needs HTTP basic
/// credentials or a bearer token; there is no default password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiAuth {
    /// User name for HTTP basic authentication.
    pub username: Option<String>,
    /// File holding the password (`SHELFLINE_API_PASSWORD` takes precedence).
    pub password_file: Option<PathBuf>,
    /// File holding a bearer token (`SHELFLINE_API_TOKEN` takes precedence).
    pub token_file: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            dag_id: "shelfline".to_string(),
            dag_aliases: Vec::new(),
            bind: "127.0.0.1:8080".to_string(),
            history: PathBuf::from("./shelfline-data/history.db"),
            timezone: "UTC".to_string(),
            extract_schedule: "0 2 * * *".to_string(),
            process_schedule: "0 3 * * *".to_string(),
            catchup: false,
            reconcile_schedule: String::new(),
            reconcile_days: 35,
            reconcile_repair: false,
            max_active_runs: 1,
            poke_interval_secs: 60,
            sensor_timeout_secs: 3600,
            retries: 2,
            retry_delay_secs: 60,
            retry_backoff: 2.0,
            max_retry_delay_secs: 3600,
            tasks: BTreeMap::new(),
            auth: ApiAuth::default(),
        }
    }
}

/// The `[s3]` table: how `s3://bucket/prefix` locations are reached. The
/// standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_ALLOW_HTTP`) override these keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`
    /// (default: AWS's endpoint for the region).
    pub endpoint: Option<String>,
    /// Region of the buckets.
    pub region: String,
    /// Whether an `http://` endpoint may be used (plain text: only on a
    /// trusted network).
    pub allow_http: bool,
    /// `https://bucket.host/key` instead of path-style `https://host/bucket/key`.
    pub virtual_hosted_style: bool,
    /// Access key id (the secret comes from `AWS_SECRET_ACCESS_KEY` or
    /// `secret_access_key_file`, never from this file).
    pub access_key_id: Option<String>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// Where credentials come from: the static keys above (the default),
    /// or AWS's standard chain (see [`S3Credentials::Chain`]).
    pub credentials: S3Credentials,
    /// Retries of a request that failed with a 5xx, a throttling reply, a
    /// timeout or a dropped connection; the wait doubles from 100 ms.
    pub max_retries: usize,
    /// Seconds after which a failing request is not retried any more.
    pub retry_timeout_secs: u64,
}

/// Where S3 credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum S3Credentials {
    /// `access_key_id` with the secret from `AWS_SECRET_ACCESS_KEY` or
    /// `secret_access_key_file`; without them, a location on S3 is refused.
    #[default]
    Static,
    /// AWS's standard chain, in its order: those static keys when set,
    /// else a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE` and
    /// `AWS_ROLE_ARN`: EKS service accounts), else container credentials
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on ECS,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` on EKS Pod Identity), else
    /// the instance's role from the metadata service (IMDSv2, at
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` if set).
    Chain,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: "us-east-1".to_string(),
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key_file: None,
            credentials: S3Credentials::Static,
            max_retries: 10,
            retry_timeout_secs: 180,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: DEFAULT_SOURCE.to_string(),
            password_file: None,
            source_attempts: 3,
            source_retry_backoff_ms: 1000,
            lookback_days: None,
            raw: DEFAULT_RAW.to_string(),
            lake: DEFAULT_LAKE.to_string(),
            raw_format: RawFormat::CsvGz,
            error_budget: 0,
            vacuum_retention_hours: 0,
            target_partitions: None,
            memory_limit_mb: None,
            max_row_bytes: 1 << 20,
            scratch_dir: std::env::temp_dir().join("shelfline-scratch"),
            lake_lock_wait_secs: 300,
            lake_lock_lease_secs: 60,
            publish: PublishConfig::default(),
            engine: EngineKind::Local,
            scheduler: DEFAULT_SCHEDULER.to_string(),
            s3: S3Config::default(),
            serve: ServeConfig::default(),
            notify: NotifyConfig::default(),
            sql_server: SqlServerConfig::default(),
            catalog: CatalogConfig::default(),
        }
    }
}

impl S3Config {
    /// Applies the standard AWS variables (see [`S3Config`]).
    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let var = |key: &str| var(key).filter(|v| !v.is_empty());
        if let Some(endpoint) = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")) {
            self.endpoint = Some(endpoint);
        }
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            self.region = region;
        }
        if let Some(key) = var("AWS_ACCESS_KEY_ID") {
            self.access_key_id = Some(key);
        }
        if let Some(allow) = var("AWS_ALLOW_HTTP") {
            self.allow_http = allow.eq_ignore_ascii_case("true") || allow == "1";
        }
    }
}

/// Reads a file holding a secret (a password, a key, a token): its content
/// without the final newline. Callers say which setting named the file.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
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

    /// Every setting whose value cannot work, each naming its key; empty
    /// when all are usable. (Locations are checked where they are parsed.)
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let shrink = self.publish.max_shrink;
        if !(0.0..=1.0).contains(&shrink) {
            problems.push(format!(
                "publish.max_shrink = {shrink}: must be a fraction from 0 to 1 (0.1 = 10%)"
            ));
        }
        if self.lake_lock_lease_secs < 4 {
            problems.push(format!(
                "lake_lock_lease_secs = {}: must be at least 4 (it is renewed every quarter of it)",
                self.lake_lock_lease_secs
            ));
        }
        if let Some(limit) = self.memory_limit_mb
            && !(1..=MAX_MEMORY_LIMIT_MB).contains(&limit)
        {
            problems.push(format!(
                "memory_limit_mb = {limit}: must be from 1 to {MAX_MEMORY_LIMIT_MB}"
            ));
        }
        if !(MIN_ROW_BYTES..=MAX_ROW_BYTES).contains(&self.max_row_bytes) {
            problems.push(format!(
                "max_row_bytes = {}: must be from {MIN_ROW_BYTES} to {MAX_ROW_BYTES}",
                self.max_row_bytes
            ));
        }
        if let Some(days) = self.lookback_days
            && days > MAX_LOOKBACK_DAYS
        {
            problems.push(format!(
                "lookback_days = {days}: must be at most {MAX_LOOKBACK_DAYS}; for a longer history, leave it unset (full snapshots)"
            ));
        }
        if !(1..=MAX_LOOKBACK_DAYS).contains(&self.serve.reconcile_days) {
            problems.push(format!(
                "serve.reconcile_days = {}: must be from 1 to {MAX_LOOKBACK_DAYS}",
                self.serve.reconcile_days
            ));
        }
        if self.target_partitions == Some(0) {
            problems.push("target_partitions = 0: must be at least 1".to_string());
        }
        problems.extend(self.sql_server.problems());
        problems.extend(self.catalog.problems());
        problems
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
        self.s3.apply_env(var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `line` is `key = value`.
    fn is_setting(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    /// The sample holds every key at its default, and the keys it leaves
    /// commented out are real ones.
    #[test]
    fn the_sample_is_every_key_at_its_default() {
        let parsed: Config = toml::from_str(SAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
        let defaults = toml::to_string(&Config::default()).unwrap();
        for line in defaults.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            let set = format!("\n{key} = ");
            let commented = format!("\n# {key} = ");
            assert!(
                SAMPLE.contains(&set) || SAMPLE.contains(&commented),
                "{key}"
            );
        }
        let uncommented: String = SAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || is_setting(rest) => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let every: Config = toml::from_str(&uncommented).unwrap();
        assert!(every.notify.email.is_some() && every.notify.webhook.is_some());
        assert!(every.memory_limit_mb.is_some() && every.serve.auth.username.is_some());
    }

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
    fn aws_variables_override_the_s3_table() {
        let mut config: Config =
            toml::from_str("[s3]\nregion = \"eu-west-1\"\nendpoint = \"https://s3.example\"\n")
                .unwrap();
        config.apply_env(|key| match key {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_ALLOW_HTTP" => Some("true".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".to_string()),
            _ => None,
        });
        assert_eq!(config.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.s3.region, "eu-west-1");
        assert!(config.s3.allow_http);
        assert_eq!(config.s3.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
    }

    #[test]
    fn unusable_values_are_named_all_at_once() {
        let config: Config = toml::from_str(
            "memory_limit_mb = 18446744073709551615\nlake_lock_lease_secs = 1\n\
             max_row_bytes = 10\n[publish]\nmax_shrink = 1.5\n\
             [sql_server]\nmax_connections = 0\ncert_file = \"/etc/c.pem\"\n",
        )
        .unwrap();
        let problems = config.problems().join("\n");
        for key in [
            "memory_limit_mb = 18446744073709551615",
            "lake_lock_lease_secs = 1",
            "max_row_bytes = 10",
            "publish.max_shrink = 1.5",
            "sql_server.max_connections = 0",
            "sql_server.cert_file and sql_server.key_file",
        ] {
            assert!(problems.contains(key), "{problems}");
        }
        assert!(Config::default().problems().is_empty());
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
