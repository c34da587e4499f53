//! `rulake ingest`'s JSON Lines and CSV record parsers; the first byte
//! chooses the format.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rulake_client::records::{csv_record, json_record};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    for (i, line) in text.lines().enumerate() {
        let _ = if kind % 2 == 0 {
            json_record(line, i + 1)
        } else {
            csv_record(line, i + 1)
        };
    }
});
