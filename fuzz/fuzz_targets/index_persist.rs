//! Persisted partition files (the disk cache a shard reloads on restart).
//! The first byte chooses: even, the input as is (mostly refused by the
//! framing and checksum); odd, the rest with a valid checksum appended, so
//! the fuzzer also reaches the checks that run after the checksum.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rulake_index::PartitionIndex;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = PartitionIndex::read_from(body, body.len() as u64);
    } else {
        let mut file = body.to_vec();
        file.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        let _ = PartitionIndex::read_from(&file[..], file.len() as u64);
    }
});
