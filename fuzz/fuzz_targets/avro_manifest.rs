//! Iceberg manifests and manifest lists: RuLake's own Avro container reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rulake_lake::fuzz_avro_container(data);
});
