//! Publication: the lake tables as Delta Lake tables under `<lake>/<table>/`.
//!
//! - `weekly_sales_inventory` (contract section 3.1), partitioned by
//!   `yr_num`/`wk_num`. A run over full snapshots of the facts replaces the
//!   whole table, so it is exactly the last good run's output (and running a
//!   date twice leaves the same table); a run over a date window replaces
//!   only the weeks it computed ([`FactScope`]).
//! - `store`, `product`, `calendar` (section 3.2), partitioned by
//!   `snapshot_date`; a run replaces only its own date's snapshot.
//!
//! Each table changes in one Delta commit, so readers see the old or the new
//! version, never a mix. The dimensions are committed before the fact, and
//! all of them only after every check and the publication guards passed
//! ([`guard`]: no older logical date, no emptied or shrunk fact table).
//! Every commit records the run's logical date and run. Files a commit
//! removed are then vacuumed (after `vacuum_retention_hours`, default at
//! once), so that a plain Hive-Parquet reader of the folder sees exactly
//! the committed rows.
//!
//! A publication holds the lake's writer lock ([`lock`]) from its guards to
//! its last vacuum, so a second run waits; the lock's generation, carried
//! by every commit, fences a holder that lost the lock, and vacuum deletes
//! the files of a run that was killed mid-write only when no newer holder
//! can have written them. On S3 a commit is a put-if-absent of the next log
//! entry (delta-rs's default log store with `If-None-Match: *`); no lock
//! table is needed.

mod guard;
mod latest_snapshot;
mod lock;

/// Rows per Parquet data page in the lake's files.
const PAGE_ROWS: usize = 2048;

use object_store::ObjectStoreExt as _;
use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitConflictError, CommitProperties};
use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore};
use deltalake::operations::vacuum::{Clock, VacuumMode};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::config::Config;
use crate::raw::csv::{date_from_days, days_since_epoch};
use crate::raw::quarantine::Quarantine;
use crate::schema::{FACT_PARTITIONS, FACT_TABLE, SNAPSHOT_COLUMN, Table};
use crate::storage::{Location, StorageError};
pub use guard::{GuardError, WeekRows};
use latest_snapshot::LatestSnapshot;
pub use lock::{LockError, LockOptions};

/// The Delta application transaction id whose version is the logical date
/// (days since 1970-01-01) of the run that made a commit.
const DATE_APP_ID: &str = "shelfline.logical_date";

/// A lake operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake table {table} at {url}: {source}")]
    Delta {
        table: String,
        url: String,
        source: Box<DeltaTableError>,
    },
    #[error(
        "no lake table {table} at {url}; run `shelfline transform --date D` (or `shelfline demo`) first, or point --lake at an existing lake"
    )]
    NotFound { table: String, url: String },
    #[error("lake table {table}: {source}")]
    Engine {
        table: String,
        source: datafusion::error::DataFusionError,
    },
    #[error("writing the quarantine file {file}: {message}")]
    Quarantine { file: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error(
        "the fact table's log records no week or row count for {file} (written by another engine?), so the shrink guard cannot compare; publish with --allow-shrink"
    )]
    Uncounted { file: String },
}

impl LakeError {
    /// Wraps a delta-rs error with the table and its URL.
    fn delta(table: &str, url: &Url) -> impl Fn(DeltaTableError) -> LakeError {
        let (table, url) = (table.to_string(), url.to_string());
        move |source| LakeError::Delta {
            table: table.clone(),
            url: url.clone(),
            source: Box::new(source),
        }
    }
}

/// Which part of the fact table a run replaces.
#[derive(Debug, Clone, PartialEq)]
pub enum FactScope {
    /// Every week: the raw fact files were full snapshots.
    All,
    /// Only these (yr_num, wk_num): the raw fact files held a date window
    /// (contract section 2), so the other weeks stay as published.
    Weeks(Vec<(i32, i32)>),
}

impl FactScope {
    /// The replace-where predicate of this scope; `None` replaces all rows.
    fn predicate(&self) -> Option<datafusion::prelude::Expr> {
        let FactScope::Weeks(weeks) = self else {
            return None;
        };
        let week = |&(year, week): &(i32, i32)| {
            col(FACT_PARTITIONS[0])
                .eq(lit(year))
                .and(col(FACT_PARTITIONS[1]).eq(lit(week)))
        };
        weeks.iter().map(week).reduce(|a, b| a.or(b))
    }

