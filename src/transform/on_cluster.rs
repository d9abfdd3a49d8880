//! Step 2 on a Ballista cluster: the executors read the raw files, check
//! every value and compute the weekly fact with the same SQL file as the
//! local engine; the client streams the result into a staged Arrow file
//! and commits it.
//!
//! Why the result comes back to the client instead of executors writing
//! Parquet files that the client commits: the fact is a small fraction of
//! the input (one row per store, product and week instead of one per sale
//! and snapshot: 1.06 million rows, 38 MiB of Arrow, for 18.6 million
//! input rows at SF 1; `bench/CLUSTER.md`), so streaming it over Arrow
//! Flight costs little next to the job, and the client is then the only
//! writer of the lake: no executor needs the lake's credentials, and the
//! commit is the local engine's, atomic in the same way. The client writes
//! the result batch by batch into its scratch folder, so its memory does
//! not grow with the fact. The raw files are read twice on the cluster:
//! once to check them and gather their facts
//! ([`stock_tables::gather_facts`]), once for the fact itself, since a
//! stock executor has no side channel to send the facts back from the
//! fact's own scan.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tokio::sync::mpsc;

use super::{
    Staged, TransformError, WEEKLY_SQL, quality, register_staged, staged_folder, stock_tables,
};
use crate::config::Config;
use crate::raw::quarantine::Quarantine;
use crate::raw::{self, RawSet};
use crate::schema::{self, Table};

/// Computes the weekly fact of `set` on the cluster `config` names.
pub(super) async fn compute(config: &Config, set: RawSet) -> Result<Staged, TransformError> {
    if config.error_budget > 0 {
        return Err(TransformError::BudgetOnCluster(config.error_budget));
    }
    let cluster = crate::engine::cluster_session(config, &set.root).await?;
    stock_tables::register(&cluster, &set).await?;
    let started = Instant::now();
    let (facts, _) = futures::try_join!(stock_tables::gather_facts(&cluster, &set), async {
        raw::verify_set(&set, config.max_row_bytes)
            .await
            .map_err(TransformError::from)
    })?;
    for table in Table::ALL {
        if let Some(entry) = set.manifest_entry(table) {
            entry.check_rows(quality::facts_of(&facts, table)?.rows)?;
        }
    }
    let scanned = started.elapsed();
    let ctx = crate::engine::session(config)?;
    let scratch =
        super::scratch::Scratch::create(&config.scratch_dir).map_err(TransformError::Scratch)?;
    let fetch = stage_weekly(&cluster, &ctx, scratch.path()).await?;
    for table in Table::DIMENSIONS {
        let rows = cluster.table(table.name()).await?.collect().await?;
        ctx.register_table(table.name(), memory_table(table.arrow_schema(), rows)?)?;
    }
    Ok(Staged {
        date: set.date,
        ctx,
        inputs: cluster,
        facts,
        set,
        quarantine: Arc::new(Quarantine::new(0)),
        window: None,
        _scratch: scratch,
        timings: vec![
            ("scan", scanned),
            ("compute", started.elapsed() - scanned - fetch),
            ("fetch", fetch),
        ],
    })
}

/// Runs the metric SQL on the cluster and streams its result into an
/// Arrow file in `dir`, registered in `ctx` as `staged_weekly`. Returns
/// how long the result took to come, from its first batch (the job has
/// ended by then) to its last.
async fn stage_weekly(
    cluster: &SessionContext,
    ctx: &SessionContext,
    dir: &Path,
) -> Result<Duration, TransformError> {
    let staged = staged_folder(dir)?;
    let file = staged.join("part-0.arrow");
    let schema = schema::fact_schema();
    let (batches, received) = mpsc::channel(4);
    let writer = {
        let schema = Arc::clone(&schema);
        tokio::task::spawn_blocking(move || write_arrow_file(&file, &schema, received))
    };
    let mut results = cluster.sql(WEEKLY_SQL).await?.execute_stream().await?;
    let mut first_batch = None;
    while let Some(batch) = results.try_next().await? {
        first_batch.get_or_insert_with(Instant::now);
        if batches.send(with_schema(&schema, batch)?).await.is_err() {
            // The writer failed; its error follows.
            break;
        }
    }
    drop(batches);
    writer
        .await
        .map_err(|e| TransformError::Engine(DataFusionError::External(Box::new(e))))??;
    register_staged(ctx, &staged).await?;
    Ok(first_batch.map(|at| at.elapsed()).unwrap_or_default())
}

/// Writes the batches received into an Arrow file at `path`.
fn write_arrow_file(
    path: &Path,
    schema: &SchemaRef,
    mut batches: mpsc::Receiver<RecordBatch>,
) -> Result<(), TransformError> {
    let file = std::fs::File::create(path).map_err(TransformError::Scratch)?;
    let arrow_error = |e: datafusion::arrow::error::ArrowError| TransformError::Engine(e.into());
    let mut writer = FileWriter::try_new_buffered(file, schema).map_err(arrow_error)?;
    while let Some(batch) = batches.blocking_recv() {
        writer.write(&batch).map_err(arrow_error)?;
    }
    writer.finish().map_err(arrow_error)
}

/// `batch` with the contract's `schema` (the engine may have marked columns
/// that hold no NULL as non-nullable).
fn with_schema(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, TransformError> {
    RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
        .map_err(|e| TransformError::Engine(e.into()))
}

/// `batches` as an in-memory table of `schema`.
fn memory_table(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Arc<MemTable>, TransformError> {
    let batches = batches
        .into_iter()
        .map(|batch| with_schema(&schema, batch))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
