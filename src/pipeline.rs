//! The stages strung together: a [`Pipeline`] is a validated plan built from
//! a [`Config`] (every location parsed, every problem reported at once), with
//! one method per command.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::catalog::glue::{Glue, SyncReport};
use crate::catalog::{self, CatalogError};
use crate::config::Config;
use crate::datagen::{self, DatagenSpec, DatagenSummary};
use crate::extract::{self, ExtractError, ExtractReport, ExtractedTable, Extraction};
use crate::lake::{Lake, LakeError, PublishOptions};
use crate::raw::{self, CheckReport, ManifestEntry, NamedFiles, RawError, RawFormat};
use crate::reconcile::{self, Comparison, ReconcileError};
use crate::schema::{FACT_TABLE, Table};
use crate::source::{Source, SourceError};
use crate::storage::{Location, StorageError};
use crate::transform::{self, Checked, Staged, TransformError, TransformReport};
use crate::window::{Calendar, DateRange, Week};

/// A pipeline failure, by stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config { problems: Vec<String> },
    #[error("datagen: {0}")]
    Datagen(#[from] SourceError),
    #[error("extract: {0}")]
    Extract(#[from] ExtractError),
    #[error("check: {0}")]
    Check(#[from] RawError),
    #[error("transform: {0}")]
    Transform(#[from] TransformError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("reconcile: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    #[error(
        "reconcile: the lake has no fact table published by a night yet (none, or none that records its logical date); run a night first"
    )]
    NothingPublished,
}

/// The outcome of registering the lake in Glue after a publication.
pub type Registration = Result<SyncReport, CatalogError>;

/// The stages, ready to run against the configured locations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub config: Config,
    pub source: Source,
    pub raw: Location,
    pub lake: Lake,
}

/// What `reconcile` found, and what its repair published.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    /// The weeks compared and those that drifted.
    pub comparison: Comparison,
    /// What `--repair` published; `None` without it or without a drift.
    pub repaired: Option<TransformReport>,
}

/// What `run` did, stage by stage.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub extract: ExtractReport,
    pub check: CheckReport,
    pub check_elapsed: Duration,
    pub transform: TransformReport,
}

impl Pipeline {
    /// Parses every location of `config`; fails listing every bad one.
    pub fn new(config: Config) -> Result<Pipeline, PipelineError> {
        let mut problems = config.problems();
        let source = Source::from_url(&config.source, config.password_file.as_deref())
            .map_err(|e| problems.push(format!("source: {e}")))
            .ok();
        let raw = Location::parse(&config.raw, &config.s3)
            .map_err(|e| problems.push(format!("raw: {e}")))
            .ok();
        let lake = Location::parse(&config.lake, &config.s3)
            .map_err(|e| problems.push(format!("lake: {e}")))
            .ok();
        match (source, raw, lake) {
            (Some(source), Some(raw), Some(lake)) if problems.is_empty() => Ok(Pipeline {
                config,
                source,
                raw,
                lake: Lake::new(lake),
            }),
            _ => Err(PipelineError::Config { problems }),
        }
    }

    /// Creates the contract tables in the source and fills them with
    /// generated data, then indexes the facts' business dates. `on_day`
    /// reports progress (days done).
    pub fn datagen(
        &self,
        spec: &DatagenSpec,
        on_day: impl FnMut(u32),
    ) -> Result<DatagenSummary, PipelineError> {
        self.source.create_tables()?;
        let mut loader = self.source.loader()?;
        let summary = datagen::generate(spec, |table, batch| loader.insert(table, &batch), on_day)?;
        loader.commit()?;
        self.source.create_date_indexes()?;
        Ok(summary)
    }

    /// Extracts the source into the raw zone for `date`: the facts of the
    /// window `lookback_days` gives (see [`Pipeline::extraction`]).
    pub async fn extract(
        &self,
        date: NaiveDate,
        format: RawFormat,
    ) -> Result<ExtractReport, PipelineError> {
        self.raw.verify().await?;
        let extraction = self
            .extraction(date, format, self.config.lookback_days)
            .await?;
        Ok(extract::extract(&self.source, &self.raw, &extraction).await?)
    }

