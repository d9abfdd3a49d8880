//! The day's raw files as DataFusion tables named after the contract tables.
//!
//! Each file is one streaming partition: every scan re-reads the file, so
//! nothing is held in memory between queries, and every scan verifies the
//! file against the manifest.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;

use crate::raw::quarantine::Quarantine;
use crate::raw::{ManifestEntry, RawFile, RawSet, reader};
use crate::storage::Location;

/// Registers the five raw files of `set` as tables `store`, `product`,
/// `calendar`, `sales` and `inventory`.
pub fn register(
    ctx: &SessionContext,
    raw: &Location,
    set: &RawSet,
    quarantine: &Arc<Quarantine>,
) -> Result<()> {
    for file in set.files.values() {
        let partition = RawPartition {
            raw: raw.clone(),
            file: file.clone(),
            entry: set.manifest_entry(file.table).cloned(),
            quarantine: Arc::clone(quarantine),
            schema: file.table.arrow_schema(),
        };
        let table = StreamingTable::try_new(file.table.arrow_schema(), vec![Arc::new(partition)])?;
        ctx.register_table(file.table.name(), Arc::new(table))?;
    }
    Ok(())
}

#[derive(Debug)]
struct RawPartition {
    raw: Location,
    file: RawFile,
    entry: Option<ManifestEntry>,
    quarantine: Arc<Quarantine>,
    schema: SchemaRef,
}

impl PartitionStream for RawPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        reader::open(
            &self.raw,
            &self.file,
            self.entry.clone(),
            Arc::clone(&self.quarantine),
        )
    }
}
