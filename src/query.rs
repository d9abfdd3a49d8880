//! SQL over the lake: the fact table and the latest snapshot of each
//! dimension, registered by name (`weekly_sales_inventory`, `store`,
//! `product`, `calendar`), printed as a table, CSV or JSON.
//!
//! Two promises hold for every statement:
//!
//! - **Read-only.** Only queries run: DDL (`CREATE`, `DROP`), DML
//!   (`INSERT`, `INSERT OVERWRITE`, `DELETE`, `UPDATE`), `COPY ... TO` and
//!   other statements (`SET`, transactions) are refused before anything
//!   runs, so no statement writes a file, in the lake or anywhere else. The
//!   lake changes only through a publication (`transform`, `run`, `serve`),
//!   which holds the writer lock and the quality gate; there is no opt-in.
//! - **Consistent during a publication.** A statement reads the tables'
//!   latest committed versions. When it fails while a publication changed
//!   the lake (its vacuum removed a file of the versions the statement was
//!   reading), the statement runs again on the new versions (it has no
//!   side effects and nothing was printed yet), up to [`ATTEMPTS`] times, so
//!   a reader sees the table as it was or as the run left it, and never an
//!   error about a vanished file.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use crate::config::Config;
use crate::lake::{Lake, LakeError};

/// Runs of a statement during which publications changed the lake.
const ATTEMPTS: usize = 10;

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
    #[error(
        "the lake is read-only here: {reason}; only queries run (SELECT, WITH, EXPLAIN, SHOW). The lake changes only through `shelfline transform` or `shelfline run`"
    )]
    ReadOnly { reason: String },
    #[error("{0}")]
    Sql(#[from] DataFusionError),
    #[error("{message}; the lake has {tables} (`SHOW TABLES` lists them)")]
    NoSuchTable { message: String, tables: String },
    #[error("cannot format the result: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// Runs `sql` over the lake and returns the result batches (at least one,
/// so that an empty result still has its columns); see the module
/// documentation for what is refused and what is run again. `SHOW TABLES`
/// and `SHOW COLUMNS FROM t` list what there is.
pub async fn run(lake: &Lake, config: &Config, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let mut attempt = 1;
    loop {
        let (ctx, registered) = lake_session(lake, config).await?;
        let frame = read_only(&ctx, sql)
            .await
            .map_err(|e| name_the_tables(e, &ctx))?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        match frame.collect().await {
            Ok(batches) if batches.is_empty() => return Ok(vec![RecordBatch::new_empty(schema)]),
            Err(error) if attempt < ATTEMPTS && lake.versions().await? != registered => {
                tracing::info!(
                    attempt,
                    "a publication changed the lake while this query read it ({error}); running it again on the new version"
                );
                attempt += 1;
            }
            result => return Ok(result?),
        }
    }
}

/// A session over the lake's latest versions (with `information_schema`),
/// and those versions, in the order of [`Lake::versions`].
pub async fn lake_session(
    lake: &Lake,
    config: &Config,
) -> Result<(SessionContext, Vec<Option<u64>>), QueryError> {
    let ctx = crate::engine::session(config)?;
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .catalog
        .information_schema = true;
    let registered = lake.register(&ctx).await?;
    Ok((ctx, registered))
}

/// A statement naming a table the lake does not have gets the list of
/// those it has.
pub fn name_the_tables(error: QueryError, ctx: &SessionContext) -> QueryError {
    match error {
        QueryError::Sql(e) if e.find_root().to_string().contains("not found") => {
            let options = ctx.state().config().options().catalog.clone();
            let mut tables = ctx
                .catalog(&options.default_catalog)
                .and_then(|catalog| catalog.schema(&options.default_schema))
                .map(|schema| schema.table_names())
                .unwrap_or_default();
            tables.sort();
            QueryError::NoSuchTable {
                message: e.find_root().to_string(),
                tables: tables.join(", "),
            }
        }
        other => other,
    }
}

/// Plans `sql` and refuses it unless it only reads (nothing runs before
/// the check: planning a `CREATE` or an `INSERT` has no effect).
pub async fn read_only(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    check_read_only(&plan)?;
    Ok(ctx.execute_logical_plan(plan).await?)
}

/// Refuses a plan that would do anything but read: DDL, DML (`COPY ... TO`
/// included) and statements (`SET`, transactions), wherever they sit in it
/// (`EXPLAIN ANALYZE INSERT ...` too). The SQL server applies the same rule.
pub fn check_read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    let queries_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    queries_only.verify_plan(plan).map_err(|refused| {
        let reason = match refused.find_root() {
            DataFusionError::Plan(message) => message.clone(),
            other => other.to_string(),
        };
        QueryError::ReadOnly {
            reason: reason.replace("not supported", "refused"),
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(sql: &str) -> String {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS VALUES (1)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        match read_only(&ctx, sql).await {
            Err(QueryError::ReadOnly { reason }) => reason,
            Err(other) => panic!("{sql}: not refused as a write: {other}"),
            Ok(_) => panic!("{sql}: accepted"),
        }
    }

    #[tokio::test]
    async fn writes_ddl_copy_and_statements_are_refused_before_they_run() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        for sql in [
            "INSERT INTO t VALUES (2)".to_string(),
            "INSERT OVERWRITE t SELECT * FROM t WHERE false".to_string(),
            "DELETE FROM t".to_string(),
            "DROP TABLE t".to_string(),
            "CREATE TABLE u AS SELECT 1".to_string(),
            format!(
                "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{}'",
                dir.path().display()
            ),
            format!("COPY (SELECT 1) TO '{}'", target.display()),
            format!("EXPLAIN ANALYZE COPY t TO '{}'", target.display()),
            "SET datafusion.execution.batch_size = 1".to_string(),
        ] {
            let reason = refused(&sql).await;
            assert!(reason.contains("refused"), "{sql}: {reason}");
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn queries_run() {
        let ctx = SessionContext::new();
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 2 AS x) SELECT x FROM a",
            "EXPLAIN SELECT 1",
        ] {
            read_only(&ctx, sql).await.unwrap().collect().await.unwrap();
        }
    }
}