    fn covers(&self, week: &(i32, i32)) -> bool {
        match self {
            FactScope::All => true,
            FactScope::Weeks(weeks) => weeks.contains(week),
        }
    }
}

/// Everything one run publishes.
pub struct Publication<'a> {
    pub date: NaiveDate,
    /// Which run publishes (a run id, or the command), recorded in every
    /// commit with the date.
    pub run: String,
    pub fact: DataFrame,
    pub fact_scope: FactScope,
    /// The fact's rows per week, for the shrink guard.
    pub fact_weeks: WeekRows,
    pub dimensions: Vec<(Table, DataFrame)>,
    pub quarantine: &'a Quarantine,
}

/// How a publication runs: its lock, vacuum and guards.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishOptions {
    pub lock: LockOptions,
    /// Hours a file removed by a commit, or left by a killed run, is kept.
    pub retention_hours: u64,
    /// See [`crate::config::PublishConfig`].
    pub max_shrink: f64,
    pub allow_shrink: bool,
    pub allow_older: bool,
}

impl PublishOptions {
    /// The options the configuration sets.
    pub fn from_config(config: &Config) -> PublishOptions {
        PublishOptions {
            lock: LockOptions {
                wait: Duration::from_secs(config.lake_lock_wait_secs),
                lease: Duration::from_secs(config.lake_lock_lease_secs),
            },
            retention_hours: config.vacuum_retention_hours,
            max_shrink: config.publish.max_shrink,
            allow_shrink: config.publish.allow_shrink,
            allow_older: config.publish.allow_older,
        }
    }
}

/// What a publication committed.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// The new version of each table, in commit order.
    pub versions: Vec<(String, u64)>,
    /// Data files deleted by vacuum after the commits.
    pub files_vacuumed: usize,
    /// Where unparsable rows set aside within the error budget were written.
    pub quarantine_file: Option<String>,
}

/// What every commit of one publication carries: the writer lock's
/// generation (the fence, see [`lock`]) and the logical date, as Delta
/// application transactions, and the run in the commit's info.
struct Commit<'a> {
    lock: &'a lock::WriterLock,
    date: NaiveDate,
    run: &'a str,
}

impl Commit<'_> {
    fn properties(&self) -> CommitProperties {
        let generation = i64::try_from(self.lock.generation()).unwrap_or(i64::MAX);
        CommitProperties::default()
            .with_application_transaction(Transaction::new(lock::WRITER_APP_ID, generation))
            .with_application_transaction(Transaction::new(
                DATE_APP_ID,
                i64::from(days_since_epoch(self.date)),
            ))
            .with_metadata([(
                "shelfline".to_string(),
                serde_json::json!({
                    "logical_date": self.date.to_string(),
                    "run": self.run,
                    "writer_generation": generation,
                }),
            )])
    }
}

/// The lake: a root folder holding one Delta table per lake table.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Location,
}

impl Lake {
    /// The lake at `root`.
    pub fn new(root: Location) -> Self {
        Lake { root }
    }

    /// The lake's root folder.
    pub fn root(&self) -> &Location {
        &self.root
    }

    fn table_url(&self, name: &str) -> Result<Url, LakeError> {
        Ok(self.root.child(name)?.url().clone())
    }

    fn builder(&self, location: &Location, name: &str) -> Result<DeltaTable, LakeError> {
        let url = location.url().clone();
        let mut builder =
            DeltaTableBuilder::from_url(url.clone()).map_err(LakeError::delta(name, &url))?;
        if let Some((store, base)) = location.base() {
            // The bucket's store as configured (endpoint, credentials,
            // retries, conditional put), or the process-wide in-memory one.
            register_s3_log_store();
            builder = builder.with_storage_backend(Arc::clone(store), base.clone());
        }
        builder.build().map_err(LakeError::delta(name, &url))
    }

