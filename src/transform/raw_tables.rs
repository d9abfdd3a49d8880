//! The day's raw files as DataFusion tables named after the contract tables.
//!
//! Each file is one streaming partition, so nothing is held in memory
//! between queries. The first complete scan of a CSV file parses every field
//! (a bad value anywhere fails the run), verifies the file against the
//! manifest, and keeps the parsed rows as Arrow IPC in the transform's
//! scratch folder; later scans read only the columns they need from there,
//! without decompressing or parsing again. Parquet files are read in place,
//! projected.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::SessionContext;

use crate::raw::RawSet;
use crate::raw::quarantine::Quarantine;
use crate::raw::reader::RawSource;
use crate::storage::Location;

/// Registers the five raw files of `set` as tables `store`, `product`,
/// `calendar`, `sales` and `inventory`; parsed rows are cached in `scratch`.
pub fn register(
    ctx: &SessionContext,
    raw: &Location,
    set: &RawSet,
    quarantine: &Arc<Quarantine>,
    scratch: &Path,
) -> Result<()> {
    for file in set.files.values() {
        let source = RawSource::new(
            raw.clone(),
            file.clone(),
            set.manifest_entry(file.table).cloned(),
            Arc::clone(quarantine),
        )
        .with_cache_in(scratch);
        ctx.register_table(file.table.name(), Arc::new(RawTable { source }))?;
    }
    Ok(())
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(projection) => Arc::new(self.schema().project(projection)?),
            None => self.schema(),
        };
        let partition = RawPartition {
            source: self.source.clone(),
            projection: projection.cloned(),
            schema: Arc::clone(&schema),
        };
        let exec = StreamingTableExec::try_new(
            schema,
            vec![Arc::new(partition)],
            None,
            Vec::new(),
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

/// One scan of a raw file, decoding the projected columns.
#[derive(Debug)]
struct RawPartition {
    source: RawSource,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
}

impl PartitionStream for RawPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.source.open(self.projection.clone())
    }
}
