//! Source URLs and Parquet globs as a caller sends them: the source
//! policy's admission (prefixes, fences, dot segments, encodings) and the
//! glob matcher (`rulake-lake`'s `policy` and `parquet::glob`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rulake_lake::fuzz::source_url(data));
