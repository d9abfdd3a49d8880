//! What the fuzz targets share (each includes this file): a runtime, an
//! in-memory raw zone, and a read of a raw file to its end.

#![allow(dead_code)]

use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use shelfline_fuzzed::raw::quarantine::Quarantine;
use shelfline_fuzzed::raw::reader::RawSource;
use shelfline_fuzzed::raw::{RawFile, RawFormat};
use shelfline_fuzzed::schema::Table;
use shelfline_fuzzed::storage::Location;

/// Makes a panic in shelfline's own code a crash for libFuzzer, and lets a
/// panic in a dependency (parquet-rs asserts on some damaged files) go on to
/// the reader, which turns it into the file's error: that is what a run
/// does with it, and what the reader's tests check. Call first in a target.
pub fn watch_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let in_dependency = info
                .location()
                .is_some_and(|at| at.file().contains("/registry/src/"));
            if !in_dependency {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
}

/// One runtime for every input (the reader's workers are its blocking
/// threads).
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime starts")
});

/// The logical date of every input.
pub fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 10).expect("a valid date")
}

/// The table a mode byte names.
pub fn table(mode: u8) -> Table {
    Table::ALL[usize::from(mode & 0x7f) % Table::ALL.len()]
}

/// An in-memory raw zone.
pub fn raw_zone(name: &str) -> Location {
    Location::parse(&format!("memory://{name}"), &Default::default())
        .expect("a memory location parses")
}

/// A source over `bytes`, put as the `format` raw file of `table` in the
/// in-memory raw zone `name`, with no manifest and `budget` bad rows.
pub async fn source(
    name: &str,
    table: Table,
    format: RawFormat,
    bytes: Vec<u8>,
    budget: u64,
) -> RawSource {
    let raw = raw_zone(name);
    let path =
        object_store::path::Path::from(format!("{0}/{0}_{1}.{2}", table.name(), date(), format));
    let file = RawFile {
        table,
        format,
        bytes: bytes.len() as u64,
        path: path.clone(),
    };
    raw.store()
        .put(&path, bytes.into())
        .await
        .expect("the in-memory store takes any object");
    RawSource::new(raw, file, None, Arc::new(Quarantine::new(budget)))
}

/// `bytes` compressed with gzip.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Reads every partition of `source` to its end (errors are fine).
pub async fn read_all(source: RawSource, partitions: usize, workers: usize) {
    let scan = Arc::new(source.scan(None, partitions, workers));
    let reads = (0..scan.partitions()).map(|p| scan.open(p).try_collect::<Vec<_>>());
    let _ = futures::future::join_all(reads).await;
}