    /// Extracts one table for `date` (the orchestrator's per-table task):
    /// a fact table's rows of `window` when given (the one its sibling was
    /// extracted with), else of the window `lookback_days` gives.
    pub async fn extract_table(
        &self,
        table: Table,
        date: NaiveDate,
        lookback_days: Option<u32>,
        window: Option<DateRange>,
    ) -> Result<ExtractedTable, PipelineError> {
        self.raw.verify().await?;
        extract::check_source(&self.source).await?;
        let format = self.config.raw_format;
        let extraction = match (window, table.window_column()) {
            (_, None) => self.full_extraction(date, format),
            (Some(window), Some(_)) => Extraction {
                dates: Some(vec![window]),
                ..self.full_extraction(date, format)
            },
            (None, Some(_)) => self.extraction(date, format, lookback_days).await?,
        };
        Ok(extract::extract_table(&self.source, &self.raw, table, &extraction).await?)
    }

    /// How the tables of `date` are read: whole, or with `lookback_days`
    /// the facts of the window [`extract::fact_window`] gives, which reaches
    /// back further when the lake's last night is more than a day behind.
    /// While the lake has no fact table published by a night, whole (with
    /// a warning naming the lake): a window would publish only its weeks.
    pub async fn extraction(
        &self,
        date: NaiveDate,
        format: RawFormat,
        lookback_days: Option<u32>,
    ) -> Result<Extraction, PipelineError> {
        let Some(days) = lookback_days else {
            return Ok(self.full_extraction(date, format));
        };
        let Some(published) = self.lake.logical_date(FACT_TABLE).await? else {
            tracing::warn!(
                "the lake at {} has no {FACT_TABLE} published by a night yet: extracting full snapshots of the facts this once, windows from the next night on",
                self.lake.root()
            );
            return Ok(self.full_extraction(date, format));
        };
        let window = extract::fact_window(&self.source, date, days, published).await?;
        Ok(Extraction {
            dates: Some(vec![window]),
            ..self.full_extraction(date, format)
        })
    }

    /// Every row of every table, for `date`.
    fn full_extraction(&self, date: NaiveDate, format: RawFormat) -> Extraction {
        Extraction {
            date,
            format,
            retry: self.source_retry(),
            dates: None,
        }
    }

    /// Writes the manifest of `date` listing `entries`, once every table's
    /// file is in place.
    pub async fn write_manifest(
        &self,
        date: NaiveDate,
        entries: Vec<(Table, ManifestEntry)>,
    ) -> Result<(), PipelineError> {
        self.raw.verify().await?;
        Ok(extract::write_manifest(&self.raw, date, entries).await?)
    }

    /// How a table is read again when its source connection drops.
    pub fn source_retry(&self) -> extract::Retry {
        extract::Retry {
            attempts: self.config.source_attempts.max(1),
            backoff: Duration::from_millis(self.config.source_retry_backoff_ms),
        }
    }

    /// Checks that the raw set of `date` is complete and matches its manifest.
    pub async fn check(&self, date: NaiveDate) -> Result<CheckReport, PipelineError> {
        self.raw.verify().await?;
        let named = raw::NamedFiles::default();
        Ok(raw::check(&self.raw, date, &named, self.config.max_row_bytes).await?)
    }

    /// Transforms the raw set of `date` and publishes the lake tables.
    pub async fn transform(&self, date: NaiveDate) -> Result<TransformReport, PipelineError> {
        self.lake.root().verify().await?;
        let run = format!("shelfline transform (pid {})", std::process::id());
        let checked = self
            .compute(&self.raw, date, &NamedFiles::default(), None)
            .await?
            .check()
            .await?;
        let options = PublishOptions::from_config(&self.config);
        Ok(self.publish(&checked, &options, &run).await?.0)
    }

    /// Computes the weekly fact of `date` from the raw set in `raw` (the
    /// `named` files in place of the layout's; the date ranges `window`
    /// in place of the manifest's), not yet checked.
    pub async fn compute(
        &self,
        raw: &Location,
        date: NaiveDate,
        named: &NamedFiles,
        window: Option<Vec<DateRange>>,
    ) -> Result<Staged, PipelineError> {
        raw.verify().await?;
        Ok(transform::compute(&self.config, raw, date, named, window).await?)
    }

    /// Publishes a checked fact (and its dimension snapshots) in the lake,
    /// recording `run`, then registers the lake in Glue when configured
    /// (with the registration's outcome, see [`Pipeline::register_catalog`]).
    pub async fn publish(
        &self,
        checked: &Checked,
        options: &PublishOptions,
        run: &str,
    ) -> Result<(TransformReport, Option<Registration>), PipelineError> {
        self.lake.root().verify().await?;
        let report = checked.publish(&self.lake, options, run).await?;
        Ok((report, self.register_catalog().await))
    }

