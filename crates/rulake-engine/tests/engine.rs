//! The embedded engine end to end: exact merge, coherence under both
//! consistency levels, federation, the cache budget, warm restarts and bad
//! lake input that must not disturb what is served.

use rulake_datasets::ClusteredGaussian;
use rulake_engine::*;
use rulake_index::exact;
use rulake_lake::{write_parquet_file, IdsRef, MemorySource, ParquetSource, ParquetSourceConfig};
use rulake_types::{merge_topk, Consistency, Hit, Metric, SearchParams, VectorId};
use std::sync::Arc;
use std::time::Duration;

const DIM: usize = 16;

fn gen() -> ClusteredGaussian {
    ClusteredGaussian::new(DIM, 10, 0.2, 5)
}

fn rows(start: u64, v: &[f32]) -> Vec<(VectorId, Vec<f32>)> {
    v.chunks(DIM)
        .enumerate()
        .map(|(i, x)| (VectorId::U64(start + i as u64), x.to_vec()))
        .collect()
}

/// Parameters that make every partition answer exactly.
fn exhaustive(k: usize) -> SearchParams {
    SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
    }
}

fn write_lake(dir: &std::path::Path, files: usize, per_file: usize) -> Vec<f32> {
    let g = gen();
    let mut all = Vec::new();
    for f in 0..files {
        let v = g.sample(per_file, f as u64 + 10);
        let ids: Vec<u64> = ((f * per_file) as u64..((f + 1) * per_file) as u64).collect();
        write_parquet_file(
            &dir.join(format!("f{f:02}.parquet")),
            IdsRef::U64(&ids),
            &v,
            DIM,
            per_file.div_ceil(4),
        )
        .unwrap();
        all.extend(v);
    }
    all
}

