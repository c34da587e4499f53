//! Bounded work per search: a deadline stops CPU work already running
//! (one query, a batch, a federation, a shard's scan), a federation names
//! each collection once however often it is listed, and `nprobe` / `rerank`
//! beyond what exists are clamped, not obeyed.

use rulake_datasets::ClusteredGaussian;
use rulake_engine::*;
use rulake_lake::MemorySource;
use rulake_types::{SearchParams, StatusCode, VectorId};
use std::time::{Duration, Instant};

const DIM: usize = 32;

fn rows(start: u64, v: &[f32]) -> Vec<(VectorId, Vec<f32>)> {
    v.chunks(DIM)
        .enumerate()
        .map(|(i, x)| (VectorId::U64(start + i as u64), x.to_vec()))
        .collect()
}

fn exhaustive(k: usize) -> SearchParams {
    SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(MAX_RERANK),
    }
}

/// An engine holding collections `names` of `n` rows in `partitions`
/// each, loaded (the default consistency is eventual: no query waits on
/// the source afterwards).
async fn engine(names: &[&str], n: usize, partitions: u32) -> RuLake {
    let e = RuLake::new(CacheConfig::default());
    for (i, name) in names.iter().enumerate() {
        add(&e, name, n, partitions, i as u64 + 1).await;
    }
    e
}

/// Collection `name` of `n` rows (drawn with `seed`) in `partitions`,
/// loaded.
async fn add(e: &RuLake, name: &str, n: usize, partitions: u32, seed: u64) {
    let g = ClusteredGaussian::new(DIM, 16, 0.3, 7);
    let m = MemorySource::new(name, DIM);
    m.add(rows(0, &g.sample(n, seed))).unwrap();
    e.register_source(name, m).unwrap();
    e.create_collection(CollectionSpec::new(name, name, DIM).partitions(partitions))
        .unwrap();
    e.warm(name).await.unwrap();
}

fn queries(n: usize) -> Vec<Vec<f32>> {
    ClusteredGaussian::new(DIM, 16, 0.3, 7)
        .sample(n, 99)
        .chunks(DIM)
        .map(<[f32]>::to_vec)
        .collect()
}

