//! Delta and Iceberg sources over tables written by the formats' reference
//! Python writers: every version reads back exactly the rows it should
//! hold, pins and checkpoints agree with the log, and broken tables fail
//! with errors that name the table and the file.
#![cfg(all(feature = "delta", feature = "iceberg"))]

use rulake_lake::reference::ReferenceWriters;
use rulake_lake::*;
use rulake_types::VectorId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DIM: usize = 8;

/// Deterministic vector of a row, the same whatever wrote it.
fn vector(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((id * 2_654_435_761 + j * 40_503) % 1_000_003) as f32 / 1_000_003.0 - 0.5)
        .collect()
}

/// A Parquet file of rows `ids` for the writers to ingest.
fn input(dir: &Path, name: &str, ids: std::ops::Range<u64>) -> PathBuf {
    let ids: Vec<u64> = ids.collect();
    let v: Vec<f32> = ids.iter().flat_map(|&i| vector(i)).collect();
    let p = dir.join(name);
    write_parquet_file(&p, IdsRef::U64(&ids), &v, DIM, 64).unwrap();
    p
}

async fn rows(src: &dyn Source) -> (Listing, BTreeMap<VectorId, Vec<f32>>) {
    let listing = src.list_units().await.unwrap();
    let all = read_all(src, &listing, DIM).await.unwrap();
    let mut out = BTreeMap::new();
    for (i, id) in all.ids.iter().enumerate() {
        let prev = out.insert(id.clone(), all.vectors[i * DIM..(i + 1) * DIM].to_vec());
        assert!(prev.is_none(), "duplicate id {id}");
    }
    (listing, out)
}

fn expect(ids: impl Iterator<Item = u64>) -> BTreeMap<VectorId, Vec<f32>> {
    ids.map(|i| (VectorId::U64(i), vector(i))).collect()
}

#[tokio::test]
async fn delta_versions_appends_delete_pin_and_checkpoint() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    let a = input(dir.path(), "a.parquet", 0..300);
    let b = input(dir.path(), "b.parquet", 300..500);
    w.delta_append(&table, &[a], false).unwrap();
    let src = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    assert_eq!(src.kind(), "delta");
    let (l0, r0) = rows(&src).await;
    assert_eq!(l0.generation.0, "delta-v0");
    assert_eq!(src.generation().await.unwrap(), l0.generation);
    assert_eq!(r0, expect(0..300));

    // Append: the old units stay exactly as they were (incremental refresh).
    w.delta_append(&table, &[b], false).unwrap();
    assert_eq!(src.generation().await.unwrap().0, "delta-v1");
    let (l1, r1) = rows(&src).await;
    assert_eq!(r1, expect(0..500));
    for u in &l0.units {
        assert!(l1.units.contains(u), "unit {} changed on append", u.key);
    }

    // Copy-on-write delete: a remove plus a rewritten file.
    w.delta_delete(&table, "id >= 250 AND id < 350").unwrap();
    let (l2, r2) = rows(&src).await;
    assert_eq!(l2.generation.0, "delta-v2");
    assert_eq!(r2, expect((0..250).chain(350..500)));
    assert!(l0.units.iter().any(|u| !l2.units.contains(u)));

    // Time travel: a pinned version serves what that version held.
    let pinned = DeltaSource::open(
        DeltaSourceConfig::new(table.to_str().unwrap(), "id", "vector").at_version(1),
    )
    .unwrap();
    assert_eq!(pinned.generation().await.unwrap().0, "delta-v1");
    assert_eq!(rows(&pinned).await.1, expect(0..500));
    let missing = DeltaSource::open(
        DeltaSourceConfig::new(table.to_str().unwrap(), "id", "vector").at_version(9),
    )
    .unwrap();
    let err = missing.list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::VersionNotFound { .. }), "{err}");

    // A checkpoint replaces the commits before it, even once they are gone.
    w.delta_checkpoint(&table).unwrap();
    let log = table.join("_delta_log");
    for v in 0..2 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let fresh = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let (lc, rc) = rows(&fresh).await;
    assert_eq!(lc.generation.0, "delta-v2");
    assert_eq!(rc, r2);
    // The source that followed the log all along agrees.
    assert_eq!(rows(&src).await.1, r2);
}

#[tokio::test]
async fn delta_string_ids_and_list_vectors() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("s");
    w.delta_append(&table, &[input(dir.path(), "a.parquet", 0..50)], true)
        .unwrap();
    let src = DeltaSource::open(DeltaSourceConfig::new(
        format!("file://{}", table.display()),
        "id",
        "vector",
    ))
    .unwrap();
    let (_, r) = rows(&src).await;
    let want: BTreeMap<VectorId, Vec<f32>> = (0..50)
        .map(|i| (VectorId::from(i.to_string().as_str()), vector(i)))
        .collect();
    assert_eq!(r, want);
}

