//! The day's raw files as DataFusion tables named after the contract tables.
//!
//! Each scan streams (nothing is held in memory between queries) in as many
//! partitions as the session's target partitions. The first complete scan
//! of a file parses every field (a bad value anywhere fails the run),
//! verifies the file against the manifest and gathers its [`ScanFacts`];
//! later scans decode only the columns they need. Parquet files are read in
//! place, projected. The small dimension files can then be kept in memory
//! ([`RawTables::load_dimensions`]). A fact file whose manifest says its
//! rows are in daily-key order declares that order to the engine (the
//! reader checks it).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::SessionContext;

use crate::raw::RawSet;
use crate::raw::facts::ScanFacts;
use crate::raw::quarantine::Quarantine;
use crate::raw::reader::{RawSource, Scan};
use crate::schema::Table;

/// The registered raw files, to ask what their scans found.
pub struct RawTables {
    sources: BTreeMap<Table, RawSource>,
}

/// Registers the five raw files of `set` as tables `store`, `product`,
/// `calendar`, `sales` and `inventory`.
pub fn register(
    ctx: &SessionContext,
    set: &RawSet,
    quarantine: &Arc<Quarantine>,
    max_row_bytes: usize,
) -> Result<RawTables> {
    let mut sources = BTreeMap::new();
    for file in set.files.values() {
        let source = RawSource::new(
            set.root.clone(),
            file.clone(),
            set.manifest_entry(file.table).cloned(),
            Arc::clone(quarantine),
        )
        .with_max_row_bytes(max_row_bytes);
        ctx.register_table(
            file.table.name(),
            Arc::new(RawTable {
                source: source.clone(),
            }),
        )?;
        sources.insert(file.table, source);
    }
    Ok(RawTables { sources })
}

impl RawTables {
    /// Reads each dimension file in full (validating it) and registers it
    /// again as an in-memory table. Dimensions are small; in memory they
    /// carry exact statistics, so the engine builds its joins on them
    /// instead of on the big side.
    pub async fn load_dimensions(&self, ctx: &SessionContext) -> Result<()> {
        for table in Table::DIMENSIONS {
            let batches = ctx.table(table.name()).await?.collect().await?;
            let memory = MemTable::try_new(table.arrow_schema(), vec![batches])?;
            ctx.deregister_table(table.name())?;
            ctx.register_table(table.name(), Arc::new(memory))?;
        }
        Ok(())
    }

    /// Scans, in full and concurrently, every file no query has read in full
    /// yet, so that each is validated and has its facts.
    pub async fn scan_the_rest(&self, ctx: &SessionContext) -> Result<()> {
        let unread = self
            .sources
            .iter()
            .filter(|(_, source)| source.facts().is_none())
            .map(|(table, _)| async move {
                ctx.sql(&format!("SELECT count(*) FROM {table}"))
                    .await?
                    .collect()
                    .await
            });
        futures::future::try_join_all(unread).await?;
        Ok(())
    }

    /// The facts of every file (call [`RawTables::scan_the_rest`] first).
    pub fn all_facts(&self) -> Result<BTreeMap<Table, ScanFacts>> {
        self.sources
            .iter()
            .map(|(table, source)| {
                let facts = source.facts().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!(
                        "raw table {table} was not read in full before its facts were asked"
                    ))
                })?;
                Ok((*table, facts.clone()))
            })
            .collect()
    }
}

/// A raw file as a table.
#[derive(Debug)]
struct RawTable {
    source: RawSource,
}

#[async_trait]
impl TableProvider for RawTable {
    fn schema(&self) -> SchemaRef {
        self.source.file.table.arrow_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = state.config().target_partitions();
        // As many workers in all as cores, even for fewer partitions.
        let workers = crate::engine::cores().div_ceil(partitions.max(1));
        let scan = Arc::new(self.source.scan(projection.cloned(), partitions, workers));
        let streams: Vec<Arc<dyn PartitionStream>> = (0..scan.partitions())
            .map(|partition| {
                Arc::new(RawPartition {
                    scan: Arc::clone(&scan),
                    partition,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let schema = Arc::clone(scan.schema());
        let orderings = match self.source.in_daily_key_order() {
            true => daily_key_ordering(self.source.file.table, &schema),
            false => Vec::new(),
        };
        let exec = StreamingTableExec::try_new(schema, streams, None, orderings, false, limit)?;
        Ok(Arc::new(exec))
    }
}

/// The longest prefix of `table`'s daily key that the projected `schema`
/// holds, as the order of each partition's rows (none when empty).
fn daily_key_ordering(table: Table, schema: &SchemaRef) -> Vec<LexOrdering> {
    let ordering = table.daily_key().iter().map_while(|name| {
        let index = schema.index_of(name).ok()?;
        Some(PhysicalSortExpr::new_default(Arc::new(Column::new(
            name, index,
        ))))
    });
    LexOrdering::new(ordering).into_iter().collect()
}

/// One partition of a scan of a raw file.
#[derive(Debug)]
struct RawPartition {
    scan: Arc<Scan>,
    partition: usize,
}

impl PartitionStream for RawPartition {
    fn schema(&self) -> &SchemaRef {
        self.scan.schema()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.scan.open(self.partition)
    }
}
