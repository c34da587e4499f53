//! Delta commit files: the log action parser and the protocol checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rulake_lake::{DeltaSource, DeltaSourceConfig};
use std::sync::OnceLock;

fn source() -> &'static DeltaSource {
    static SOURCE: OnceLock<DeltaSource> = OnceLock::new();
    // No I/O: opening only builds the store client.
    SOURCE.get_or_init(|| {
        DeltaSource::open(DeltaSourceConfig::new("file:///fuzz-table", "id", "vector"))
            .expect("a local table URL opens")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = source().fuzz_commit("00000000000000000001.json", data);
});
