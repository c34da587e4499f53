//! Delta and Iceberg sources over tables written by the formats' reference
//! Python writers: every version reads back exactly the rows it should
//! hold, pins and checkpoints agree with the log, and broken tables fail
//! with errors that name the table and the file.
#![cfg(all(feature = "delta", feature = "iceberg"))]

use rulake_datasets::ReferenceWriters;
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
    // A deletion vector on a table whose protocol does not name the
    // deletionVectors reader feature is a broken table, not ignored.
    let dv = r#"{"add":{"path":"x.parquet","partitionValues":{},"size":10,"modificationTime":1,"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"ab","offset":1,"sizeInBytes":36,"cardinality":2}}}"#;
    std::fs::write(log.join(format!("{:020}.json", 1)), dv).unwrap();
    let err = src.list_units().await.unwrap_err();
    assert!(
        matches!(&err, LakeError::TableMetadata { reason, .. } if reason.contains("deletionVectors")),
        "{err}"
    );
    // Column mapping is refused.
    let cm = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":true,\"metadata\":{\"delta.columnMapping.id\":1,\"delta.columnMapping.physicalName\":\"col-1\"}}]}","partitionColumns":[],"configuration":{"delta.columnMapping.mode":"name"}}}"#;
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

/// Units of `l` whose object contains none of `changed`'s objects are the
/// same in `m` (an untouched file keeps its units, so its partitions are
/// not rebuilt), and every unit of a changed object has a new version.
fn only_changed(l: &Listing, m: &Listing, changed: &[&str]) {
    for u in &l.units {
        let touched = changed.iter().any(|c| u.object == *c);
        assert_eq!(
            m.units.contains(u),
            !touched,
            "unit {} (touched: {touched})",
            u.key
        );
    }
}

/// The data file holding id `id` (by reading the units).
async fn object_of(src: &dyn Source, l: &Listing, id: u64) -> String {
    for u in &l.units {
        let one = Listing {
            generation: l.generation.clone(),
            units: vec![u.clone()],
            pruned: Vec::new(),
        };
        if read_all(src, &one, DIM)
            .await
            .unwrap()
            .ids
            .contains(&VectorId::U64(id))
        {
            return u.object.clone();
        }
    }
    panic!("id {id} not found")
}

/// Deletion vectors written per the Delta protocol (the `delta-dv` script:
/// pyroaring bitmaps; the table, its appends and the checkpoint are
/// deltalake's) in all three storage types are applied; a new vector
/// changes only its file's units; the checkpoint carries the vectors.
#[tokio::test]
async fn delta_deletion_vectors_are_applied() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t");
    w.delta_append_dv(&table, &[input(dir.path(), "a.parquet", 0..100)])
        .unwrap();
    w.delta_append(&table, &[input(dir.path(), "b.parquet", 100..200)], false)
        .unwrap();
    w.delta_append(&table, &[input(dir.path(), "c.parquet", 200..300)], false)
        .unwrap();
    let open = || {
        DeltaSource::open(DeltaSourceConfig::new(
            table.to_str().unwrap(),
            "id",
            "vector",
        ))
        .unwrap()
    };
    let src = open();
    let (l2, r2) = rows(&src).await;
    assert_eq!(r2, expect(0..300));
    let (fa, fb, fc) = (
        object_of(&src, &l2, 0).await,
        object_of(&src, &l2, 100).await,
        object_of(&src, &l2, 200).await,
    );
    let mut live: Vec<u64> = (0..300).collect();
    let mut prev = l2;
    for (storage, ids, file, version) in [
        ("u", vec![3u64, 4, 5, 99], &fa, 3),
        ("i", vec![150, 151], &fb, 4),
        ("p", (250..260).collect::<Vec<_>>(), &fc, 5),
    ] {
        w.delta_dv(&table, storage, &ids).unwrap();
        live.retain(|i| !ids.contains(i));
        assert_eq!(
            src.generation().await.unwrap().0,
            format!("delta-v{version}")
        );
        let (l, r) = rows(&src).await;
        assert_eq!(r, expect(live.iter().copied()), "storage type {storage}");
        only_changed(&prev, &l, &[file]);
        prev = l;
    }
    // Time travel to before the vectors: every row.
    let pinned = DeltaSource::open(
        DeltaSourceConfig::new(table.to_str().unwrap(), "id", "vector").at_version(2),
    )
    .unwrap();
    assert_eq!(rows(&pinned).await.1, expect(0..300));
    // A checkpoint carries the vectors once the commits are gone.
    w.delta_checkpoint(&table).unwrap();
    for v in 0..5 {
        std::fs::remove_file(table.join("_delta_log").join(format!("{v:020}.json"))).unwrap();
    }
    assert_eq!(rows(&open()).await.1, expect(live.iter().copied()));
    // A corrupt vector file is a clear error naming the vector.
    let dv_dir = table.join("dv");
    let dv_file = std::fs::read_dir(&dv_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&dv_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&dv_file, bytes).unwrap();
    let err = open().list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

