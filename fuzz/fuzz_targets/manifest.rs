//! A manifest as another producer might drop it beside the raw files, read
//! and checked the way `check` and `transform` read it. Any error is fine;
//! a panic, a hang or a message that grows with the input is not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use object_store::ObjectStoreExt as _;
use shelfline_fuzzed::raw::Manifest;
mod common;

use common::{RUNTIME, date, raw_zone};

fuzz_target!(|data: &[u8]| {
    common::watch_panics();
    RUNTIME.block_on(async {
        let raw = raw_zone("fuzz-manifest");
        let path = shelfline_fuzzed::raw::manifest_path(date());
        raw.store()
            .put(&path, bytes::Bytes::copy_from_slice(data).into())
            .await
            .expect("the in-memory store takes any object");
        if let Err(error) = Manifest::read(&raw, date()).await {
            let message = error.to_string();
            assert!(message.len() < 1024, "{} bytes of message", message.len());
        }
    });
});
