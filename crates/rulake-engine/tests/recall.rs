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
    let e = RuLake::with_recall(CacheConfig::default(), recall);
    let m = MemorySource::new("lake", DIM);
    m.add(
        data.chunks(DIM)
            .enumerate()
            .map(|(i, x)| (VectorId::U64(i as u64), x.to_vec())),
    )
    .unwrap();
    e.register_source("lake", m).unwrap();
    e.create_collection(CollectionSpec::new("c", "lake", DIM).partitions(3))
        .unwrap();
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
