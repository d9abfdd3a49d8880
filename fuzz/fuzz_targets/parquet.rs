//! A raw Parquet file of any table, read the way a transform reads it
//! (footer, schema check against the contract, row groups decoded with the
//! values checked). Any error is fine; a panic, a hang or unbounded memory
//! is not. The first byte picks the table.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shelfline_fuzzed::raw::RawFormat;
mod common;

use common::{RUNTIME, read_all, source};

fuzz_target!(|data: &[u8]| {
    common::watch_panics();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let table = common::table(mode);
    RUNTIME.block_on(async {
        let source = source("fuzz-parquet", table, RawFormat::Parquet, body.to_vec(), 0).await;
        read_all(source, 1, 1).await;
    });
});
