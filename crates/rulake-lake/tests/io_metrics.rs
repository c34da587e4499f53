//! The lake I/O counters move by what a source really read, under its own
//! kind only, and failed reads count as errors. One test function, so no
//! other test of this binary reads the lake while it compares counters.

use futures::TryStreamExt;
use rulake_lake::io::{metered, snapshot, IoSnapshot, LakeKind};
use rulake_lake::*;
use std::sync::Arc;

const DIM: usize = 8;

fn all_kinds() -> Vec<(LakeKind, IoSnapshot)> {
    LakeKind::ALL
        .into_iter()
        .map(|k| (k, snapshot(k)))
        .collect()
}

fn moved(before: IoSnapshot, after: IoSnapshot) -> IoSnapshot {
    IoSnapshot {
        bytes: after.bytes - before.bytes,
        requests: after.requests - before.requests,
        lists: after.lists - before.lists,
        heads: after.heads - before.heads,
        errors: after.errors - before.errors,
        pruned_files: after.pruned_files - before.pruned_files,
        pruned_row_groups: after.pruned_row_groups - before.pruned_row_groups,
        pruned_bytes: after.pruned_bytes - before.pruned_bytes,
    }
}

#[tokio::test]
async fn parquet_reads_count_bytes_requests_and_errors_under_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = 0u64;
    for f in 0..3u64 {
        let ids: Vec<u64> = (f * 1000..f * 1000 + 1000).collect();
        let v: Vec<f32> = (0..ids.len() * DIM).map(|i| i as f32 * 0.25).collect();
        let path = dir.path().join(format!("part-{f}.parquet"));
        write_parquet_file(&path, IdsRef::U64(&ids), &v, DIM, 400).unwrap();
        sizes += std::fs::metadata(&path).unwrap().len();
    }
    let src = metered(Arc::new(
        ParquetSource::open(ParquetSourceConfig::new(
            dir.path().to_str().unwrap(),
            ID_COLUMN,
            VECTOR_COLUMN,
        ))
        .unwrap(),
    ));
    assert_eq!(src.kind(), "parquet");

    let before = all_kinds();
    let listing = src.list_units().await.unwrap();
    assert_eq!(listing.units.len(), 9, "3 files x 3 row groups");
    let rows = read_all(src.as_ref(), &listing, DIM).await.unwrap();
    assert_eq!(rows.len(), 3000);
    let after = all_kinds();
    for ((kind, b), (_, a)) in before.iter().zip(&after) {
        let d = moved(*b, *a);
        if *kind == LakeKind::Parquet {
            // Every footer and every row group came through the store.
            assert!(d.bytes >= sizes, "{d:?} for {sizes} bytes of files");
            assert!(d.requests >= 3 + 9, "{d:?}: 3 footers and 9 row groups");
            assert_eq!(d.lists, 1, "{d:?}: one listing of the prefix");
            // Not wildly more than the files hold either: footers are
            // read once (then cached), row groups once each.
            assert!(d.bytes <= 3 * sizes, "{d:?} for {sizes} bytes of files");
            assert_eq!(d.errors, 0, "nothing failed");
        } else {
            assert_eq!(d, IoSnapshot::default(), "{kind} must not move");
        }
    }

    // A file that vanished after listing: reading its units fails, once
    // per failed read, under the parquet kind.
    let before = snapshot(LakeKind::Parquet);
    std::fs::remove_file(dir.path().join("part-1.parquet")).unwrap();
    let gone: Vec<&Unit> = listing
        .units
        .iter()
        .filter(|u| u.object.ends_with("part-1.parquet"))
        .collect();
    assert_eq!(gone.len(), 3);
    for u in &gone {
        let e = src.read_unit(u, DIM).try_collect::<Vec<_>>().await;
        assert!(matches!(e, Err(LakeError::Vanished { .. })), "{e:?}");
    }
    let d = moved(before, snapshot(LakeKind::Parquet));
    assert_eq!(d.errors, 3, "{d:?}");
    assert_eq!(d.requests, 0, "a failed GET is not a read: {d:?}");

    // A corrupt file: listing reads its footer, which does not decode.
    std::fs::write(dir.path().join("bad.parquet"), vec![7u8; 4096]).unwrap();
    let before = snapshot(LakeKind::Parquet);
    let e = src.list_units().await.unwrap_err();
    assert!(e.to_string().contains("bad.parquet"), "{e}");
    let d = moved(before, snapshot(LakeKind::Parquet));
    assert_eq!(d.errors, 1, "{d:?}");
    assert!(d.bytes > 0, "its bytes were read before decoding failed");
    assert_eq!(snapshot(LakeKind::Memory), after[4].1);

    // The memory source reads no objects, but its failures count.
    let mem = MemorySource::new("m", DIM);
    let mem = metered(mem);
    let before = snapshot(LakeKind::Memory);
    let stale = Unit {
        key: "m#missing".into(),
        object: "m".into(),
        row_group: 999,
        rows: 1,
        object_size: 0,
        version: "0".into(),
    };
    assert!(mem.read_unit(&stale, DIM).try_next().await.is_err());
    let d = moved(before, snapshot(LakeKind::Memory));
    assert_eq!(
        d,
        IoSnapshot {
            errors: 1,
            ..IoSnapshot::default()
        }
    );
}