    /// Opens a table that exists; `None` when the folder holds no Delta
    /// log yet. Creates nothing.
    async fn open(&self, name: &str) -> Result<Option<DeltaTable>, LakeError> {
        let location = self.root.child(name)?;
        if !self.has_log(&location).await? {
            return Ok(None);
        }
        let mut table = self.builder(&location, name)?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(source) => Err(LakeError::delta(name, location.url())(source)),
        }
    }

    /// Opens a table to write into: the existing one, or an empty one that
    /// the first write creates (with its folder).
    async fn open_for_write(&self, name: &str) -> Result<DeltaTable, LakeError> {
        if let Some(table) = self.open(name).await? {
            return Ok(table);
        }
        let location = self.root.child(name)?;
        if let Some(dir) = location.local_dir() {
            // delta-rs wants an existing folder, even for a table to create.
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        self.builder(&location, name)
    }

    /// Whether a table folder holds a Delta log (opening a folder without one
    /// is not an error: the first write creates the table).
    async fn has_log(&self, location: &Location) -> Result<bool, LakeError> {
        Ok(!self.log_files(location).await?.is_empty())
    }

    /// The names of the files in a table's log folder (none without one).
    async fn log_files(&self, location: &Location) -> Result<Vec<String>, LakeError> {
        let log = crate::storage::path(&["_delta_log"]);
        match location.store().list_with_delimiter(Some(&log)).await {
            Ok(listing) => Ok(listing
                .objects
                .iter()
                .filter_map(|object| object.location.filename().map(str::to_string))
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(LakeError::Storage(StorageError::Invalid {
                url: location.url().to_string(),
                reason: e.to_string(),
            })),
        }
    }

    /// The current version of a table, `None` when it does not exist: its
    /// newest commit in the log, from one listing (nothing is read, so
    /// readers can ask before every statement).
    pub async fn version(&self, name: &str) -> Result<Option<u64>, LakeError> {
        let location = self.root.child(name)?;
        let files = self.log_files(&location).await?;
        Ok(files.iter().filter_map(|file| commit_version(file)).max())
    }

    /// The current version of each lake table (`None` for one not created
    /// yet): two calls give the same answer unless a commit came between.
    pub async fn versions(&self) -> Result<Vec<Option<u64>>, LakeError> {
        let mut versions = Vec::new();
        for name in Table::DIMENSIONS
            .iter()
            .map(|t| t.name())
            .chain([FACT_TABLE])
        {
            versions.push(self.version(name).await?);
        }
        Ok(versions)
    }

    /// The logical date of the run whose publication the table holds
    /// (`None` for a table no shelfline run recorded a date in).
    pub async fn logical_date(&self, name: &str) -> Result<Option<NaiveDate>, LakeError> {
        match self.open(name).await? {
            Some(table) => self.date_of(&table, name).await,
            None => Ok(None),
        }
    }

    /// The logical date `table` (named `name`) records, if any.
    async fn date_of(
        &self,
        table: &DeltaTable,
        name: &str,
    ) -> Result<Option<NaiveDate>, LakeError> {
        let url = self.table_url(name)?;
        let snapshot = table.snapshot().map_err(LakeError::delta(name, &url))?;
        let days = snapshot
            .transaction_version(table.log_store().as_ref(), DATE_APP_ID)
            .await
            .map_err(LakeError::delta(name, &url))?;
        Ok(days
            .and_then(|days| i32::try_from(days).ok())
            .and_then(date_from_days))
    }

    /// Commits the dimension snapshots of the run's date, then the fact
    /// table, then vacuums and writes the quarantine file (if rows were set
    /// aside), all under the lake's writer lock, after the guards passed.
    pub async fn publish(
        &self,
        publication: Publication<'_>,
        options: &PublishOptions,
    ) -> Result<PublishReport, LakeError> {
        let lock = lock::WriterLock::acquire(&self.root, options.lock).await?;
        let fenced = match lock.must_fence() {
            true => self.fence(&lock).await,
            false => Ok(()),
        };
        let fence_pending = fenced.is_err();
        let result = match fenced {
            Ok(()) => self.publish_locked(publication, options, &lock).await,
            Err(e) => Err(e),
        };
        lock.release(fence_pending).await;
        result
    }

    async fn publish_locked(
        &self,
        publication: Publication<'_>,
        options: &PublishOptions,
        lock: &lock::WriterLock,
    ) -> Result<PublishReport, LakeError> {
        self.guard(&publication, options).await?;
        let Publication {
            date,
            run,
            fact,
            fact_scope,
            fact_weeks: _,
            dimensions,
            quarantine,
        } = publication;
        let commit = Commit {
            lock,
            date,
            run: &run,
        };
        let mut report = PublishReport::default();
        let mut committed = Vec::new();
        let snapshot = ScalarValue::Date32(Some(days_since_epoch(date)));
        for (table, frame) in dimensions {
            let frame = frame
                .with_column(SNAPSHOT_COLUMN, lit(snapshot.clone()))
                .map_err(|source| LakeError::Engine {
                    table: table.name().to_string(),
                    source,
                })?;
            let replace = col(SNAPSHOT_COLUMN).eq(lit(snapshot.clone()));
            let written = self
                .write(
                    table.name(),
                    frame,
                    &[SNAPSHOT_COLUMN],
                    Some(replace),
                    &commit,
                )
                .await?;
            committed.push((table.name(), written));
        }
        if fact_scope != FactScope::Weeks(Vec::new()) {
            let replace = fact_scope.predicate();
            let written = self
                .write(FACT_TABLE, fact, &FACT_PARTITIONS, replace, &commit)
                .await?;
            committed.push((FACT_TABLE, written));
        }
        // Only tables this run committed to: from that commit on, no older
        // holder of the lock can commit to them any more.
        for (name, table) in committed {
            report
                .versions
                .push((name.to_string(), table.version().unwrap_or_default()));
            report.files_vacuumed += self
                .vacuum(name, table, options.retention_hours, lock)
                .await?;
        }
        report.quarantine_file = self.write_quarantine(date, quarantine).await?;
        Ok(report)
    }

    /// The guards of [`guard`]: the publication's date against the fact
    /// table's, and its rows per week against those it replaces.
    async fn guard(
        &self,
        publication: &Publication<'_>,
        options: &PublishOptions,
    ) -> Result<(), LakeError> {
        let table = self.open(FACT_TABLE).await?;
        let newest = match &table {
            Some(table) => self.date_of(table, FACT_TABLE).await?,
            None => None,
        };
        let today = Utc::now().date_naive();
        guard::check_date(publication.date, newest, options.allow_older, today)?;
        let Some(table) = table else {
            return Ok(());
        };
        if options.allow_shrink {
            return Ok(());
        }
        // A window's scope is the calendar weeks it covers: the
        // publication replaces exactly those.
        let mut published = self.week_rows(&table)?;
        published.retain(|week, _| publication.fact_scope.covers(week));
        guard::check_shrink(
            publication.date,
            &published,
            &publication.fact_weeks,
            options.max_shrink,
        )?;
        Ok(())
    }

    /// The fact table's rows per week, from the row count its log records
    /// for each file (no data file is read).
    fn week_rows(&self, table: &DeltaTable) -> Result<WeekRows, LakeError> {
        let url = self.table_url(FACT_TABLE)?;
        let snapshot = table
            .snapshot()
            .map_err(LakeError::delta(FACT_TABLE, &url))?;
        let mut weeks = WeekRows::new();
        for file in snapshot.log_data().iter() {
            let partition = file.partition_values_map();
            let number = |name: &str| {
                partition
                    .get(name)
                    .cloned()
                    .flatten()
                    .and_then(|value| value.parse::<i32>().ok())
            };
            let week = number(FACT_PARTITIONS[0]).zip(number(FACT_PARTITIONS[1]));
            let (Some(week), Some(rows)) = (week, file.num_records()) else {
                return Err(LakeError::Uncounted {
                    file: file.path().to_string(),
                });
            };
            *weeks.entry(week).or_default() += rows as u64;
        }
        Ok(weeks)
    }

    /// When a holder before this one may still be alive (see
    /// [`lock::WriterLock::must_fence`]): commits this generation to every
    /// table, so that it can commit to none of them any more.
    async fn fence(&self, lock: &lock::WriterLock) -> Result<(), LakeError> {
        let properties = || {
            let generation = i64::try_from(lock.generation()).unwrap_or(i64::MAX);
            CommitProperties::default()
                .with_application_transaction(Transaction::new(lock::WRITER_APP_ID, generation))
        };
        for name in Table::DIMENSIONS
            .iter()
            .map(|t| t.name())
            .chain([FACT_TABLE])
        {
            for attempt in 1.. {
                let Some(table) = self.open(name).await? else {
                    break;
                };
                let url = self.table_url(name)?;
                let snapshot = table.snapshot().map_err(LakeError::delta(name, &url))?;
                let operation = DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: None,
                    predicate: None,
                };
                let committed = CommitBuilder::from(properties())
                    .build(Some(snapshot), table.log_store(), operation)
                    .await;
                match committed {
                    Ok(_) => {
                        tracing::info!(
                            table = name,
                            generation = lock.generation(),
                            "fenced the table against earlier holders of the writer lock"
                        );
                        break;
                    }
                    // The old holder's last commit landed meanwhile: read
                    // the table again and fence it then.
                    Err(e) if attempt < 3 && is_commit_conflict(&e) => {}
                    Err(e) => return Err(LakeError::delta(name, &url)(e)),
                }
            }
        }
        Ok(())
    }

    /// Writes `frame` into table `name` in one commit: all rows replaced, or
    /// only those matching `replace_where`. Returns the table as committed.
    async fn write(
        &self,
        name: &str,
        frame: DataFrame,
        partitions: &[&str],
        replace_where: Option<datafusion::prelude::Expr>,
        commit: &Commit<'_>,
    ) -> Result<DeltaTable, LakeError> {
        let table = self.open_for_write(name).await?;
        // After the table was read: a holder that took the lock over after
        // this check commits after this read, which fails this commit.
        commit.lock.ensure_held().await?;
        let url = self.table_url(name)?;
        let (state, plan) = frame.into_parts();
        // Pages of at most PAGE_ROWS rows, so that the page index lets a
        // reader skip most of a week's file when it looks for a few stores
        // or products (the rows are in key order).
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .build();
        let mut builder = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(Arc::new(state))
            .with_save_mode(SaveMode::Overwrite)
            .with_partition_columns(partitions.iter().copied())
            .with_writer_properties(properties)
            .with_table_name(name)
            // A new table checkpoints its log every ten commits (Delta's
            // default is a hundred), so a reader opening it reads few files.
            .with_configuration([("delta.checkpointInterval", Some("10"))])
            .with_commit_properties(commit.properties());
        if let Some(predicate) = replace_where {
            builder = builder.with_replace_where(predicate);
        }
        tracing::info!(table = name, "committing");
        let table = builder.await.map_err(|e| {
            if is_commit_conflict(&e) {
                LakeError::Lock(commit.lock.lost(format!(
                    "another writer committed to {name} while this run was writing it"
                )))
            } else {
                LakeError::delta(name, &url)(e)
            }
        })?;
        let version = table.version().unwrap_or_default();
        tracing::info!(table = name, version, "committed");
        Ok(table)
    }

    /// Deletes the data files that commits removed more than
    /// `retention_hours` ago, and the files no commit references that the
    /// storage last modified before this run's lock was created (and more
    /// than `retention_hours` ago): never a file a newer holder of the lock
    /// may still commit. Returns the number deleted.
    async fn vacuum(
        &self,
        name: &str,
        mut table: DeltaTable,
        retention_hours: u64,
        lock: &lock::WriterLock,
    ) -> Result<usize, LakeError> {
        let retention = chrono::Duration::hours(retention_hours.try_into().unwrap_or(i64::MAX));
        let url = self.table_url(name)?;
        let mut deleted = 0;
        for (mode, clock) in [
            (VacuumMode::Lite, None),
            (VacuumMode::Full, Some(lock.acquired_at())),
        ] {
            lock.ensure_held().await?;
            let mut vacuum = table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .with_mode(mode);
            if let Some(at) = clock {
                vacuum = vacuum.with_clock(Arc::new(FixedClock(at)));
            }
            let (vacuumed, metrics) = vacuum.await.map_err(LakeError::delta(name, &url))?;
            table = vacuumed;
            deleted += metrics.files_deleted.len();
        }
        tracing::info!(table = name, files = deleted, "vacuumed");
        Ok(deleted)
    }

    async fn write_quarantine(
        &self,
        date: NaiveDate,
        quarantine: &Quarantine,
    ) -> Result<Option<String>, LakeError> {
        if quarantine.rows().is_empty() {
            return Ok(None);
        }
        let path = crate::storage::path(&["_quarantine", &format!("{date}.csv")]);
        let error = |message: String| LakeError::Quarantine {
            file: path.to_string(),
            message,
        };
        let bytes = quarantine.to_csv().map_err(|e| error(e.to_string()))?;
        self.root
            .store()
            .put(&path, bytes::Bytes::from(bytes).into())
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(Some(format!("{}{}", self.root.url(), path)))
    }

    /// Registers the lake tables in `ctx`: `weekly_sales_inventory`, and for
    /// each dimension `<dim>_snapshots` (every snapshot, with
    /// `snapshot_date`) and `<dim>` (the latest snapshot, contract columns).
    /// Returns the versions registered, in the order of [`Lake::versions`].
    pub async fn register(&self, ctx: &SessionContext) -> Result<Vec<Option<u64>>, LakeError> {
        self.root.verify().await?;
        let fact = self.register_table(ctx, FACT_TABLE, FACT_TABLE).await?;
        let mut versions = Vec::new();
        for table in Table::DIMENSIONS {
            let snapshots = table.snapshots_name();
            versions.push(Some(
                self.register_table(ctx, table.name(), &snapshots).await?,
            ));
            let latest = table.latest_snapshot_sql(&snapshots);
            let engine_error = |source| LakeError::Engine {
                table: table.name().to_string(),
                source,
            };
            let view = ctx.sql(&latest).await.map_err(engine_error)?.into_view();
            ctx.register_table(table.name(), Arc::new(LatestSnapshot(view)))
                .map_err(engine_error)?;
        }
        versions.push(Some(fact));
        Ok(versions)
    }

    /// Registers table `name` as `as_name`; returns its version.
    async fn register_table(
        &self,
        ctx: &SessionContext,
        name: &str,
        as_name: &str,
    ) -> Result<u64, LakeError> {
        let table = self.open(name).await?.ok_or_else(|| LakeError::NotFound {
            table: name.to_string(),
            url: self
                .table_url(name)
                .map_or_else(|_| name.to_string(), |u| u.to_string()),
        })?;
        let version = table.version().unwrap_or_default();
        let provider = self.provider(ctx, table, name).await?;
        ctx.register_table(as_name, provider)
            .map_err(|source| LakeError::Engine {
                table: name.to_string(),
                source,
            })?;
        Ok(version)
    }

    /// The table as a DataFusion table provider of `ctx`.
    async fn provider(
        &self,
        ctx: &SessionContext,
        table: DeltaTable,
        name: &str,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>, LakeError> {
        let url = self.table_url(name)?;
        table
            .update_datafusion_session(&ctx.state())
            .map_err(LakeError::delta(name, &url))?;
        table
            .table_provider()
            .await
            .map_err(|source| LakeError::Engine {
                table: name.to_string(),
                source,
            })
    }
}

/// Whether a Delta commit failed because another writer's commit landed
/// after this one read the table.
fn is_commit_conflict(error: &DeltaTableError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<CommitConflictError>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A vacuum clock stopped at one time: the creation of this run's lock.
#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }
}

/// Makes delta-rs commit to `s3://` tables with its default log store: a
/// commit is a put-if-absent of the next log entry, which the S3 store
/// sends as `If-None-Match: *` (see [`crate::storage`]).
fn register_s3_log_store() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let scheme = Url::parse("s3://").expect("a constant URL parses");
        deltalake::logstore::logstore_factories().insert(scheme, Arc::new(PutIfAbsentLogStore));
    });
}

/// delta-rs's default log store, for a scheme it has no factory for.
struct PutIfAbsentLogStore;

impl LogStoreFactory for PutIfAbsentLogStore {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// The version a log file commits: `00000000000000000012.json` is 12.
fn commit_version(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".json")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::commit_version;

    #[test]
    fn only_commit_files_name_a_version() {
        assert_eq!(commit_version("00000000000000000012.json"), Some(12));
        assert_eq!(commit_version("00000000000000000000.json"), Some(0));
        for other in [
            "00000000000000000010.checkpoint.parquet",
            "_last_checkpoint",
            "_commit_8f1c.json.tmp",
            "0000000000000000001.json",
            "0000000000000000001x.json",
        ] {
            assert_eq!(commit_version(other), None, "{other}");
        }
    }
}
