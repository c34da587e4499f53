//! Live recall measurement: with every query sampled, the engine's estimate
//! is exactly the recall an offline exact computation gives for the same
//! queries; sampling, the scan budget and the queue bound do what they say.

use rulake_datasets::ClusteredGaussian;
use rulake_engine::*;
use rulake_index::exact;
use rulake_lake::MemorySource;
use rulake_types::{Metric, SearchParams, VectorId};
use std::time::{Duration, Instant};

const DIM: usize = 16;
const N: usize = 4000;

fn engine(recall: RecallConfig, data: &[f32]) -> RuLake {
    engine_with(
        recall,
        data,
        CollectionSpec::new("c", "lake", DIM).partitions(3),
    )
}

/// An engine whose memory source `lake` holds `data` (row `i` has id `i`)
/// and whose collection is `spec`.
fn engine_with(recall: RecallConfig, data: &[f32], spec: CollectionSpec) -> RuLake {
    let dim = spec.dim;
    let e = RuLake::with_recall(CacheConfig::default(), recall);
    let m = MemorySource::new("lake", dim);
    m.add(
        data.chunks(dim)
            .enumerate()
            .map(|(i, x)| (VectorId::U64(i as u64), x.to_vec())),
    )
    .unwrap();
    e.register_source("lake", m).unwrap();
    e.create_collection(spec).unwrap();
    e
}

/// Few probes and little reranking, so recall is well below 1 and the
/// comparison means something.
fn coarse(k: usize) -> SearchParams {
    SearchParams {
        k,
        nprobe: Some(1),
        rerank: Some(1),
    }
}