/// Iceberg v2 position and equality delete files (written per the spec by
/// the `iceberg-delete-*` script on a pyiceberg table, committed through
/// pyiceberg's snapshot producer) are applied with the spec's
/// sequence-number rules; unsupported deletes are refused.
#[tokio::test]
async fn iceberg_delete_files_are_applied() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    for (name, ids) in [("a", 0..300), ("b", 300..450), ("c", 450..500)] {
        w.iceberg_append(
            &wh,
            "db.d",
            &[input(dir.path(), &format!("{name}.parquet"), ids)],
            false,
        )
        .unwrap();
    }
    let table = wh.join("db").join("d");
    let src = IcebergSource::open(IcebergSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let (l0, r0) = rows(&src).await;
    assert_eq!(r0, expect(0..500));
    let fa = object_of(&src, &l0, 0).await;
    let fb = object_of(&src, &l0, 300).await;

    // Position deletes in two files: only their units change.
    let m1 = w
        .iceberg_delete_positions(&wh, "db.d", &[3, 4, 299, 310])
        .unwrap();
    let mut live: Vec<u64> = (0..500).filter(|i| ![3, 4, 299, 310].contains(i)).collect();
    let (l1, r1) = rows(&src).await;
    assert_ne!(l1.generation, l0.generation);
    assert_eq!(r1, expect(live.iter().copied()));
    only_changed(&l0, &l1, &[&fa, &fb]);

    // Equality deletes apply to older data only: id 460 re-appended after
    // the delete is live again.
    w.iceberg_delete_equality(&wh, "db.d", "id", &[20, 460, 461])
        .unwrap();
    live.retain(|i| ![20, 460, 461].contains(i));
    assert_eq!(rows(&src).await.1, expect(live.iter().copied()));
    w.iceberg_append(
        &wh,
        "db.d",
        &[input(dir.path(), "again.parquet", 460..461)],
        false,
    )
    .unwrap();
    live.push(460);
    live.sort();
    assert_eq!(rows(&src).await.1, expect(live.iter().copied()));

    // The snapshot before the deletes still reads whole, and the one
    // after the position delete without the equality delete.
    let first: i64 = l0.generation.0["iceberg-".len()..].parse().unwrap();
    let pinned = IcebergSource::open(
        IcebergSourceConfig::new(table.to_str().unwrap(), "id", "vector").at_snapshot(first),
    )
    .unwrap();
    assert_eq!(rows(&pinned).await.1, expect(0..500));
    let static1 = IcebergSource::open(IcebergSourceConfig::new(&m1, "id", "vector")).unwrap();
    assert_eq!(rows(&static1).await.1, r1);

    // Unsupported deletes are refused, naming the file.
    let bad_eq = w
        .iceberg_delete_equality(&wh, "db.d", "vector", &[1])
        .unwrap();
    let err = IcebergSource::open(IcebergSourceConfig::new(&bad_eq, "id", "vector"))
        .unwrap()
        .list_units()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LakeError::Unsupported { feature, .. } if feature.contains("other than the id column")),
        "{err}"
    );
    let puffin = w.iceberg_delete_puffin(&wh, "db.d").unwrap();
    let err = IcebergSource::open(IcebergSourceConfig::new(&puffin, "id", "vector"))
        .unwrap()
        .list_units()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LakeError::Unsupported { feature, .. } if feature.contains("format v3")),
        "{err}"
    );
    assert!(err.to_string().contains("dv.puffin"), "{err}");
}

