//! A raw Parquet file of any table, read the way a transform reads it
//! (footer, schema check against the contract, row groups decoded with the
//! values checked), and counted the way `check` counts it. Any error is
//! fine; a panic, a hang or unbounded memory is not. The first byte picks
//! the table.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shelfline_fuzzed::raw::quarantine::Quarantine;
use shelfline_fuzzed::raw::reader::RawSource;
use shelfline_fuzzed::raw::{RawFile, RawFormat};
mod common;

use common::{RUNTIME, put, read_all};

fuzz_target!(|data: &[u8]| {
    common::watch_panics();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let table = common::table(mode);
    RUNTIME.block_on(async {
        let (raw, path) = put("fuzz-parquet", table, "parquet", body.to_vec()).await;
        let file = RawFile {
            table,
            format: RawFormat::Parquet,
            bytes: body.len() as u64,
            path,
        };
        let source = RawSource::new(raw, file, None, Arc::new(Quarantine::new(0)));
        read_all(source, 1, 1).await;
    });
});