async fn wait_measured(e: &RuLake, n: u64) {
    let t = Instant::now();
    while e.recall_stats().measured + e.recall_stats().failed < n {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            e.recall_stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_equals_offline_exact_recall_of_the_sampled_queries() {
    let g = ClusteredGaussian::new(DIM, 10, 0.2, 5);
    let data = g.sample(N, 1);
    let e = engine(
        RecallConfig {
            sample_fraction: 1.0,
            queue: 1024,
            max_scans_per_second: f64::INFINITY,
            window: 1000,
        },
        &data,
    );
    let k = 10;
    let queries = g.sample(60, 2);
    let mut offline = Vec::new();
    for (i, q) in queries.chunks(DIM).enumerate() {
        // Single searches and a batch both feed the estimate.
        let hits = if i % 2 == 0 {
            e.search("c", q, coarse(k)).await.unwrap().hits
        } else {
            e.batch_search("c", &[q.to_vec()], coarse(k))
                .await
                .unwrap()
                .remove(0)
                .hits
        };
        let found: Vec<VectorId> = hits.into_iter().map(|h| h.id).collect();
        let truth: Vec<VectorId> = exact::topk(&data, DIM, Metric::L2, q, k)
            .into_iter()
            .map(|(row, _)| VectorId::U64(row as u64))
            .collect();
        offline.push(exact::recall(&found, &truth));
    }
    wait_measured(&e, offline.len() as u64).await;
    let stats = e.recall_stats();
    assert_eq!(stats.sampled, offline.len() as u64, "{stats:?}");
    assert_eq!(stats.measured, offline.len() as u64, "{stats:?}");
    assert_eq!(
        (stats.failed, stats.dropped_budget, stats.dropped_queue_full),
        (0, 0, 0)
    );
    let expected = offline.iter().sum::<f64>() / offline.len() as f64;
    assert!(
        expected < 0.999,
        "the coarse search should miss neighbours: {expected}"
    );
    let est = &e.recall_estimates()["c"];
    assert_eq!(est.samples, offline.len());
    assert!(
        (est.recall - expected).abs() < 1e-12,
        "{} vs {expected}",
        est.recall
    );

    let q = e.query_stats();
    assert_eq!(q.queries, offline.len() as u64);
    assert_eq!(q.partitions_searched, 3 * offline.len() as u64);
    assert_eq!(q.partial_answers, 0);

    e.drop_collection("c").unwrap();
    assert!(e.recall_estimates().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_fraction_budget_and_window_bound_the_work() {
    let g = ClusteredGaussian::new(DIM, 10, 0.2, 5);
    let data = g.sample(N, 1);
    let q = g.sample(1, 3);

    // A quarter of the queries, deterministically.
    let e = engine(
        RecallConfig {
            sample_fraction: 0.25,
            queue: 1024,
            max_scans_per_second: f64::INFINITY,
            window: 5,
        },
        &data,
    );
    for _ in 0..40 {
        e.search("c", &q, coarse(5)).await.unwrap();
    }
    wait_measured(&e, 10).await;
    assert_eq!(e.recall_stats().sampled, 10);
    let est = &e.recall_estimates()["c"];
    assert_eq!((est.samples, est.measured), (5, 10));

    // Zero disables.
    e.set_recall_config(RecallConfig {
        sample_fraction: 0.0,
        ..e.recall_config()
    });
    for _ in 0..10 {
        e.search("c", &q, coarse(5)).await.unwrap();
    }
    assert_eq!(e.recall_stats().sampled, 10);

    // A spent budget drops samples before they cost anything: the bucket
    // holds one scan, and refills at one per 1,000 s.
    let e = engine(
        RecallConfig {
            sample_fraction: 1.0,
            queue: 1024,
            max_scans_per_second: 0.001,
            window: 100,
        },
        &data,
    );
    for _ in 0..20 {
        e.search("c", &q, coarse(5)).await.unwrap();
    }
    wait_measured(&e, 1).await;
    let s = e.recall_stats();
    assert_eq!(
        (s.sampled, s.dropped_budget, s.measured),
        (20, 19, 1),
        "{s:?}"
    );
}

/// An engine over `data` (`dim` wide) with one collection of `partitions`
/// partitions aiming at `target`.
fn target_engine(
    recall: RecallConfig,
    data: &[f32],
    dim: usize,
    partitions: u32,
    target: f32,
) -> RuLake {
    let spec = CollectionSpec::new("c", "lake", dim)
        .metric(Metric::Cosine)
        .partitions(partitions)
        .target_recall(target);
    engine_with(recall, data, spec)
}

/// Mean recall@10 of the engine's defaults on `queries`, by id.
async fn default_recall(e: &RuLake, data: &[f32], dim: usize, queries: &[f32]) -> f64 {
    let mut sum = 0.0;
    for q in queries.chunks(dim) {
        let truth: Vec<VectorId> = exact::topk(data, dim, Metric::Cosine, q, 10)
            .into_iter()
            .map(|(i, _)| VectorId::U64(i as u64))
            .collect();
        let got: Vec<VectorId> = e
            .search("c", q, SearchParams::k(10))
            .await
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        sum += exact::recall(&got, &truth);
    }
    sum / (queries.len() / dim) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_reach_the_declared_recall_on_held_out_queries() {
    // Wide vectors near a low-dimensional manifold: the data on which a
    // fixed default nprobe falls short.
    const D: usize = 96;
    let g = rulake_datasets::LowRank::new(D, 12, 200, 9);
    let data = rulake_datasets::Generator::sample(&g, 20_000, 1);
    let queries = rulake_datasets::Generator::sample(&g, 200, 2);
    let off = RecallConfig {
        sample_fraction: 0.0,
        ..RecallConfig::default()
    };
    for (partitions, target) in [(1, 0.9f32), (1, 0.97), (3, 0.95)] {
        let e = target_engine(off, &data, D, partitions, target);
        let r = default_recall(&e, &data, D, &queries).await;
        let (_, parts) = e.partitions("c").await.unwrap();
        let tuned: Vec<_> = parts.iter().map(|p| p.index.tuning().unwrap()).collect();
        assert!(
            r >= target as f64,
            "P = {partitions}, target {target}: recall {r}, calibration {tuned:?}"
        );
    }
}

/// Every query measured, without a budget.
fn every_query() -> RecallConfig {
    RecallConfig {
        sample_fraction: 1.0,
        queue: 1024,
        max_scans_per_second: f64::INFINITY,
        window: 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_harder_than_the_rows_raise_the_probes() {
    // Queries from elsewhere in the space than the rows: calibration on
    // the rows says little about them, the live measurement does.
    const D: usize = 32;
    let g = ClusteredGaussian::new(D, 40, 0.1, 3);
    let data = g.sample(8_000, 1);
    let far = ClusteredGaussian::new(D, 40, 0.6, 4).sample(400, 2);
    let e = target_engine(every_query(), &data, D, 1, 0.99);
    let before = default_recall(&e, &data, D, &far[..100 * D]).await;
    assert!(
        before < 0.98,
        "the far queries must be harder than the rows: {before}"
    );
    for q in far.chunks(D) {
        e.search("c", q, SearchParams::k(10)).await.unwrap();
    }
    wait_measured(&e, 500).await;
    let factor = e.describe("c").unwrap().probe_factor;
    assert!(
        factor > 1.0,
        "recall {before} below 0.99 should raise the probes"
    );
    let after = default_recall(&e, &data, D, &far[..100 * D]).await;
    assert!(after > before, "{before} -> {after} at factor {factor}");

    // A query naming its own nprobe says nothing about the defaults.
    let e = target_engine(every_query(), &data, D, 1, 0.99);
    for q in far.chunks(D) {
        let p = SearchParams {
            k: 10,
            nprobe: Some(1),
            rerank: None,
        };
        e.search("c", q, p).await.unwrap();
    }
    wait_measured(&e, 400).await;
    assert_eq!(e.describe("c").unwrap().probe_factor, 1.0);
}