    /// Registers the lake in the Glue database that `[catalog]
    /// glue_database` names, if any, after a publication: `None` when none
    /// is named. A failure is logged as a warning and returned; the
    /// publication stands, and the next one registers again.
    pub async fn register_catalog(&self) -> Option<Registration> {
        let database = self.config.catalog.glue_database.as_deref()?;
        let lake = self.lake.root().url();
        let result = match Glue::connect(&self.config).await {
            Ok(glue) => catalog::glue::sync(&glue, lake, database).await,
            Err(e) => Err(e.into()),
        };
        match &result {
            Ok(report) => tracing::info!("registered in Glue: {}", report.to_string().trim_end()),
            Err(e) => tracing::warn!(
                "the lake is published, but registering it in Glue failed: {e}; the next publication registers again, or run `shelfline catalog sync`"
            ),
        }
        Some(result)
    }

    /// Compares the source and the lake week by week over the calendar
    /// weeks touching `range`; with `repair`, re-extracts exactly the weeks
    /// that drifted and republishes them in one commit (see
    /// [`Pipeline::repair`]).
    pub async fn reconcile(
        &self,
        range: DateRange,
        repair: bool,
    ) -> Result<ReconcileReport, PipelineError> {
        self.lake.root().verify().await?;
        let published = self
            .lake
            .logical_date(FACT_TABLE)
            .await?
            .ok_or(PipelineError::NothingPublished)?;
        let calendar = extract::source_calendar(&self.source).await?;
        let (source, lake, config) = (&self.source, &self.lake, &self.config);
        let comparison =
            reconcile::compare(source, &calendar, lake, config, range, published).await?;
        let weeks: BTreeSet<Week> = comparison.drifted.iter().map(|d| d.week).collect();
        let repaired = match repair && !weeks.is_empty() {
            true => Some(self.repair(&calendar, &weeks, published).await?),
            false => None,
        };
        Ok(ReconcileReport {
            comparison,
            repaired,
        })
    }

    /// Republishes `weeks` of the fact table from the source, up to the
    /// lake's logical date `date`: their rows are extracted into a scratch
    /// raw zone (never the real one, whose sets belong to their nights),
    /// computed and checked as any night's, and published in one commit
    /// that replaces exactly those weeks (and any week sharing days with
    /// them in a calendar whose weeks are not contiguous), under `date`;
    /// the dimensions are left as they are.
    async fn repair(
        &self,
        calendar: &Calendar,
        weeks: &BTreeSet<Week>,
        date: NaiveDate,
    ) -> Result<TransformReport, PipelineError> {
        let ranges = calendar.ranges_of(weeks, date);
        let scratch = transform::scratch::Scratch::create(&self.config.scratch_dir)
            .map_err(TransformError::Scratch)?;
        let raw = Location::parse(&scratch.path().display().to_string(), &self.config.s3)?;
        let extraction = Extraction {
            date,
            format: RawFormat::Parquet,
            retry: self.source_retry(),
            dates: Some(ranges.clone()),
        };
        extract::check_source(&self.source).await?;
        for table in Table::ALL {
            extract::extract_table(&self.source, &raw, table, &extraction).await?;
        }
        let checked = self
            .compute(&raw, date, &NamedFiles::default(), Some(ranges))
            .await?
            .check()
            .await?
            .fact_only();
        let run = format!("shelfline reconcile --repair (pid {})", std::process::id());
        let options = PublishOptions::from_config(&self.config);
        Ok(self.publish(&checked, &options, &run).await?.0)
    }

    /// Extract, check, transform.
    pub async fn run(&self, date: NaiveDate) -> Result<RunReport, PipelineError> {
        let extract = self.extract(date, self.config.raw_format).await?;
        let started = Instant::now();
        let check = self.check(date).await?;
        let check_elapsed = started.elapsed();
        let transform = self.transform(date).await?;
        Ok(RunReport {
            extract,
            check,
            check_elapsed,
            transform,
        })
    }
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let comparison = &self.comparison;
        writeln!(
            f,
            "reconcile  {} weeks compared (those that end by the lake's last night, {}), {} drifted",
            comparison.weeks.len(),
            comparison.published,
            comparison.drifted.len()
        )?;
        for drift in &comparison.drifted {
            writeln!(f, "           {drift}")?;
        }
        if let Some(repaired) = &self.repaired {
            let weeks = comparison.drifted.len();
            let plural = if weeks == 1 { "" } else { "s" };
            writeln!(
                f,
                "repaired   {weeks} week{plural}, republished in one commit"
            )?;
            write!(f, "{repaired}")?;
        }
        Ok(())
    }
}
