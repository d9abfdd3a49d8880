//! The stages strung together: a [`Pipeline`] is a validated plan built from
//! a [`Config`] (every location parsed, every problem reported at once), with
//! one method per command.

use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::catalog::glue::{Glue, SyncReport};
use crate::catalog::{self, CatalogError};
use crate::config::Config;
use crate::datagen::{self, DatagenSpec, DatagenSummary};
use crate::extract::{self, ExtractError, ExtractReport};
use crate::lake::Lake;
use crate::raw::{self, CheckReport, RawError, RawFormat};
use crate::source::{Source, SourceError};
use crate::storage::{Location, StorageError};
use crate::transform::{self, TransformError, TransformReport};

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
}

/// The stages, ready to run against the configured locations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub config: Config,
    pub source: Source,
    pub raw: Location,
    pub lake: Lake,
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
    /// generated data. `on_day` reports progress (days done).
    pub fn datagen(
        &self,
        spec: &DatagenSpec,
        on_day: impl FnMut(u32),
    ) -> Result<DatagenSummary, PipelineError> {
        self.source.create_tables()?;
        let mut loader = self.source.loader()?;
        let summary = datagen::generate(spec, |table, batch| loader.insert(table, &batch), on_day)?;
        loader.commit()?;
        Ok(summary)
    }

    /// Extracts the source into the raw zone for `date`.
    pub async fn extract(
        &self,
        date: NaiveDate,
        format: RawFormat,
    ) -> Result<ExtractReport, PipelineError> {
        self.raw.verify().await?;
        let retry = self.source_retry();
        Ok(extract::extract(&self.source, &self.raw, date, format, retry).await?)
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
        self.raw.verify().await?;
        self.lake.root().verify().await?;
        let run = format!("shelfline transform (pid {})", std::process::id());
        let report = transform::transform(&self.config, &self.raw, &self.lake, date, &run).await?;
        self.register_catalog().await;
        Ok(report)
    }

    /// Registers the lake in the Glue database that `[catalog]
    /// glue_database` names, if any, after a publication: `None` when none
    /// is named. A failure is logged as a warning and returned; the
    /// publication stands, and the next one registers again.
    pub async fn register_catalog(&self) -> Option<Result<SyncReport, CatalogError>> {
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
