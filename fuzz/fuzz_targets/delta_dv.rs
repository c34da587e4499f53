//! Fuzz target `delta_dv`: its body, and what it covers, is
//! `rulake_fuzz::delta_dv` (fuzz/src/lib.rs), which the workspace test
//! `fuzz_replay` also runs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rulake_fuzz::delta_dv(data));
