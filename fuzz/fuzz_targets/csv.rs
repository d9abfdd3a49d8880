//! A raw CSV file of any table, read the way a transform reads it: cut into
//! chunks (small ones here, so that rows cross chunk ends), decoded by two
//! partitions of two workers, every field validated and the scan facts
//! gathered. Any error is fine; a panic, a hang or unbounded memory is not.
//! The first byte picks the table, and whether the rest is the gzip stream
//! itself (to fuzz decompression) or the CSV text to compress.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shelfline_fuzzed::raw::quarantine::Quarantine;
use shelfline_fuzzed::raw::reader::RawSource;
use shelfline_fuzzed::raw::{RawFile, RawFormat};
mod common;

use common::{RUNTIME, gzip, put, read_all};

fuzz_target!(|data: &[u8]| {
    common::watch_panics();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let table = common::table(mode);
    let bytes = if mode & 0x80 == 0 {
        gzip(body)
    } else {
        body.to_vec()
    };
    RUNTIME.block_on(async {
        let (raw, path) = put("fuzz-csv", table, "csv.gz", bytes).await;
        let file = RawFile {
            table,
            format: RawFormat::CsvGz,
            bytes: 0,
            path,
        };
        let mut source =
            RawSource::new(raw, file, None, Arc::new(Quarantine::new(2))).with_max_row_bytes(1024);
        source.chunk_bytes = 64;
        read_all(source, 2, 2).await;
    });
});
