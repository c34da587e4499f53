//! Delta deletion vectors: Z85, the stored-vector framing and checksum,
//! and the Roaring bitmaps inside (`rulake-lake`'s `dv` module).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rulake_lake::fuzz::delta_dv(data));
