//! A raw CSV file of any table, read the way a transform reads it: cut into
//! chunks (small ones here, so that rows cross chunk ends), decoded by two
//! partitions of two workers, every field validated and the scan facts
//! gathered. Any error is fine; a panic, a hang or unbounded memory is not.
//! The first byte picks the table, and whether the rest is the gzip stream
//! itself (to fuzz decompression) or the CSV text to compress.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shelfline_fuzzed::raw::RawFormat;
mod common;

use common::{RUNTIME, gzip, read_all, source};

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
        let source = source("fuzz-csv", table, RawFormat::CsvGz, bytes, 2).await;
        read_all(source.with_max_row_bytes(1024).with_chunk_bytes(64), 2, 2).await;
    });
});