/// A table named through pyiceberg's SQL catalog (SQLite) follows the
/// catalog's commits; a missing table or catalog file is a clear error.
#[cfg(feature = "iceberg-sql")]
#[tokio::test]
async fn iceberg_sql_catalog_follows_commits() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    w.iceberg_append(
        &wh,
        "db.emb",
        &[input(dir.path(), "a.parquet", 0..300)],
        false,
    )
    .unwrap();
    let catalog = |table: &str| SqlCatalogTable {
        uri: format!("sqlite:///{}", wh.join("catalog.db").display()),
        catalog: "rulake".into(),
        namespace: "db".into(),
        table: table.into(),
    };
    let src = IcebergSource::open(IcebergSourceConfig::sql_catalog(
        catalog("emb"),
        "id",
        "vector",
    ))
    .unwrap();
    let (l1, r1) = rows(&src).await;
    assert_eq!(r1, expect(0..300));
    w.iceberg_append(
        &wh,
        "db.emb",
        &[input(dir.path(), "b.parquet", 300..450)],
        false,
    )
    .unwrap();
    let g2 = src.generation().await.unwrap();
    assert_ne!(g2, l1.generation);
    let (l2, r2) = rows(&src).await;
    assert_eq!((l2.generation, r2), (g2, expect(0..450)));

    // A table the catalog does not have.
    let err = IcebergSource::open(IcebergSourceConfig::sql_catalog(
        catalog("nope"),
        "id",
        "vector",
    ))
    .unwrap_err();
    assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains("db.nope"), "{err}");
    // The catalog file gone, then back.
    let db = wh.join("catalog.db");
    std::fs::rename(&db, wh.join("moved.db")).unwrap();
    let err = src.generation().await.unwrap_err();
    assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    std::fs::rename(wh.join("moved.db"), &db).unwrap();
    assert_eq!(rows(&src).await.1, expect(0..450));
    // Not a catalog at all.
    let err = IcebergSource::open(IcebergSourceConfig::sql_catalog(
        SqlCatalogTable {
            uri: dir.path().join("a.parquet").display().to_string(),
            ..catalog("emb")
        },
        "id",
        "vector",
    ))
    .unwrap_err();
    assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
}

/// On a multi-threaded runtime, as in a server: the synchronous opener,
/// the async one and a pin all read the catalog off the async workers and
/// give the same table and the same errors.
#[cfg(feature = "iceberg-sql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_sql_catalog_opens_off_the_async_workers() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    w.iceberg_append(
        &wh,
        "db.emb",
        &[input(dir.path(), "a.parquet", 0..200)],
        false,
    )
    .unwrap();
    let config = |table: &str| {
        IcebergSourceConfig::sql_catalog(
            SqlCatalogTable {
                uri: format!("sqlite:///{}", wh.join("catalog.db").display()),
                catalog: "rulake".into(),
                namespace: "db".into(),
                table: table.into(),
            },
            "id",
            "vector",
        )
    };
    let sync = IcebergSource::open(config("emb")).unwrap();
    let (l1, r1) = rows(&sync).await;
    assert_eq!(r1, expect(0..200));
    let async_ = IcebergSource::open_async(config("emb")).await.unwrap();
    let (l2, r2) = rows(&async_).await;
    assert_eq!((l2.generation, r2), (l1.generation.clone(), r1));
    w.iceberg_append(
        &wh,
        "db.emb",
        &[input(dir.path(), "b.parquet", 200..300)],
        false,
    )
    .unwrap();
    // A pin of the first snapshot (reopened through the catalog) keeps
    // serving it while the table moves on.
    let pinned = async_.pinned(&l1.generation.0).unwrap();
    assert_eq!(rows(pinned.as_ref()).await.1, expect(0..200));
    assert_eq!(rows(&async_).await.1, expect(0..300));
    for err in [
        IcebergSource::open(config("nope")).unwrap_err(),
        IcebergSource::open_async(config("nope")).await.unwrap_err(),
    ] {
        assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
        assert!(err.to_string().contains("db.nope"), "{err}");
    }
}
