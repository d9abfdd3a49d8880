//! Step 2 on a Ballista cluster: the executors read the raw files, check
//! every value and compute the weekly fact with the same SQL file as the
//! local engine; the client gets the result back and commits it.
//!
//! Why the result comes back to the client instead of executors writing
//! Parquet files that the client commits: the fact is a small fraction of
//! the input (one row per store, product and week instead of one per sale
//! and snapshot), so streaming it over Arrow Flight costs little, and the
//! client is then the only writer of the lake: no executor needs the
//! lake's credentials, and the commit is the local engine's, atomic in
//! the same way. The raw files are read twice on the cluster: once to check
//! them and gather their facts ([`stock_tables::gather_facts`]), once for
//! the fact itself, since a stock executor has no side channel to send the
//! facts back from the fact's own scan.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;

use super::{Staged, TransformError, WEEKLY_SQL, quality, stock_tables};
use crate::config::Config;
use crate::raw::quarantine::Quarantine;
use crate::raw::{self, RawSet};
use crate::schema::{self, Table};
use crate::storage::Location;

/// Computes the weekly fact of `set` on the cluster `config` names.
pub(super) async fn compute(
    config: &Config,
    raw: &Location,
    set: RawSet,
) -> Result<Staged, TransformError> {
    if config.error_budget > 0 {
        return Err(TransformError::BudgetOnCluster(config.error_budget));
    }
    let cluster = crate::engine::cluster_session(config, raw).await?;
    stock_tables::register(&cluster, raw, &set).await?;
    let started = Instant::now();
    let (facts, _) = futures::try_join!(stock_tables::gather_facts(&cluster, &set), async {
        raw::check(raw, set.date)
            .await
            .map_err(TransformError::from)
    })?;
    for table in Table::ALL {
        if let Some(entry) = set.manifest_entry(table) {
            entry.check_rows(quality::facts_of(&facts, table)?.rows)?;
        }
    }
    let scanned = started.elapsed();
    let weekly = cluster.sql(WEEKLY_SQL).await?.collect().await?;
    let ctx = crate::engine::session(config)?;
    ctx.register_table(
        "staged_weekly",
        memory_table(schema::fact_schema(), weekly)?,
    )?;
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
        _scratch: None,
        timings: vec![("scan", scanned), ("compute", started.elapsed() - scanned)],
    })
}

/// `batches` as an in-memory table of `schema` (the contract's types; the
/// engine may have marked columns that hold no NULL as non-nullable).
fn memory_table(
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Arc<MemTable>, TransformError> {
    let batches = batches
        .into_iter()
        .map(|batch| RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransformError::Engine(e.into()))?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
