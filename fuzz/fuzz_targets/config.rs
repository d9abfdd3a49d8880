//! A configuration file: parsed (unknown keys refused) and validated, the
//! way every command starts. Any error is fine; a panic is not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shelfline_fuzzed::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<Config>(text) {
        let _ = config.problems();
        let _ = shelfline_fuzzed::pipeline::Pipeline::new(config);
    }
});
