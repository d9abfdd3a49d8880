//! The command line: one subcommand per stage, plus `run` and `demo`.
//! Flags override the config file and the environment.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::catalog::ddl::Engine;
use crate::config::{Config, EngineKind};
use crate::query::OutputFormat;
use crate::raw::RawFormat;

/// shelfline: daily retail sales & inventory pipeline — extract, check,
/// transform, publish (Delta Lake), query.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file (keys: source, password_file, source_attempts,
    /// source_retry_backoff_ms, raw, lake, raw_format, error_budget,
    /// vacuum_retention_hours, target_partitions, memory_limit_mb,
    /// max_row_bytes, scratch_dir, lake_lock_wait_secs, lake_lock_lease_secs,
    /// engine, scheduler, and the [publish], [s3], [serve], [notify] and
    /// [sql_server] tables).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line) for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SHELFLINE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the contract tables in the source and fill them with synthetic data.
    Datagen(DatagenArgs),
    /// Copy the source tables into the raw zone for a date (manifest last).
    Extract {
        #[command(flatten)]
        date: DateArg,
        #[command(flatten)]
        locations: Locations,
        /// Raw file format.
        #[arg(long, value_enum)]
        format: Option<RawFormat>,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Say whether a date's raw set is complete and matches its manifest.
    Check {
        #[command(flatten)]
        date: DateArg,
        #[command(flatten)]
        locations: Locations,
    },
    /// Check the raw set, compute the weekly fact and publish the lake tables.
    Transform {
        #[command(flatten)]
        date: DateArg,
        #[command(flatten)]
        locations: Locations,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Extract, check and transform in one go.
    Run {
        #[command(flatten)]
        date: DateArg,
        #[command(flatten)]
        locations: Locations,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        publish: PublishArgs,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Run read-only SQL over the lake (weekly_sales_inventory, store,
    /// product, calendar); statements that would write are refused.
    Query {
        /// The SQL statement.
        sql: String,
        #[command(flatten)]
        locations: Locations,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Serve the lake over PostgreSQL's wire protocol, read-only, for psql,
    /// drivers and BI tools (the [sql_server] table; Ctrl-C stops it).
    SqlServer {
        /// Address to listen on (overrides `sql_server.bind`).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        #[command(flatten)]
        locations: Locations,
    },
    /// Run the orchestrator: schedules, queued runs, retries, notifications
    /// and the HTTP API (Ctrl-C stops it; runs resume at the next start).
    Serve {
        /// Address of the HTTP API (overrides `serve.bind`).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        #[command(flatten)]
        locations: Locations,
    },
    /// Look at the run history and retry failed runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Run each date from --from to --to in order, skipping dates that
    /// already succeeded (unless --force); the schedules are not touched.
    Backfill {
        /// First logical date, YYYY-MM-DD.
        #[arg(long, value_parser = date)]
        from: NaiveDate,
        /// Last logical date, YYYY-MM-DD (inclusive).
        #[arg(long, value_parser = date)]
        to: NaiveDate,
        /// Run dates that already succeeded again.
        #[arg(long)]
        force: bool,
        /// Extract from the source too (default: process the raw files
        /// already in the raw zone).
        #[arg(long)]
        extract: bool,
        #[command(flatten)]
        publish: PublishArgs,
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        locations: Locations,
    },
    /// Compare the source with the lake week by week (rows, sales_qty,
    /// sales_amt, inventory snapshots) and list the weeks that drifted;
    /// exits 1 when some did. --repair re-extracts exactly those weeks and
    /// republishes them in one commit.
    Reconcile {
        /// First day, YYYY-MM-DD: its whole calendar week is compared.
        #[arg(long, value_parser = date)]
        from: NaiveDate,
        /// Last day, YYYY-MM-DD (inclusive): its whole week is compared if
        /// it ends by the lake's last night.
        #[arg(long, value_parser = date)]
        to: NaiveDate,
        /// Republish the weeks that drifted.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        publish: PublishArgs,
        #[command(flatten)]
        locations: Locations,
    },
    /// Run a Ballista scheduler or executor (the distributed engine).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Register the lake's tables in another engine's catalog (Athena, Glue,
    /// Trino, Spark, DuckDB).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Write a sample config, or check one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the shell completion script for `shelfline`, e.g.
    /// `shelfline completions bash > /etc/bash_completion.d/shelfline`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Generate a small data set, run the pipeline on it and show a few answers.
    Demo {
        /// Put the source, raw zone and lake in this folder instead of the
        /// configured locations.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Scale factor of the demo data.
        #[arg(long, default_value_t = 0.1)]
        sf: f64,
    },
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Print the statements that register the lake's tables in an engine,
    /// to run there.
    Ddl {
        #[arg(long, value_enum)]
        engine: Engine,
        /// The database (schema) to register them in.
        #[arg(long, value_name = "NAME", default_value = "shelfline")]
        database: String,
        /// Lake URL (overrides `lake`).
        #[arg(long, value_name = "URL")]
        lake: Option<String>,
    },
    /// Create or update the lake's tables in the AWS Glue Data Catalog, for
    /// Athena (with `[s3]`'s region and credentials).
    Sync {
        /// The Glue database (overrides `catalog.glue_database`).
        #[arg(long, value_name = "NAME")]
        glue_database: Option<String>,
        /// Lake URL, s3://BUCKET/PREFIX (overrides `lake`).
        #[arg(long, value_name = "URL")]
        lake: Option<String>,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented config with every key at its default.
    Init {
        /// Where to write it (`-` for stdout).
        #[arg(default_value = "shelfline.toml")]
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate the config (`--config`, the environment), listing every
    /// problem at once, and print the settings in effect, secrets hidden.
    Check,
}

/// `runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The latest runs, newest first.
    List {
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only runs in this state (queued, running, success, failed).
        #[arg(long)]
        state: Option<String>,
    },
    /// One run: its tasks, every attempt, errors and figures.
    Show {
        /// Run id (or its number in `runs list`).
        id: String,
    },
    /// End a queued or running run as failed; the process executing it
    /// stops it within seconds.
    Cancel {
        /// Run id (or its number in `runs list`).
        id: String,
    },
    /// Run the failed tasks of a failed run again (and what follows them).
    Retry {
        /// Run id (or its number in `runs list`).
        id: String,
        #[command(flatten)]
        publish: PublishArgs,
        #[command(flatten)]
        locations: Locations,
    },
}

/// `cluster` subcommands: the processes of a Ballista cluster, each with
/// shelfline's object stores (`file://`, `s3://` with the `[s3]` settings).
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The scheduler: plans jobs into stages and hands tasks to executors.
    Scheduler {
        /// Address clients and executors connect to.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
        bind: String,
        /// Listen on an address other machines reach, although Ballista
        /// has no authentication or TLS (see README, Distributed runs).
        #[arg(long)]
        allow_unauthenticated: bool,
    },
    /// An executor: runs tasks and serves their shuffle output.
    Executor {
        /// The scheduler's address (HOST:PORT or df://HOST:PORT).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Address of the executor's Arrow Flight service (shuffle reads).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
        bind: String,
        /// Tasks run at once (default: the number of cores).
        #[arg(long, value_name = "N")]
        concurrency: Option<usize>,
        /// Memory the executor's tasks may hold before they spill, e.g.
        /// `4GiB` or `512MiB` (default: no limit besides the machine's).
        #[arg(long, value_name = "SIZE")]
        memory_limit: Option<String>,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Listen on an address other machines reach, although Ballista
        /// has no authentication or TLS (see README, Distributed runs).
        #[arg(long)]
        allow_unauthenticated: bool,
    },
}

/// `datagen` options.
#[derive(Debug, Args)]
pub struct DatagenArgs {
    /// Scale factor: 1 = 50 stores × 400 products × 365 days (7.3 M snapshots, ~11 M sales lines).
    #[arg(long)]
    pub sf: f64,
    /// Seed; the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First day of data.
    #[arg(long, default_value = "2025-01-01", value_parser = date)]
    pub start: NaiveDate,
    /// Number of days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    #[command(flatten)]
    pub locations: Locations,
}

/// The logical date of a run.
#[derive(Debug, Args)]
pub struct DateArg {
    /// Logical date, YYYY-MM-DD.
    #[arg(long, value_parser = date)]
    pub date: NaiveDate,
}

/// A date as the flags take it, with the format in the error.
fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{e}: write the date as YYYY-MM-DD, e.g. 2026-01-10"))
}

/// Where the transform runs (overrides `engine` and `scheduler`).
#[derive(Debug, Args, Default)]
pub struct EngineArgs {
    /// `local` (this process) or `ballista` (a cluster).
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// The Ballista scheduler, df://HOST:PORT (implies --engine ballista).
    #[arg(long, value_name = "URL")]
    pub scheduler: Option<String>,
}

impl EngineArgs {
    /// Applies the flags that were given on top of `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(scheduler) = &self.scheduler {
            config.scheduler.clone_from(scheduler);
            config.engine = EngineKind::Ballista;
        }
        if let Some(engine) = self.engine {
            config.engine = engine;
        }
    }
}

/// Overrides of the publication guards for one run (`[publish]`).
#[derive(Debug, Args, Default, Clone, Copy)]
pub struct PublishArgs {
    /// Publish even if the fact table would lose more than `max_shrink` of
    /// its rows, a published week, or all its rows.
    #[arg(long)]
    pub allow_shrink: bool,
    /// Publish a logical date older than the one the fact table holds,
    /// taking the table back to that date.
    #[arg(long)]
    pub allow_older: bool,
}

impl PublishArgs {
    /// Applies the flags that were given on top of `config`.
    pub fn apply(&self, config: &mut Config) {
        config.publish.allow_shrink |= self.allow_shrink;
        config.publish.allow_older |= self.allow_older;
    }

    /// The flags as a run's `conf` keys (see the orchestrator's tasks).
    pub fn conf(&self) -> serde_json::Map<String, serde_json::Value> {
        let [shrink, older] = crate::orchestrator::GUARD_OVERRIDES;
        let mut conf = serde_json::Map::new();
        for (key, set) in [(shrink, self.allow_shrink), (older, self.allow_older)] {
            if set {
                conf.insert(key.to_string(), serde_json::Value::Bool(true));
            }
        }
        conf
    }
}

/// The facts' window of the nights a command extracts.
#[derive(Debug, Args, Default, Clone, Copy)]
pub struct WindowArgs {
    /// Extract only the sales and inventory rows from the first day of the
    /// calendar week holding D - N (further back after nights the lake
    /// missed) to D, and replace exactly the weeks they cover (overrides
    /// `lookback_days`).
    #[arg(long, value_name = "N", conflicts_with = "full",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::config::MAX_LOOKBACK_DAYS)))]
    pub lookback_days: Option<u32>,
    /// Extract full snapshots of the facts, even when `lookback_days` is set.
    #[arg(long)]
    pub full: bool,
}

impl WindowArgs {
    /// Applies the flags that were given on top of `config`.
    pub fn apply(&self, config: &mut Config) {
        if self.full {
            config.lookback_days = None;
        } else if self.lookback_days.is_some() {
            config.lookback_days = self.lookback_days;
        }
    }

    /// The flags as a run's `conf` key (see the orchestrator's tasks).
    pub fn conf(&self) -> serde_json::Map<String, serde_json::Value> {
        let key = crate::orchestrator::LOOKBACK.to_string();
        let mut conf = serde_json::Map::new();
        if self.full {
            conf.insert(key, serde_json::Value::Null);
        } else if let Some(days) = self.lookback_days {
            conf.insert(key, days.into());
        }
        conf
    }
}

/// Location overrides shared by the stage commands.
#[derive(Debug, Args, Default)]
pub struct Locations {
    /// Source database URL (sqlite://PATH, mysql://USER@HOST:PORT/DB, postgres://USER@HOST:PORT/DB)
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Raw zone URL (file://DIR or a path, s3://BUCKET/PREFIX, memory://NAME).
    #[arg(long, value_name = "URL")]
    pub raw: Option<String>,
    /// Lake URL (file://DIR or a path, s3://BUCKET/PREFIX, memory://NAME).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
}

impl Locations {
    /// Applies the flags that were given on top of `config`.
    pub fn apply(&self, config: &mut Config) {
        for (flag, slot) in [
            (&self.source, &mut config.source),
            (&self.raw, &mut config.raw),
            (&self.lake, &mut config.lake),
        ] {
            if let Some(value) = flag {
                slot.clone_from(value);
            }
        }
    }
}
