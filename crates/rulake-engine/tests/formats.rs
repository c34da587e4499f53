//! Collections over Delta and Iceberg tables written by the formats'
//! reference writers: fresh answers follow commits (never a deleted row),
//! appends extend only the partitions they touch, bad tables leave the
//! previous generation serving, and one federated search over a Parquet
//! prefix, a Delta table and an Iceberg table equals an exact scan of their
//! union.

use rulake_datasets::ClusteredGaussian;
use rulake_datasets::ReferenceWriters;
use rulake_engine::*;
use rulake_index::exact;
use rulake_lake::{
    write_parquet_file, DeltaSource, DeltaSourceConfig, IcebergSource, IcebergSourceConfig, IdsRef,
    ParquetSource, ParquetSourceConfig, SqlCatalogTable,
};
use rulake_types::{Consistency, Metric, SearchParams, VectorId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DIM: usize = 16;

fn gen() -> ClusteredGaussian {
    ClusteredGaussian::new(DIM, 10, 0.2, 5)
}

/// Parameters that make every partition answer exactly.
fn exhaustive(k: usize) -> SearchParams {
    SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
    }
}

/// Rows `ids` (vectors from `seed`) as a Parquet file; returns it and the rows.
fn input(
    dir: &Path,
    name: &str,
    ids: std::ops::Range<u64>,
    seed: u64,
) -> (PathBuf, Vec<(u64, Vec<f32>)>) {
    let ids: Vec<u64> = ids.collect();
    let v = gen().sample(ids.len(), seed);
    let p = dir.join(name);
    write_parquet_file(&p, IdsRef::U64(&ids), &v, DIM, 100).unwrap();
    let rows = ids
        .iter()
        .zip(v.chunks(DIM))
        .map(|(&i, x)| (i, x.to_vec()))
        .collect();
    (p, rows)
}

/// Rows held by each partition of `collection`'s current generation.
async fn partition_rows(e: &RuLake, collection: &str) -> Vec<usize> {
    let (_, parts) = e.partitions(collection).await.unwrap();
    parts.iter().map(|p| p.index.len()).collect()
}

/// The exact top-k of `rows` as ids.
fn exact_ids(rows: &[(u64, Vec<f32>)], q: &[f32], k: usize) -> Vec<VectorId> {
    let flat: Vec<f32> = rows.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    exact::topk(&flat, DIM, Metric::L2, q, k)
        .into_iter()
        .map(|(pos, _)| VectorId::U64(rows[pos as usize].0))
        .collect()
}