fn is_deadline<T: std::fmt::Debug>(r: Result<T>) -> bool {
    match r {
        Err(e @ EngineError::DeadlineExceeded(_)) => {
            assert_eq!(e.code(), StatusCode::DeadlineExceeded);
            true
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_deadline_stops_every_kind_of_search() {
    let e = engine(&["a", "b"], 4000, 3).await;
    let q = &queries(1)[0];
    let past = Some(Instant::now() - Duration::from_millis(1));
    // With no deadline (or a distant one) the same searches answer.
    let later = Some(Instant::now() + Duration::from_secs(600));
    e.search_until("a", q, exhaustive(10), later).await.unwrap();

    assert!(is_deadline(
        e.search_until("a", q, exhaustive(10), past).await
    ));
    assert!(is_deadline(
        e.batch_search_until("a", &queries(8), exhaustive(10), past)
            .await
    ));
    assert!(is_deadline(
        e.federated_search_until(&["a", "b"], q, exhaustive(10), past)
            .await
    ));
    // A shard node's scan of some partitions (its deadline comes from the
    // coordinator's grpc-timeout).
    assert!(is_deadline(
        e.scan("a", &[0, 2], &queries(2), exhaustive(10), 0, past)
            .await
    ));
    e.scan("a", &[0, 2], &queries(2), exhaustive(10), 0, later)
        .await
        .unwrap();
}

/// A batch of exhaustive queries takes far longer than its deadline: the
/// search stops at the deadline with `DeadlineExceeded` instead of running
/// every query to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_mid_batch_stops_the_batch() {
    let e = engine(&["big"], 20_000, 2).await;
    let qs = queries(1024);
    // How long the whole batch takes here, with no deadline.
    let t = Instant::now();
    let full = e.batch_search("big", &qs, exhaustive(100)).await.unwrap();
    let took = t.elapsed();
    assert_eq!(full.len(), qs.len());
    // A deadline a tenth of the way in: the batch cannot finish by it.
    let by = Instant::now() + took / 10;
    assert!(is_deadline(
        e.batch_search_until("big", &qs, exhaustive(100), Some(by))
            .await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_named_many_times_is_searched_once() {
    let e = engine(&["a", "b"], 1000, 2).await;
    let q = &queries(1)[0];
    let before = e.query_stats().partitions_searched;
    let once = e
        .federated_search(&["a", "b"], q, exhaustive(10))
        .await
        .unwrap();
    let mut names = vec!["a"; 20_000];
    names.push("b");
    names.extend(std::iter::repeat_n("b", 100));
    let many = e.federated_search(&names, q, exhaustive(10)).await.unwrap();
    assert_eq!((once.partitions_answered, once.partitions_total), (4, 4));
    assert_eq!(
        (many.partitions_answered, many.partitions_total),
        (once.partitions_answered, once.partitions_total)
    );
    assert_eq!(many.hits, once.hits);
    assert_eq!(many.generations, once.generations);
    // Each federation searched four partitions, not 20,101 × 2.
    assert_eq!(e.query_stats().partitions_searched - before, 8);
}

/// `nprobe` past the lists that exist probes them all; `rerank` past
/// `MAX_RERANK` is taken as `MAX_RERANK`: the plan each partition is
/// searched with never carries more, and the answer is the one at the
/// limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nprobe_and_rerank_are_clamped_to_what_exists() {
    let e = engine(&["one"], 3000, 1).await;
    add(&e, "split", 3000, 3, 2).await;
    let q = &queries(1)[0];
    let max = u32::MAX as usize;
    let params = |nprobe: usize, rerank: usize| SearchParams {
        k: 10,
        nprobe: Some(nprobe),
        rerank: Some(rerank),
    };

    // One partition: the plan carries the limits themselves.
    let (_, parts) = e.partitions("one").await.unwrap();
    let nlist = parts[0].index.nlist();
    let plan = |nprobe, rerank| partition_params(&parts, params(nprobe, rerank), 1.0)[0];
    assert_eq!(plan(nlist, MAX_RERANK).nprobe, Some(nlist));
    assert_eq!(plan(nlist, MAX_RERANK).rerank, Some(MAX_RERANK));
    // One past them is clamped, as is the largest a request can carry.
    for (nprobe, rerank) in [(nlist + 1, MAX_RERANK + 1), (max, max)] {
        assert_eq!(plan(nprobe, rerank).nprobe, Some(nlist));
        assert_eq!(plan(nprobe, rerank).rerank, Some(MAX_RERANK));
    }

    // Split: every partition gets its share of the limits, not of more.
    let (_, parts) = e.partitions("split").await.unwrap();
    let rows: usize = parts.iter().map(|p| p.index.len()).sum();
    let lists = rulake_index::default_nlist(rows);
    let at_limit = partition_params(&parts, params(lists, MAX_RERANK), 1.0);
    assert_eq!(
        partition_params(&parts, params(lists + 1, MAX_RERANK + 1), 1.0),
        at_limit
    );
    assert_eq!(partition_params(&parts, params(max, max), 1.0), at_limit);

    // And such a search answers as the one at the limits does.
    for (name, lists) in [("one", nlist), ("split", lists)] {
        assert_eq!(
            e.search(name, q, params(max, max)).await.unwrap().hits,
            e.search(name, q, params(lists, MAX_RERANK))
                .await
                .unwrap()
                .hits
        );
    }
}

/// A shard node that has just gained a partition (a dead replica's) loads
/// it in the background; a scan of the partitions it has warm must not wait
/// for that load (it once did, stalling every query on the surviving
/// replicas for as long as the new partitions took to build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_loads_only_the_partitions_it_asks_for() {
    let n = 4000;
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("a", DIM);
    m.add(rows(
        0,
        &ClusteredGaussian::new(DIM, 16, 0.3, 7).sample(n, 1),
    ))
    .unwrap();
    e.register_source("a", m).unwrap();
    e.create_collection(CollectionSpec::new("a", "a", DIM).partitions(4))
        .unwrap();
    e.set_owned("a", Some([0, 1].into())).unwrap();
    e.warm("a").await.unwrap();
    let warm = |e: &RuLake| -> Vec<(u32, bool)> {
        e.partition_states("a")
            .unwrap()
            .iter()
            .map(|p| (p.partition, p.warm))
            .collect()
    };
    assert_eq!(warm(&e), [(0, true), (1, true)]);

    e.set_owned("a", Some([0, 1, 2].into())).unwrap();
    let q = queries(2);
    e.scan("a", &[0, 1], &q, exhaustive(10), n as u64, None)
        .await
        .unwrap();
    assert_eq!(warm(&e), [(0, true), (1, true), (2, false)]);
    // Asked for, it loads.
    e.scan("a", &[2], &q, exhaustive(10), n as u64, None)
        .await
        .unwrap();
    assert_eq!(warm(&e), [(0, true), (1, true), (2, true)]);
}

/// A lookup (which ids a delete tombstones) of a partition this node no
/// longer serves is refused, not answered "absent": the coordinator routed
/// it under an older placement, and an empty answer made it acknowledge a
/// delete that wrote no tombstone (found by `chaos/run --scenario
/// partition-halves`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_of_a_partition_not_served_here_is_refused() {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("a", DIM);
    m.add(rows(
        0,
        &ClusteredGaussian::new(DIM, 16, 0.3, 7).sample(400, 1),
    ))
    .unwrap();
    e.register_source("a", m).unwrap();
    e.create_collection(CollectionSpec::new("a", "a", DIM).partitions(4))
        .unwrap();
    let all: std::collections::HashSet<VectorId> = (0..400).map(VectorId::U64).collect();
    let found = e.lookup("a", &[0, 1, 2, 3], &all).await.unwrap();
    assert_eq!(
        found.len(),
        400,
        "every row is in one of the four partitions"
    );

    e.set_owned("a", Some([0, 1].into())).unwrap();
    let err = e.lookup("a", &[1, 2], &all).await.unwrap_err();
    assert_eq!(err.code(), StatusCode::Unavailable, "{err}");
    assert!(
        matches!(&err, EngineError::NotServed { partitions, .. } if partitions == &[2]),
        "{err}"
    );
    // The partitions it does serve still answer (whatever rows they hold).
    e.lookup("a", &[0, 1], &all).await.unwrap();
}