#[tokio::test]
async fn delta_bad_tables_fail_clearly() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = |t: &Path, id: &str, v: &str| {
        DeltaSource::open(DeltaSourceConfig::new(t.to_str().unwrap(), id, v)).unwrap()
    };
    // Missing table.
    let err = open(&dir.path().join("nope"), "id", "vector")
        .list_units()
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");

    let table = dir.path().join("t");
    w.delta_append(&table, &[input(dir.path(), "a.parquet", 0..100)], false)
        .unwrap();
    // Unsupported column types name the column.
    let err = open(&table, "vector", "id").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::ColumnType { .. }), "{err}");
    let err = open(&table, "id", "embedding")
        .list_units()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("embedding"), "{err}");

    let src = open(&table, "id", "vector");
    let (l0, _) = rows(&src).await;
    let log = table.join("_delta_log");
    // A corrupt commit names the file and the line.
    std::fs::write(
        log.join(format!("{:020}.json", 1)),
        "{\"add\": {\"path\": 3}}\nnot json\n",
    )
    .unwrap();
    let err = src.list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000000001.json"),
        "{err}"
    );
    // A deletion vector is refused, not ignored.
    let dv = r#"{"add":{"path":"x.parquet","partitionValues":{},"size":10,"modificationTime":1,"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"ab","offset":1,"sizeInBytes":36,"cardinality":2}}}"#;
    std::fs::write(log.join(format!("{:020}.json", 1)), dv).unwrap();
    let err = src.list_units().await.unwrap_err();
    assert!(
        matches!(&err, LakeError::Unsupported { feature, .. } if feature == "deletion vectors"),
        "{err}"
    );
    // Column mapping is refused.
    let cm = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{"delta.columnMapping.mode":"name"}}}"#;
    std::fs::write(log.join(format!("{:020}.json", 1)), cm).unwrap();
    let err = open(&table, "id", "vector").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::Unsupported { .. }), "{err}");
    std::fs::remove_file(log.join(format!("{:020}.json", 1))).unwrap();
    // A vanished data file is named.
    let unit = &l0.units[0];
    let fresh = open(&table, "id", "vector");
    let listing = fresh.list_units().await.unwrap();
    std::fs::remove_file(Path::new("/").join(&unit.object)).unwrap();
    let err = read_all(&fresh, &listing, DIM).await.unwrap_err();
    assert!(matches!(err, LakeError::Vanished { .. }), "{err}");
    let err = open(&table, "id", "vector").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::Vanished { .. }), "{err}");
}

#[tokio::test]
async fn iceberg_snapshots_locations_and_pins() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let m1 = w
        .iceberg_append(
            &wh,
            "db.emb",
            &[input(dir.path(), "a.parquet", 0..300)],
            false,
        )
        .unwrap();
    let table = wh.join("db").join("emb");
    let src = IcebergSource::open(IcebergSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    assert_eq!(src.kind(), "iceberg");
    let (l1, r1) = rows(&src).await;
    assert!(l1.generation.0.starts_with("iceberg-"), "{}", l1.generation);
    assert_eq!(r1, expect(0..300));
    let m2 = w
        .iceberg_append(
            &wh,
            "db.emb",
            &[input(dir.path(), "b.parquet", 300..450)],
            false,
        )
        .unwrap();
    let g2 = src.generation().await.unwrap();
    assert_ne!(g2, l1.generation);
    let (l2, r2) = rows(&src).await;
    assert_eq!(l2.generation, g2);
    assert_eq!(r2, expect(0..450));
    for u in &l1.units {
        assert!(l2.units.contains(u), "unit {} changed on append", u.key);
    }
    // A metadata file URL is a static table at that metadata.
    let static1 = IcebergSource::open(IcebergSourceConfig::new(&m1, "id", "vector")).unwrap();
    let (ls, rs) = rows(&static1).await;
    assert_eq!(
        (ls.generation.clone(), rs),
        (l1.generation.clone(), expect(0..300))
    );
    // A pinned snapshot of the newest metadata serves that snapshot.
    let first: i64 = l1.generation.0["iceberg-".len()..].parse().unwrap();
    let pinned =
        IcebergSource::open(IcebergSourceConfig::new(&m2, "id", "vector").at_snapshot(first))
            .unwrap();
    assert_eq!(rows(&pinned).await.1, expect(0..300));
    let err = IcebergSource::open(IcebergSourceConfig::new(&m2, "id", "vector").at_snapshot(7))
        .unwrap()
        .list_units()
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::VersionNotFound { .. }), "{err}");
}

#[tokio::test]
async fn iceberg_string_ids_and_bad_tables() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    w.iceberg_append(&wh, "db.s", &[input(dir.path(), "a.parquet", 0..40)], true)
        .unwrap();
    let table = wh.join("db").join("s");
    let open = |t: &Path, id: &str, v: &str| {
        IcebergSource::open(IcebergSourceConfig::new(t.to_str().unwrap(), id, v)).unwrap()
    };
    let src = open(&table, "id", "vector");
    let (listing, r) = rows(&src).await;
    let want: BTreeMap<VectorId, Vec<f32>> = (0..40)
        .map(|i| (VectorId::from(i.to_string().as_str()), vector(i)))
        .collect();
    assert_eq!(r, want);
    // Missing table.
    let err = open(&dir.path().join("nope"), "id", "vector")
        .generation()
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
    // Unsupported type.
    let err = open(&table, "vector", "id").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::ColumnType { .. }), "{err}");
    // A corrupt manifest list names the file.
    let meta = table.join("metadata");
    let snap = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("snap-")
        })
        .unwrap();
    let good = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &good[..good.len() / 2]).unwrap();
    let err = open(&table, "id", "vector").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    assert!(err.to_string().contains("snap-"), "{err}");
    std::fs::write(&snap, &good).unwrap();
    // A vanished data file is named.
    std::fs::remove_file(Path::new("/").join(&listing.units[0].object)).unwrap();
    let err = open(&table, "id", "vector").list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::Vanished { .. }), "{err}");
    // A corrupt newest metadata file names the file.
    std::fs::write(meta.join("99999-corrupt.metadata.json"), "{not json").unwrap();
    let err = open(&table, "id", "vector").generation().await.unwrap_err();
    assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    assert!(err.to_string().contains("99999-corrupt"), "{err}");
}