fn hit_ids(r: &SearchResponse) -> Vec<VectorId> {
    r.hits.iter().map(|h| h.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_fresh_collection_follows_appends_and_deletes() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("delta");
    // Four commits, four data files: units spread over the partitions.
    let (_, mut rows) = input(dir.path(), "all.parquet", 0..800, 1);
    for (c, chunk) in rows.chunks(200).enumerate() {
        let ids: Vec<u64> = chunk.iter().map(|(i, _)| *i).collect();
        let v: Vec<f32> = chunk.iter().flat_map(|(_, x)| x.iter().copied()).collect();
        let p = dir.path().join(format!("a{c}.parquet"));
        write_parquet_file(&p, IdsRef::U64(&ids), &v, DIM, 100).unwrap();
        w.delta_append(&table, &[p], false).unwrap();
    }
    let e = RuLake::new(CacheConfig::default());
    let src = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("d", Arc::new(src)).unwrap();
    e.create_collection(
        CollectionSpec::new("d", "d", DIM)
            .partitions(4)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    let queries = gen().sample(10, 50);
    for q in queries.chunks(DIM) {
        let got = e.search("d", q, exhaustive(10)).await.unwrap();
        assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
        assert_eq!(got.generation.0, "delta-v3");
    }
    let before = e.cache_stats();
    assert!(before.builds >= 1, "{before:?}");
    let rows_before = partition_rows(&e, "d").await;

    // An append of one small file touches one partition: only it is
    // extended, the other three are not rebuilt. (Data file names are
    // random, so the file can land in a partition that held none: that
    // partition's first rows get a full build, not an extension.)
    let (b, more) = input(dir.path(), "b.parquet", 800..850, 2);
    w.delta_append(&table, &[b], false).unwrap();
    rows.extend(more);
    for q in queries.chunks(DIM) {
        let got = e.search("d", q, exhaustive(10)).await.unwrap();
        assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
        assert_eq!(got.generation.0, "delta-v4");
    }
    let after = e.cache_stats();
    assert_eq!(after.builds - before.builds, 1, "{after:?}");
    let rows_after = partition_rows(&e, "d").await;
    let touched: Vec<usize> = (0..4)
        .filter(|&p| rows_after[p] != rows_before[p])
        .collect();
    assert_eq!(touched.len(), 1, "{rows_before:?} -> {rows_after:?}");
    assert_eq!(rows_after[touched[0]], rows_before[touched[0]] + 50);
    let extended = u64::from(rows_before[touched[0]] > 0);
    assert_eq!(
        after.incremental_builds - before.incremental_builds,
        extended,
        "{rows_before:?} -> {rows_after:?}: {after:?}"
    );

    // A copy-on-write delete: fresh answers never return a deleted row.
    w.delta_delete(&table, "id >= 100 AND id < 700").unwrap();
    rows.retain(|(i, _)| !(100..700).contains(i));
    for q in queries.chunks(DIM) {
        let got = e.search("d", q, exhaustive(10)).await.unwrap();
        assert_eq!(got.generation.0, "delta-v5");
        assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
        for h in &got.hits {
            let VectorId::U64(i) = h.id else {
                panic!("{:?}", h.id)
            };
            assert!(!(100..700).contains(&i), "deleted row {i} returned");
        }
    }
    // Searching for a deleted row's own vector does not find it.
    let (_, original) = input(dir.path(), "probe.parquet", 0..800, 1);
    let got = e
        .search("d", &original[400].1, SearchParams::k(5))
        .await
        .unwrap();
    assert!(got.hits.iter().all(|h| h.id != VectorId::U64(400)));

    // Time travel from the collection spec: version 3 held the first 800 rows.
    e.create_collection(
        CollectionSpec::new("d3", "d", DIM)
            .partitions(2)
            .pin("delta-v3"),
    )
    .unwrap();
    for q in queries.chunks(DIM) {
        let got = e.search("d3", q, exhaustive(10)).await.unwrap();
        assert_eq!(got.generation.0, "delta-v3");
        assert_eq!(hit_ids(&got), exact_ids(&original, q, 10));
    }
    let got = e
        .search("d3", &original[400].1, SearchParams::k(1))
        .await
        .unwrap();
    assert_eq!(got.hits[0].id, VectorId::U64(400));
    let err = e
        .create_collection(CollectionSpec::new("bad", "d", DIM).pin("yesterday"))
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_table_leaves_the_previous_generation_serving() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("delta");
    let (a, _) = input(dir.path(), "a.parquet", 0..300, 1);
    w.delta_append(&table, &[a], false).unwrap();
    let wh = dir.path().join("wh");
    let (b, _) = input(dir.path(), "b.parquet", 0..300, 2);
    w.iceberg_append(&wh, "db.t", &[b], false).unwrap();
    let e = RuLake::new(CacheConfig::default());
    let d = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let ice_dir = wh.join("db").join("t");
    let i = IcebergSource::open(IcebergSourceConfig::new(
        ice_dir.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("d", Arc::new(d)).unwrap();
    e.register_source("i", Arc::new(i)).unwrap();
    for n in ["d", "i"] {
        e.create_collection(
            CollectionSpec::new(n, n, DIM)
                .partitions(2)
                .consistency(Consistency::Fresh),
        )
        .unwrap();
    }
    let q = gen().sample(1, 9);
    let good_d = e.search("d", &q, SearchParams::k(5)).await.unwrap();
    let good_i = e.search("i", &q, SearchParams::k(5)).await.unwrap();
    // A corrupt Delta commit and a corrupt Iceberg metadata file.
    std::fs::write(
        table.join("_delta_log").join(format!("{:020}.json", 1)),
        "garbage\n",
    )
    .unwrap();
    std::fs::write(
        ice_dir.join("metadata").join("99999-bad.metadata.json"),
        "{",
    )
    .unwrap();
    assert_eq!(e.search("d", &q, SearchParams::k(5)).await.unwrap(), good_d);
    assert_eq!(e.search("i", &q, SearchParams::k(5)).await.unwrap(), good_i);
    let errors = e.cache_stats().errors;
    assert!(
        errors["d"].contains("00000000000000000001.json"),
        "{errors:?}"
    );
    assert!(
        errors["i"].contains("99999-bad.metadata.json"),
        "{errors:?}"
    );
    let err = e.refresh("d").await.unwrap_err().to_string();
    assert!(err.contains("00000000000000000001.json"), "{err}");
    assert!(err.contains("Json error"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_over_parquet_delta_and_iceberg_equals_an_exact_scan() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pq_dir = dir.path().join("pq");
    std::fs::create_dir(&pq_dir).unwrap();
    let (_, pq_rows) = input(&pq_dir, "p.parquet", 0..600, 1);
    let (d1, mut d_rows) = input(dir.path(), "d1.parquet", 10_000..10_400, 2);
    let (d2, more) = input(dir.path(), "d2.parquet", 10_400..10_700, 3);
    d_rows.extend(more);
    let table = dir.path().join("delta");
    w.delta_append(&table, &[d1], false).unwrap();
    w.delta_append(&table, &[d2], false).unwrap();
    let (i1, mut i_rows) = input(dir.path(), "i1.parquet", 20_000..20_300, 4);
    let (i2, more) = input(dir.path(), "i2.parquet", 20_300..20_650, 5);
    i_rows.extend(more);
    let wh = dir.path().join("wh");
    w.iceberg_append(&wh, "db.emb", &[i1], false).unwrap();
    w.iceberg_append(&wh, "db.emb", &[i2], false).unwrap();

    let e = RuLake::new(CacheConfig::default());
    let p = ParquetSource::open(ParquetSourceConfig::new(
        pq_dir.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let d = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let ice = wh.join("db").join("emb");
    let i = IcebergSource::open(IcebergSourceConfig::new(
        ice.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("p", Arc::new(p)).unwrap();
    e.register_source("d", Arc::new(d)).unwrap();
    e.register_source("i", Arc::new(i)).unwrap();
    for (n, parts) in [("p", 2), ("d", 3), ("i", 2)] {
        e.create_collection(CollectionSpec::new(n, n, DIM).partitions(parts))
            .unwrap();
    }
    // A Parquet prefix has no versions to pin.
    let err = e
        .create_collection(CollectionSpec::new("p1", "p", DIM).pin("1"))
        .unwrap_err();
    assert!(err.to_string().contains("no versions"), "{err}");
    let mut union = pq_rows.clone();
    union.extend(d_rows.iter().cloned());
    union.extend(i_rows.iter().cloned());
    let from = |id: &VectorId| match id {
        VectorId::U64(x) if *x >= 20_000 => "i",
        VectorId::U64(x) if *x >= 10_000 => "d",
        _ => "p",
    };
    for q in gen().sample(15, 77).chunks(DIM) {
        let fed = e
            .federated_search(&["p", "d", "i"], q, exhaustive(10))
            .await
            .unwrap();
        assert_eq!(hit_ids_fed(&fed), exact_ids(&union, q, 10));
        assert_eq!((fed.partitions_answered, fed.partitions_total), (7, 7));
        assert_eq!(fed.generations["d"].0, "delta-v1");
        assert!(fed.generations["i"].0.starts_with("iceberg-"));
        assert!(fed.generations["p"].0.starts_with("pq-"));
        for h in &fed.hits {
            assert_eq!(h.collection, from(&h.id));
            assert_eq!(&h.generation, &fed.generations[from(&h.id)]);
        }
        // Exact distances: the merge is exact.
        let flat: Vec<f32> = union.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let want = exact::topk(&flat, DIM, Metric::L2, q, 10);
        for (h, (_, dist)) in fed.hits.iter().zip(&want) {
            assert!((h.distance - dist).abs() < 1e-4);
        }
    }
}

fn hit_ids_fed(r: &FederatedResponse) -> Vec<VectorId> {
    r.hits.iter().map(|h| h.id.clone()).collect()
}

/// Deletes applied from the formats' row-level delete files: a Delta
/// deletion vector (written per the protocol by the reference-writer
/// script on a deltalake table) and an Iceberg position delete file (per
/// the spec, committed through pyiceberg) never let a deleted row answer,
/// bump the generation, and rebuild only the partition whose file got the
/// delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_deletes_rebuild_only_the_touched_partitions() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("delta");
    let wh = dir.path().join("wh");
    let (_, mut rows) = input(dir.path(), "all.parquet", 0..800, 1);
    for (c, chunk) in rows.chunks(200).enumerate() {
        let ids: Vec<u64> = chunk.iter().map(|(i, _)| *i).collect();
        let v: Vec<f32> = chunk.iter().flat_map(|(_, x)| x.iter().copied()).collect();
        let p = dir.path().join(format!("a{c}.parquet"));
        write_parquet_file(&p, IdsRef::U64(&ids), &v, DIM, 100).unwrap();
        if c == 0 {
            w.delta_append_dv(&table, std::slice::from_ref(&p)).unwrap();
        } else {
            w.delta_append(&table, std::slice::from_ref(&p), false)
                .unwrap();
        }
        w.iceberg_append(&wh, "db.t", &[p], false).unwrap();
    }
    let e = RuLake::new(CacheConfig::default());
    let d = DeltaSource::open(DeltaSourceConfig::new(
        table.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    let i = IcebergSource::open(IcebergSourceConfig::new(
        wh.join("db").join("t").to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("d", Arc::new(d)).unwrap();
    e.register_source("i", Arc::new(i)).unwrap();
    for n in ["d", "i"] {
        e.create_collection(
            CollectionSpec::new(n, n, DIM)
                .partitions(4)
                .consistency(Consistency::Fresh),
        )
        .unwrap();
    }
    let queries = gen().sample(10, 50);
    let mut gens = std::collections::HashMap::new();
    for n in ["d", "i"] {
        for q in queries.chunks(DIM) {
            let got = e.search(n, q, exhaustive(10)).await.unwrap();
            assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
            gens.insert(n, got.generation);
        }
    }
    let deleted: Vec<u64> = (210..260).chain([399]).collect();
    rows.retain(|(i, _)| !deleted.contains(i));
    for n in ["d", "i"] {
        let before = e.cache_stats();
        if n == "d" {
            w.delta_dv(&table, "u", &deleted).unwrap();
        } else {
            w.iceberg_delete_positions(&wh, "db.t", &deleted).unwrap();
        }
        for q in queries.chunks(DIM) {
            let got = e.search(n, q, exhaustive(10)).await.unwrap();
            assert_ne!(got.generation, gens[n]);
            assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10), "{n}");
            for h in &got.hits {
                let VectorId::U64(i) = h.id else {
                    panic!("{:?}", h.id)
                };
                assert!(!deleted.contains(&i), "{n}: deleted row {i} returned");
            }
        }
        // Searching for a deleted row's own vector does not find it.
        let (_, original) = input(dir.path(), "probe.parquet", 0..800, 1);
        let got = e
            .search(n, &original[220].1, SearchParams::k(5))
            .await
            .unwrap();
        assert!(got.hits.iter().all(|h| h.id != VectorId::U64(220)), "{n}");
        // The deletes hit the one file holding ids 200..400 (one row
        // group): one partition rebuilt, three untouched.
        let after = e.cache_stats();
        assert_eq!(after.builds - before.builds, 1, "{n}: {after:?}");
    }

    // Deletes RuLake does not apply leave the previous generation serving
    // with a clear error: an Iceberg v3 deletion vector (Puffin), a Delta
    // vector of an unknown storage type.
    let q = &queries[..DIM];
    let good_i = e.search("i", q, exhaustive(10)).await.unwrap();
    let good_d = e.search("d", q, exhaustive(10)).await.unwrap();
    w.iceberg_delete_puffin(&wh, "db.t").unwrap();
    let log = table.join("_delta_log");
    let last = std::fs::read_to_string(log.join(format!("{:020}.json", 4))).unwrap();
    let path = last
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|a| a["add"]["path"].as_str().map(str::to_owned))
        .unwrap();
    let bad = serde_json::json!({"add": {"path": path, "partitionValues": {}, "size": 1,
        "modificationTime": 1, "dataChange": true,
        "deletionVector": {"storageType": "q", "pathOrInlineDv": "x", "sizeInBytes": 8, "cardinality": 1}}});
    std::fs::write(log.join(format!("{:020}.json", 5)), bad.to_string()).unwrap();
    assert_eq!(e.search("i", q, exhaustive(10)).await.unwrap(), good_i);
    assert_eq!(e.search("d", q, exhaustive(10)).await.unwrap(), good_d);
    let errors = e.cache_stats().errors;
    assert!(errors["i"].contains("format v3"), "{errors:?}");
    assert!(
        errors["d"].contains("deletion vector") && errors["d"].contains(&path),
        "{errors:?}"
    );
}

/// An Iceberg table named through pyiceberg's SQL catalog (SQLite): each
/// snapshot committed through the catalog is served exactly; a catalog
/// file or catalog row that disappears leaves the previous generation
/// serving with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_sql_catalog_collection_follows_the_catalog() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let (a, mut rows) = input(dir.path(), "a.parquet", 0..300, 1);
    w.iceberg_append(&wh, "db.emb", &[a], false).unwrap();
    let src = IcebergSource::open(IcebergSourceConfig::sql_catalog(
        SqlCatalogTable {
            uri: format!("sqlite:///{}", wh.join("catalog.db").display()),
            catalog: "rulake".into(),
            namespace: "db".into(),
            table: "emb".into(),
        },
        "id",
        "vector",
    ))
    .unwrap();
    let e = RuLake::new(CacheConfig::default());
    e.register_source("c", Arc::new(src)).unwrap();
    e.create_collection(
        CollectionSpec::new("c", "c", DIM)
            .partitions(2)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    let queries = gen().sample(8, 60);
    let mut first = None;
    for q in queries.chunks(DIM) {
        let got = e.search("c", q, exhaustive(10)).await.unwrap();
        assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
        first = Some(got.generation);
    }
    let (b, more) = input(dir.path(), "b.parquet", 300..550, 2);
    w.iceberg_append(&wh, "db.emb", &[b], false).unwrap();
    rows.extend(more);
    let mut good = Vec::new();
    for q in queries.chunks(DIM) {
        let got = e.search("c", q, exhaustive(10)).await.unwrap();
        assert_ne!(Some(&got.generation), first.as_ref());
        assert_eq!(hit_ids(&got), exact_ids(&rows, q, 10));
        good.push(got);
    }
    // The catalog file gone: the previous generation serves, the error
    // says what is missing.
    let db = wh.join("catalog.db");
    std::fs::rename(&db, wh.join("moved.db")).unwrap();
    for (q, g) in queries.chunks(DIM).zip(&good) {
        assert_eq!(&e.search("c", q, exhaustive(10)).await.unwrap(), g);
    }
    let errors = e.cache_stats().errors;
    assert!(errors["c"].contains("does not exist"), "{errors:?}");
    std::fs::rename(wh.join("moved.db"), &db).unwrap();
    // The table dropped from the catalog: the same.
    w.iceberg_drop(&wh, "db.emb").unwrap();
    for (q, g) in queries.chunks(DIM).zip(&good) {
        assert_eq!(&e.search("c", q, exhaustive(10)).await.unwrap(), g);
    }
    let err = e.refresh("c").await.unwrap_err();
    assert!(err.to_string().contains("no table db.emb"), "{err}");
}