fn parquet_engine(dir: &std::path::Path, cache: CacheConfig) -> RuLake {
    let e = RuLake::new(cache);
    let src = ParquetSource::open(ParquetSourceConfig::new(
        dir.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("lake", Arc::new(src)).unwrap();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_answers_equal_its_partitions_merged_and_an_exact_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_lake(dir.path(), 6, 500);
    let e = parquet_engine(dir.path(), CacheConfig::default());
    e.create_collection(CollectionSpec::new("c", "lake", DIM).partitions(3))
        .unwrap();
    let queries = gen().sample(20, 99);
    let (_, parts) = e.partitions("c").await.unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts.iter().map(|p| p.index.len()).sum::<usize>(), 3000);
    let mut recall = 0.0;
    for q in queries.chunks(DIM) {
        // Defaults: the engine adds nothing to and loses nothing from its partitions.
        let got = e.search("c", q, SearchParams::k(10)).await.unwrap();
        assert_eq!((got.partitions_answered, got.partitions_total), (3, 3));
        let plan = partition_params(&parts, SearchParams::k(10), 1.0);
        let merged = merge_topk(
            parts.iter().zip(&plan).map(|(p, pp)| {
                p.index
                    .search(q, 10, pp.nprobe, pp.rerank)
                    .unwrap()
                    .into_iter()
                    .map(|(pos, distance)| Hit::new(p.index.ids().get(pos), distance))
                    .collect()
            }),
            10,
        );
        assert_eq!(got.hits, merged);
        // Exhaustive: equal to an exact scan, id for id and distance for distance.
        let got = e.search("c", q, exhaustive(10)).await.unwrap();
        let want = exact::topk(&data, DIM, Metric::L2, q, 10);
        let ids: Vec<VectorId> = want.iter().map(|(i, _)| VectorId::U64(*i as u64)).collect();
        assert_eq!(
            got.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
            ids
        );
        for (h, (_, d)) in got.hits.iter().zip(&want) {
            assert!((h.distance - d).abs() < 1e-4);
        }
        let d = e.search("c", q, SearchParams::k(10)).await.unwrap();
        let found: Vec<_> = d.hits.iter().map(|h| h.id.clone()).collect();
        recall += exact::recall(&found, &ids);
    }
    assert!(
        recall / 20.0 >= 0.95,
        "recall at defaults {}",
        recall / 20.0
    );
    // Batch search equals single searches.
    let qs: Vec<Vec<f32>> = queries.chunks(DIM).map(|q| q.to_vec()).collect();
    let batch = e.batch_search("c", &qs, SearchParams::k(5)).await.unwrap();
    for (q, b) in qs.iter().zip(&batch) {
        assert_eq!(
            b.hits,
            e.search("c", q, SearchParams::k(5)).await.unwrap().hits
        );
    }
    let info = e.describe("c").unwrap();
    assert_eq!(
        (info.partitions_warm, info.vectors_cached, info.source_rows),
        (3, 3000, 3000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_collections_answer_from_new_data_on_the_next_query() {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    let g = gen();
    m.add(rows(0, &g.sample(300, 1))).unwrap();
    e.register_source("m", m.clone()).unwrap();
    e.create_collection(
        CollectionSpec::new("f", "m", DIM)
            .partitions(1)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    let target = vec![9.0f32; DIM];
    let r1 = e.search("f", &target, SearchParams::k(1)).await.unwrap();
    assert_ne!(r1.hits[0].id, VectorId::from("new"));
    m.add(vec![(VectorId::from("new"), target.clone())])
        .unwrap();
    let r2 = e.search("f", &target, SearchParams::k(1)).await.unwrap();
    assert_eq!(r2.hits[0].id, VectorId::from("new"));
    assert_eq!(r2.hits[0].distance, 0.0);
    assert_ne!(r1.generation, r2.generation);
    assert!(
        e.cache_stats().incremental_builds >= 1,
        "an add extends partitions: {:?}",
        e.cache_stats()
    );
    m.delete(&[VectorId::from("new")]);
    let r3 = e.search("f", &target, SearchParams::k(1)).await.unwrap();
    assert_eq!(r3.hits[0].id, r1.hits[0].id);
    // Ids at the edges of their types survive the round trip.
    m.add(vec![
        (VectorId::U64(u64::MAX), target.clone()),
        (VectorId::from("ß/ü"), vec![8.9; DIM]),
    ])
    .unwrap();
    let r4 = e.search("f", &target, SearchParams::k(2)).await.unwrap();
    assert_eq!(r4.hits[0].id, VectorId::U64(u64::MAX));
    assert_eq!(r4.hits[1].id, VectorId::from("ß/ü"));
}

/// A partition that held nothing gets a full build when its first rows
/// arrive: appending them to the empty index would serve them through one
/// untrained list (a zero centroid), where a row can miss its own vector.
#[tokio::test]
async fn an_empty_partition_gets_a_full_build_when_rows_arrive() {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    e.register_source("m", m.clone()).unwrap();
    e.create_collection(
        CollectionSpec::new("e", "m", DIM)
            .partitions(1)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    let probe = vec![0.5f32; DIM];
    let empty = e.search("e", &probe, SearchParams::k(3)).await.unwrap();
    assert!(empty.hits.is_empty(), "{:?}", empty.hits);

    let v = gen().sample(2000, 21);
    m.add(rows(0, &v)).unwrap();
    for (i, x) in v.chunks(DIM).enumerate().step_by(7) {
        let got = e.search("e", x, SearchParams::k(1)).await.unwrap();
        assert_eq!(got.hits[0].id, VectorId::U64(i as u64), "row {i}");
    }
    let stats = e.cache_stats();
    assert_eq!(stats.incremental_builds, 0, "{stats:?}");
    assert!(stats.builds >= 2, "{stats:?}");
}

/// A source whose listing waits while its gate is closed: a load of a new
/// generation that takes as long as the test wants, while the generation
/// check stays instant. While `broken` is set the listing panics instead,
/// as a source library with an `unwrap` on table data would.
#[derive(Debug)]
struct Gated {
    inner: Arc<MemorySource>,
    open: tokio::sync::watch::Sender<bool>,
    /// Generation checks wait while this is `false` (a lake whose
    /// listing hangs: a 503 retried, a stalled request).
    answering: tokio::sync::watch::Sender<bool>,
    broken: std::sync::atomic::AtomicBool,
}

impl Gated {
    fn new(inner: Arc<MemorySource>) -> Arc<Self> {
        Arc::new(Gated {
            inner,
            open: tokio::sync::watch::Sender::new(true),
            answering: tokio::sync::watch::Sender::new(true),
            broken: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl rulake_lake::Source for Gated {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn generation(&self) -> rulake_lake::Result<rulake_types::Generation> {
        let mut answering = self.answering.subscribe();
        let _ = answering.wait_for(|a| *a).await;
        self.inner.generation().await
    }

    async fn list_units(&self) -> rulake_lake::Result<rulake_lake::Listing> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("listing blew up");
        }
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        self.inner.list_units().await
    }

    fn read_unit(&self, unit: &rulake_lake::Unit, dim: usize) -> rulake_lake::RowStream {
        self.inner.read_unit(unit, dim)
    }
}

/// An engine with a `fresh` collection "f" of two partitions over `n` rows
/// of a gated memory source.
fn fresh_over_gated(n: usize) -> (RuLake, Arc<MemorySource>, Arc<Gated>) {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    m.add(rows(0, &gen().sample(n, 1))).unwrap();
    let gated = Gated::new(m.clone());
    e.register_source("m", gated.clone()).unwrap();
    e.create_collection(
        CollectionSpec::new("f", "m", DIM)
            .partitions(2)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    (e, m, gated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_collections_answer_from_the_warm_generation_when_a_load_outlasts_the_deadline() {
    let (e, m, gated) = fresh_over_gated(300);
    let target = vec![9.0f32; DIM];
    let within = |ms| Some(std::time::Instant::now() + Duration::from_millis(ms));
    let old = e
        .search_until("f", &target, exhaustive(3), within(5_000))
        .await
        .unwrap();
    assert_eq!(old.loading, None);

    // The source moves on; loading the new generation blocks.
    gated.open.send_replace(false);
    m.add(vec![(VectorId::from("new"), target.clone())])
        .unwrap();
    for _ in 0..2 {
        // The first query starts the refresh, the second joins it: both
        // answer from the old generation and name the one loading.
        let r = e
            .search_until("f", &target, exhaustive(3), within(300))
            .await
            .unwrap();
        assert_eq!(r.generation, old.generation);
        assert_eq!(r.hits, old.hits);
        let loading = r.loading.expect("a newer generation is loading");
        assert_ne!(loading, old.generation);
        let b = e
            .batch_search_until(
                "f",
                std::slice::from_ref(&target),
                exhaustive(3),
                within(300),
            )
            .await
            .unwrap();
        assert_eq!(
            (&b[0].generation, &b[0].loading),
            (&old.generation, &Some(loading))
        );
    }
    assert_eq!(
        e.describe("f").unwrap().generation,
        Some(old.generation.clone())
    );

    // The load finishes in the background; a later query gets it.
    gated.open.send_replace(true);
    let start = std::time::Instant::now();
    let new = loop {
        let r = e
            .search_until("f", &target, exhaustive(3), within(300))
            .await
            .unwrap();
        if r.loading.is_none() && r.generation != old.generation {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new generation never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(new.hits[0].id, VectorId::from("new"));
    assert_eq!(new.hits[0].distance, 0.0);
}

/// A lake that is slow to say its generation (its client retrying 503s
/// for seconds) must not fail a `fresh` query that has a generation warm:
/// the check is given until the query must answer, like a load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_collections_answer_by_the_deadline_when_the_lake_is_slow_to_say_its_generation() {
    let (e, m, gated) = fresh_over_gated(300);
    let target = vec![9.0f32; DIM];
    let within = |ms| Some(std::time::Instant::now() + Duration::from_millis(ms));
    let old = e
        .search_until("f", &target, exhaustive(3), within(5_000))
        .await
        .unwrap();
    gated.answering.send_replace(false);
    m.add(vec![(VectorId::from("new"), target.clone())])
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        e.search_until("f", &target, exhaustive(3), within(1_000)),
    )
    .await
    .expect("a fresh search waited on the lake past its deadline")
    .unwrap();
    assert_eq!((r.generation, r.hits), (old.generation.clone(), old.hits));

    // The lake answers again: the next query finds the new generation.
    gated.answering.send_replace(true);
    let r = e
        .search_until("f", &target, exhaustive(3), within(5_000))
        .await
        .unwrap();
    assert_ne!(r.generation, old.generation);
    assert_eq!(r.hits[0].id, VectorId::from("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_leaves_the_previous_generation_serving() {
    let (e, m, src) = fresh_over_gated(200);
    let target = vec![9.0f32; DIM];
    let good = e.search("f", &target, exhaustive(3)).await.unwrap();
    src.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    m.add(vec![(VectorId::from("new"), target.clone())])
        .unwrap();
    // Twice: the first failure must not leave a refresh marked running.
    for _ in 0..2 {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            e.search("f", &target, exhaustive(3)),
        )
        .await
        .expect("a search waited on a refresh that had died");
        assert_eq!(r.unwrap().hits, good.hits);
        let errors = e.cache_stats().errors;
        assert!(errors["f"].contains("listing blew up"), "{errors:?}");
    }
    // Once the source heals, the next search loads the new generation.
    src.broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = e.search("f", &target, exhaustive(3)).await.unwrap();
    assert_eq!(r.hits[0].id, VectorId::from("new"));
    assert!(!e.cache_stats().errors.contains_key("f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_collections_catch_up_within_their_staleness_bound() {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    m.add(rows(0, &gen().sample(200, 1))).unwrap();
    e.register_source("m", m.clone()).unwrap();
    let bound = Duration::from_millis(300);
    e.create_collection(
        CollectionSpec::new("ev", "m", DIM).consistency(Consistency::Eventual {
            max_staleness: bound,
        }),
    )
    .unwrap();
    let target = vec![7.0f32; DIM];
    e.search("ev", &target, SearchParams::k(1)).await.unwrap();
    m.add(vec![(VectorId::from("late"), target.clone())])
        .unwrap();
    let changed = std::time::Instant::now();
    let mut seen_at = None;
    while changed.elapsed() < bound * 3 {
        let r = e.search("ev", &target, SearchParams::k(1)).await.unwrap();
        if r.hits[0].id == VectorId::from("late") {
            seen_at = Some(changed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen_at = seen_at.expect("new data never became visible");
    // Never older than the bound (plus scheduling slack of one poll).
    assert!(
        seen_at <= bound + Duration::from_millis(100),
        "visible after {seen_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_search_equals_searching_the_union() {
    let g = gen();
    let (a, b) = (g.sample(400, 1), g.sample(300, 2));
    let e = RuLake::new(CacheConfig::default());
    let (ma, mb, mu) = (
        MemorySource::new("a", DIM),
        MemorySource::new("b", DIM),
        MemorySource::new("u", DIM),
    );
    ma.add(rows(0, &a)).unwrap();
    mb.add(rows(1000, &b)).unwrap();
    mu.add(rows(0, &a)).unwrap();
    mu.add(rows(1000, &b)).unwrap();
    for (n, s) in [("a", ma), ("b", mb), ("u", mu)] {
        e.register_source(n, s).unwrap();
        e.create_collection(CollectionSpec::new(n, n, DIM).partitions(2))
            .unwrap();
    }
    for q in g.sample(10, 3).chunks(DIM) {
        let fed = e
            .federated_search(&["a", "b"], q, exhaustive(10))
            .await
            .unwrap();
        let union = e.search("u", q, exhaustive(10)).await.unwrap();
        assert_eq!(fed.hits.len(), 10);
        assert!(fed.hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        for (f, u) in fed.hits.iter().zip(&union.hits) {
            assert_eq!(f.id, u.id);
            assert_eq!(f.distance, u.distance);
            let from = if matches!(f.id, VectorId::U64(x) if x >= 1000) {
                "b"
            } else {
                "a"
            };
            assert_eq!(f.collection, from);
            assert_eq!(&f.generation, fed.generations.get(from).unwrap());
        }
        assert_eq!((fed.partitions_answered, fed.partitions_total), (4, 4));
    }
    // Mismatched dimension or metric is refused.
    let m = MemorySource::new("c", DIM);
    m.add(rows(0, &a)).unwrap();
    e.register_source("c", m).unwrap();
    e.create_collection(CollectionSpec::new("cos", "c", DIM).metric(Metric::Cosine))
        .unwrap();
    let err = e
        .federated_search(&["a", "cos"], &a[..DIM], SearchParams::k(3))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::FailedPrecondition(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosine_and_inner_product_rank_like_exact_scans() {
    let g = gen();
    let v = g.sample(500, 1);
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    m.add(rows(0, &v)).unwrap();
    e.register_source("m", m).unwrap();
    for metric in [Metric::Cosine, Metric::InnerProduct] {
        let name = metric.as_str();
        e.create_collection(
            CollectionSpec::new(name, "m", DIM)
                .metric(metric)
                .partitions(2),
        )
        .unwrap();
        for q in g.sample(5, 4).chunks(DIM) {
            let got = e.search(name, q, exhaustive(5)).await.unwrap();
            let want = exact::topk(&v, DIM, metric, q, 5);
            assert_eq!(
                got.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
                want.iter()
                    .map(|(i, _)| VectorId::U64(*i as u64))
                    .collect::<Vec<_>>(),
                "{metric}"
            );
            for (h, (_, d)) in got.hits.iter().zip(&want) {
                assert!(
                    (h.distance - d).abs() < 1e-4,
                    "{metric}: {} vs {d}",
                    h.distance
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_budget_evicts_and_refuses_what_cannot_fit() {
    let g = gen();
    let e = RuLake::new(CacheConfig {
        budget_bytes: 200_000,
        persist_dir: None,
    });
    for name in ["x", "y", "z"] {
        let m = MemorySource::new(name, DIM);
        m.add(rows(0, &g.sample(1000, 1))).unwrap();
        e.register_source(name, m).unwrap();
        e.create_collection(CollectionSpec::new(name, name, DIM))
            .unwrap();
    }
    let q = g.sample(1, 9);
    let first = e.search("x", &q, SearchParams::k(3)).await.unwrap();
    e.search("y", &q, SearchParams::k(3)).await.unwrap();
    e.search("z", &q, SearchParams::k(3)).await.unwrap();
    let s = e.cache_stats();
    assert!(s.evictions >= 1, "{s:?}");
    assert!(s.bytes <= s.budget_bytes, "{s:?}");
    // An evicted partition is rebuilt on demand with identical answers.
    assert_eq!(
        e.search("x", &q, SearchParams::k(3)).await.unwrap().hits,
        first.hits
    );

    let big = MemorySource::new("big", DIM);
    big.add(rows(0, &g.sample(20_000, 2))).unwrap();
    e.register_source("big", big).unwrap();
    e.create_collection(CollectionSpec::new("big", "big", DIM))
        .unwrap();
    let err = e.search("big", &q, SearchParams::k(3)).await.unwrap_err();
    assert!(matches!(err, EngineError::ResourceExhausted(_)), "{err}");
    assert!(err.to_string().contains("budget"), "{err}");
    assert!(e.cache_stats().refused >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_restart_loads_persisted_partitions_with_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    write_lake(dir.path(), 4, 400);
    let cfg = CacheConfig {
        budget_bytes: 1 << 30,
        persist_dir: Some(cache_dir.path().to_path_buf()),
    };
    let queries = gen().sample(10, 3);
    let before = {
        let e = parquet_engine(dir.path(), cfg.clone());
        e.create_collection(CollectionSpec::new("c", "lake", DIM).partitions(2))
            .unwrap();
        let mut out = Vec::new();
        for q in queries.chunks(DIM) {
            out.push(e.search("c", q, SearchParams::k(5)).await.unwrap());
        }
        // Persistence runs in the background; wait for both sidecars.
        for _ in 0..200 {
            if (0..2).all(|p| cache_dir.path().join(format!("c/p{p}.json")).exists()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out
    };
    let e = parquet_engine(dir.path(), cfg);
    e.create_collection(CollectionSpec::new("c", "lake", DIM).partitions(2))
        .unwrap();
    for (q, b) in queries.chunks(DIM).zip(&before) {
        assert_eq!(&e.search("c", q, SearchParams::k(5)).await.unwrap(), b);
    }
    let s = e.cache_stats();
    assert_eq!((s.disk_loads, s.builds), (2, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_unit_never_replaces_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path(), 2, 200);
    let e = parquet_engine(dir.path(), CacheConfig::default());
    e.create_collection(CollectionSpec::new("c", "lake", DIM).consistency(Consistency::Fresh))
        .unwrap();
    let q = gen().sample(1, 3);
    let good = e.search("c", &q, SearchParams::k(5)).await.unwrap();
    // A file with the wrong dimension lands in the lake.
    write_parquet_file(
        &dir.path().join("zz-bad.parquet"),
        IdsRef::U64(&[77]),
        &[1.0; DIM + 1],
        DIM + 1,
        1,
    )
    .unwrap();
    let after = e.search("c", &q, SearchParams::k(5)).await.unwrap();
    assert_eq!(after, good, "previous generation keeps serving");
    let s = e.cache_stats();
    let err = s.errors.get("c").expect("error reported in stats");
    assert!(
        err.contains("zz-bad.parquet") && err.contains("dimensions"),
        "{err}"
    );
    assert!(e.describe("c").unwrap().last_error.is_some());
    // A duplicate id is named with both places it was found.
    std::fs::remove_file(dir.path().join("zz-bad.parquet")).unwrap();
    write_parquet_file(
        &dir.path().join("zz-dup.parquet"),
        IdsRef::U64(&[3]),
        &[1.0; DIM],
        DIM,
        1,
    )
    .unwrap();
    let err = e.refresh("c").await.unwrap_err().to_string();
    assert!(
        err.contains("duplicate id 3") && err.contains("zz-dup.parquet"),
        "{err}"
    );
    assert_eq!(
        e.search("c", &q, SearchParams::k(5)).await.unwrap().hits,
        good.hits
    );
    // Fixed lake: the error clears.
    std::fs::remove_file(dir.path().join("zz-dup.parquet")).unwrap();
    e.search("c", &q, SearchParams::k(5)).await.unwrap();
    assert!(e.cache_stats().errors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_arguments() {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    m.add(rows(0, &gen().sample(50, 1))).unwrap();
    e.register_source("m", m).unwrap();
    assert!(matches!(
        e.create_collection(CollectionSpec::new("bad name", "m", DIM)),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.create_collection(CollectionSpec::new("c", "nope", DIM)),
        Err(EngineError::NotFound { .. })
    ));
    assert!(matches!(
        e.create_collection(CollectionSpec::new("c", "m", DIM).partitions(0)),
        Err(EngineError::InvalidArgument(_))
    ));
    e.create_collection(CollectionSpec::new("c", "m", DIM))
        .unwrap();
    assert!(matches!(
        e.create_collection(CollectionSpec::new("c", "m", DIM)),
        Err(EngineError::AlreadyExists { .. })
    ));
    let q = vec![0.0; DIM];
    assert!(matches!(
        e.search("c", &q[..3], SearchParams::k(1)).await,
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.search("c", &q, SearchParams::k(0)).await,
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.search("c", &q, SearchParams::k(MAX_K + 1)).await,
        Err(EngineError::InvalidArgument(_))
    ));
    let mut nan = q.clone();
    nan[0] = f32::NAN;
    assert!(matches!(
        e.search("c", &nan, SearchParams::k(1)).await,
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.search("missing", &q, SearchParams::k(1)).await,
        Err(EngineError::NotFound { .. })
    ));
    // k larger than the collection returns what exists.
    assert_eq!(
        e.search("c", &q, SearchParams::k(500))
            .await
            .unwrap()
            .hits
            .len(),
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_fills_only_free_budget_and_never_evicts() {
    let g = gen();
    let engine = |budget_bytes| {
        let e = RuLake::new(CacheConfig {
            budget_bytes,
            persist_dir: None,
        });
        for name in ["x", "y"] {
            // Eight units, so that every partition holds some.
            let m = MemorySource::new(name, DIM);
            for u in 0..8 {
                m.add(rows(u * 250, &g.sample(250, u + 1))).unwrap();
            }
            e.register_source(name, m).unwrap();
            e.create_collection(CollectionSpec::new(name, name, DIM).partitions(4))
                .unwrap();
        }
        e
    };
    // A budget of one collection and a half: one fits with room to load
    // into, the two do not.
    let probe = engine(1 << 30);
    probe.warm("x").await.unwrap();
    let e = engine(probe.cache_stats().bytes * 3 / 2);
    let warm = |name: &str| {
        e.partition_states(name)
            .unwrap()
            .iter()
            .filter(|p| p.warm)
            .count()
    };
    let q = g.sample(1, 9);
    // The two do not fit together: querying one evicts the other.
    e.search("y", &q, SearchParams::k(3)).await.unwrap();
    e.search("x", &q, SearchParams::k(3)).await.unwrap();
    assert_eq!(warm("x"), 4);
    assert!(warm("y") < 4, "{:?}", e.cache_stats());

    // Prefetching y loads what fits the free budget and nothing more:
    // y stays partly cold, x warm.
    let before = e.cache_stats();
    e.prefetch("y").await.unwrap();
    let after = e.cache_stats();
    assert_eq!(after.evictions, before.evictions, "{after:?}");
    assert_eq!(warm("x"), 4);
    assert!(warm("y") < 4, "{after:?}");
    assert!(after.bytes <= after.budget_bytes, "{after:?}");
    // A query still loads what it needs, evicting the least recently used.
    let hits = e.search("y", &q, SearchParams::k(3)).await.unwrap().hits;
    assert_eq!(hits.len(), 3);
    assert!(e.cache_stats().evictions > after.evictions);

    // With the budget free, prefetch loads everything it serves.
    e.drop_collection("y").unwrap();
    e.prefetch("x").await.unwrap();
    assert_eq!(warm("x"), 4, "{:?}", e.cache_stats());
}
