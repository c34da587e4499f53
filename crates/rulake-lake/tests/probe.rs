//! What a generation check asks the lake: a Delta table answers "changed?"
//! without listing its log, and still sees every commit, including one
//! whose log a cleanup has since folded into a checkpoint.
#![cfg(feature = "delta")]

use rulake_datasets::ReferenceWriters;
use rulake_lake::io::{snapshot, LakeKind};
use rulake_lake::*;
use std::path::{Path, PathBuf};

const DIM: usize = 8;

/// A Parquet file of rows `ids` for the writer to ingest.
fn input(dir: &Path, name: &str, ids: std::ops::Range<u64>) -> PathBuf {
    let ids: Vec<u64> = ids.collect();
    let v: Vec<f32> = ids
        .iter()
        .flat_map(|&i| (0..DIM).map(move |j| (i * 7 + j as u64) as f32))
        .collect();
    let p = dir.join(name);
    write_parquet_file(&p, IdsRef::U64(&ids), &v, DIM, 64).unwrap();
    p
}

#[tokio::test]
async fn delta_generation_checks_do_not_list_the_log() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    w.delta_append(&table, &[input(dir.path(), "a.parquet", 0..100)], false)
        .unwrap();
    let src = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    assert_eq!(src.list_units().await.unwrap().generation.0, "delta-v0");

    // Unchanged: each check is one HEAD (and one GET of a pointer the
    // table does not have yet), never a listing.
    let before = snapshot(LakeKind::Delta);
    for _ in 0..5 {
        assert_eq!(src.generation().await.unwrap().0, "delta-v0");
    }
    let after = snapshot(LakeKind::Delta);
    assert_eq!(after.lists - before.lists, 0, "a check listed the log");
    assert_eq!(after.heads - before.heads, 5);

    // A commit is seen by the next check.
    w.delta_append(&table, &[input(dir.path(), "b.parquet", 100..200)], false)
        .unwrap();
    assert_eq!(src.generation().await.unwrap().0, "delta-v1");

    // Two more commits, a checkpoint, and a cleanup of the commits before
    // it: the commit after the one served is gone, the pointer says the
    // table moved on.
    w.delta_append(&table, &[input(dir.path(), "c.parquet", 200..300)], false)
        .unwrap();
    w.delta_checkpoint(&table).unwrap();
    let log = table.join("_delta_log");
    for v in 0..2 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    assert_eq!(src.generation().await.unwrap().0, "delta-v2");
    assert_eq!(src.list_units().await.unwrap().generation.0, "delta-v2");
    // And once served, the checkpoint alone is no news.
    assert_eq!(src.generation().await.unwrap().0, "delta-v2");
}
