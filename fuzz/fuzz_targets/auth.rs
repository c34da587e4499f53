//! Fuzz target `auth`: its body, and what it covers, is
//! `rulake_fuzz::auth` (fuzz/src/lib.rs), which the workspace test
//! `fuzz_replay` also runs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rulake_fuzz::auth(data));
