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
//! all of them only after every check passed. Files a commit removed are then
//! vacuumed (after `vacuum_retention_hours`, default at once), so that a
//! plain Hive-Parquet reader of the folder sees exactly the committed rows.
//!
//! A publication holds the lake's writer lock ([`lock`]) from its first
//! write to its last vacuum, so a second run waits, and vacuum may delete
//! the files of a run that was killed mid-write. On S3 a commit is a
//! put-if-absent of the next log entry (delta-rs's default log store with
//! `If-None-Match: *`); no lock table is needed.

mod lock;

use object_store::ObjectStoreExt as _;
use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::config::Config;
use crate::raw::csv::days_since_epoch;
use crate::raw::quarantine::Quarantine;
use crate::schema::{FACT_PARTITIONS, FACT_TABLE, SNAPSHOT_COLUMN, Table};
use crate::storage::{Location, StorageError};
pub use lock::LockError;

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
}

/// Everything one run publishes.
pub struct Publication<'a> {
    pub date: NaiveDate,
    pub fact: DataFrame,
    pub fact_scope: FactScope,
    pub dimensions: Vec<(Table, DataFrame)>,
    pub quarantine: &'a Quarantine,
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

    /// Opens a table; a table that does not exist yet opens empty (version
    /// `None`), ready to be created by a write.
    async fn open(&self, name: &str) -> Result<DeltaTable, LakeError> {
        let location = self.root.child(name)?;
        if let Some(dir) = location.local_dir() {
            // delta-rs wants an existing folder, even for a table to create.
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let url = location.url().clone();
        let delta_error = LakeError::delta(name, &url);
        let mut builder = DeltaTableBuilder::from_url(url.clone()).map_err(&delta_error)?;
        if let Some((store, base)) = location.base() {
            // The bucket's store as configured (endpoint, credentials,
            // retries, conditional put), or the process-wide in-memory one.
            register_s3_log_store();
            builder = builder.with_storage_backend(Arc::clone(store), base.clone());
        }
        let mut table = builder.build().map_err(&delta_error)?;
        if !self.has_log(&location).await? {
            return Ok(table);
        }
        match table.load().await {
            Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
            Err(source) => Err(delta_error(source)),
        }
    }

    /// Whether a table folder holds a Delta log (opening a folder without one
    /// is not an error: the first write creates the table).
    async fn has_log(&self, location: &Location) -> Result<bool, LakeError> {
        let log = crate::storage::path(&["_delta_log"]);
        let listing = location.store().list_with_delimiter(Some(&log)).await;
        match listing {
            Ok(listing) => Ok(!listing.objects.is_empty()),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(LakeError::Storage(StorageError::Invalid {
                url: location.url().to_string(),
                reason: e.to_string(),
            })),
        }
    }

    /// The current version of a table, `None` when it does not exist.
    pub async fn version(&self, name: &str) -> Result<Option<u64>, LakeError> {
        Ok(self.open(name).await?.version())
    }

    /// Commits the dimension snapshots of the run's date, then the fact
    /// table, then vacuums and writes the quarantine file (if rows were set
    /// aside), all under the lake's writer lock.
    pub async fn publish(
        &self,
        publication: Publication<'_>,
        config: &Config,
    ) -> Result<PublishReport, LakeError> {
        let wait = Duration::from_secs(config.lake_lock_wait_secs);
        let lock = lock::WriterLock::acquire(&self.root, wait).await?;
        let result = self.publish_locked(publication, config).await;
        lock.release().await;
        result
    }

    async fn publish_locked(
        &self,
        publication: Publication<'_>,
        config: &Config,
    ) -> Result<PublishReport, LakeError> {
        let Publication {
            date,
            fact,
            fact_scope,
            dimensions,
            quarantine,
        } = publication;
        let mut report = PublishReport::default();
        let snapshot = ScalarValue::Date32(Some(days_since_epoch(date)));
        for (table, frame) in dimensions {
            let frame = frame
                .with_column(SNAPSHOT_COLUMN, lit(snapshot.clone()))
                .map_err(|source| LakeError::Engine {
                    table: table.name().to_string(),
                    source,
                })?;
            let replace = col(SNAPSHOT_COLUMN).eq(lit(snapshot.clone()));
            let version = self
                .write(table.name(), frame, &[SNAPSHOT_COLUMN], Some(replace))
                .await?;
            report.versions.push((table.name().to_string(), version));
        }
        if fact_scope != FactScope::Weeks(Vec::new()) {
            let replace = fact_scope.predicate();
            let version = self
                .write(FACT_TABLE, fact, &FACT_PARTITIONS, replace)
                .await?;
            report.versions.push((FACT_TABLE.to_string(), version));
        }
        for name in Table::DIMENSIONS
            .iter()
            .map(|t| t.name())
            .chain([FACT_TABLE])
        {
            report.files_vacuumed += self.vacuum(name, config.vacuum_retention_hours).await?;
        }
        report.quarantine_file = self.write_quarantine(date, quarantine).await?;
        Ok(report)
    }

    /// Writes `frame` into table `name` in one commit: all rows replaced, or
    /// only those matching `replace_where`. Returns the new version.
    async fn write(
        &self,
        name: &str,
        frame: DataFrame,
        partitions: &[&str],
        replace_where: Option<datafusion::prelude::Expr>,
    ) -> Result<u64, LakeError> {
        let table = self.open(name).await?;
        let url = self.table_url(name)?;
        let (state, plan) = frame.into_parts();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut builder = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(Arc::new(state))
            .with_save_mode(SaveMode::Overwrite)
            .with_partition_columns(partitions.iter().copied())
            .with_writer_properties(properties)
            .with_table_name(name);
        if let Some(predicate) = replace_where {
            builder = builder.with_replace_where(predicate);
        }
        tracing::info!(table = name, "committing");
        let table = builder.await.map_err(LakeError::delta(name, &url))?;
        let version = table.version().unwrap_or_default();
        tracing::info!(table = name, version, "committed");
        Ok(version)
    }

    /// Deletes data files that commits removed more than `retention_hours` ago
    /// and files no commit references. Returns the number deleted.
    async fn vacuum(&self, name: &str, retention_hours: u64) -> Result<usize, LakeError> {
        let table = self.open(name).await?;
        let url = self.table_url(name)?;
        let retention = chrono::Duration::hours(retention_hours.try_into().unwrap_or(i64::MAX));
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await
            .map_err(LakeError::delta(name, &url))?;
        let files = metrics.files_deleted.len();
        tracing::info!(table = name, files, "vacuumed");
        Ok(files)
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
    pub async fn register(&self, ctx: &SessionContext) -> Result<(), LakeError> {
        self.root.verify().await?;
        self.register_table(ctx, FACT_TABLE, FACT_TABLE).await?;
        for table in Table::DIMENSIONS {
            let snapshots = format!("{}_snapshots", table.name());
            self.register_table(ctx, table.name(), &snapshots).await?;
            let columns: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
            let latest = format!(
                "SELECT {columns} FROM {snapshots} \
                 WHERE {SNAPSHOT_COLUMN} = (SELECT max({SNAPSHOT_COLUMN}) FROM {snapshots})",
                columns = columns.join(", ")
            );
            let engine_error = |source| LakeError::Engine {
                table: table.name().to_string(),
                source,
            };
            let view = ctx.sql(&latest).await.map_err(engine_error)?.into_view();
            ctx.register_table(table.name(), view)
                .map_err(engine_error)?;
        }
        Ok(())
    }

    async fn register_table(
        &self,
        ctx: &SessionContext,
        name: &str,
        as_name: &str,
    ) -> Result<(), LakeError> {
        let table = self.open(name).await?;
        let url = self.table_url(name)?;
        if table.version().is_none() {
            return Err(LakeError::NotFound {
                table: name.to_string(),
                url: url.to_string(),
            });
        }
        table
            .update_datafusion_session(&ctx.state())
            .map_err(LakeError::delta(name, &url))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|source| LakeError::Engine {
                table: name.to_string(),
                source,
            })?;
        ctx.register_table(as_name, provider)
            .map_err(|source| LakeError::Engine {
                table: name.to_string(),
                source,
            })?;
        Ok(())
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
