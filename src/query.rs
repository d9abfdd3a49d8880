//! SQL over the lake: the fact table and the latest snapshot of each
//! dimension, registered by name (`weekly_sales_inventory`, `store`,
//! `product`, `calendar`), printed as a table, CSV or JSON.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;

use crate::config::Config;
use crate::lake::{Lake, LakeError};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// A header row and data rows, nothing else.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// A query that could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{0}")]
    Sql(#[from] DataFusionError),
    #[error("cannot format the result: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// Runs `sql` over the lake and returns the result batches.
pub async fn run(lake: &Lake, config: &Config, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = crate::engine::session(config)?;
    lake.register(&ctx).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Formats result batches for printing.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    match format {
        OutputFormat::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
        }
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            for batch in batches {
                writer.write(batch)?;
            }
            Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
        }
        OutputFormat::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            let mut text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
            if text.is_empty() {
                text.push_str("[]");
            }
            text.push('\n');
            Ok(text)
        }
    }
}
