//! The distributed query path as real processes on loopback: three
//! `rulake meta` members, `rulake shard` nodes and `rulake coordinator`s,
//! under a steady query load while shard nodes are killed, added and
//! drained. The single-process engine over the same Parquet files is the
//! reference answer.

mod support;

use rulake_client::{proto, Client};
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{IdsRef, ParquetSource, ParquetSourceConfig, ID_COLUMN, VECTOR_COLUMN};
use rulake_types::SearchParams;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::distributed::Distributed;

const DIM: usize = 16;
const FILES: usize = 8;
const ROWS_PER_FILE: usize = 2_500;

/// Clustered vectors in `FILES` Parquet files of two row groups each.
fn write_lake(dir: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let centers: Vec<Vec<f32>> = (0..32)
        .map(|_| (0..DIM).map(|_| next() * 10.0).collect())
        .collect();
    for f in 0..FILES {
        let ids: Vec<u64> = (0..ROWS_PER_FILE)
            .map(|i| (f * ROWS_PER_FILE + i) as u64)
            .collect();
        let mut vectors = Vec::with_capacity(ROWS_PER_FILE * DIM);
        for i in 0..ROWS_PER_FILE {
            let c = &centers[(i * 7 + f) % centers.len()];
            vectors.extend(c.iter().map(|x| x + next() - 0.5));
        }
        rulake_lake::write_parquet_file(
            &dir.join(format!("part-{f}.parquet")),
            IdsRef::U64(&ids),
            &vectors,
            DIM,
            ROWS_PER_FILE / 2,
        )
        .unwrap();
    }
}

fn queries(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|q| {
            (0..DIM)
                .map(|d| ((q * 31 + d * 17) % 97) as f32 / 9.7)
                .collect()
        })
        .collect()
}

fn parquet_spec(name: &str, url: &str, partitions: u32, replication: u32) -> proto::CollectionSpec {
    proto::CollectionSpec {
        name: name.into(),
        source: Some(proto::Source {
            kind: Some(proto::source::Kind::Parquet(proto::ParquetSource {
                url: url.into(),
                id_column: ID_COLUMN.into(),
                vector_column: VECTOR_COLUMN.into(),
                options: Default::default(),
            })),
        }),
        dimension: DIM as u32,
        metric: proto::Metric::L2 as i32,
        partitions,
        replication_factor: replication,
        consistency: Some(proto::Consistency {
            level: Some(proto::consistency::Level::Eventual(
                proto::consistency::Eventual {
                    max_staleness_ms: 600_000,
                },
            )),
        }),
        rerank: None,
        nprobe: None,
    }
}

/// Hits as (id key, distance), the engine's id key form.
fn hits(r: &proto::SearchResponse) -> Vec<(String, f32)> {
    r.hits
        .iter()
        .map(|h| {
            let id = match h.id.as_ref().and_then(|i| i.id.as_ref()) {
                Some(proto::vector_id::Id::Num(n)) => format!("n:{n}"),
                Some(proto::vector_id::Id::Str(s)) => format!("s:{s}"),
                None => "none".into(),
            };
            (id, h.distance)
        })
        .collect()
}

/// Search until every partition answers (the cluster is still placing or
/// loading right after a create).
async fn wait_complete(c: &Client, collection: &str) {
    let q = queries(1).remove(0);
    let start = Instant::now();
    loop {
        if let Ok(r) = c.search(collection, &q, 10).await {
            if r.partitions_answered == r.partitions_total {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{collection} never answered from every partition"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts of a steady query load.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    partial: AtomicU64,
    stop: AtomicBool,
}

fn start_load(addr: &str, collection: &str) -> (Arc<Load>, tokio::task::JoinHandle<Vec<String>>) {
    let load = Arc::new(Load::default());
    let (l, addr, collection) = (load.clone(), addr.to_owned(), collection.to_owned());
    let task = tokio::spawn(async move {
        let c = Client::connect(&format!("http://{addr}")).await.unwrap();
        let qs = queries(16);
        let mut errors = Vec::new();
        let mut i = 0;
        while !l.stop.load(Ordering::SeqCst) {
            match c.search(&collection, &qs[i % qs.len()], 10).await {
                Ok(r) if r.partitions_answered < r.partitions_total => {
                    l.partial.fetch_add(1, Ordering::SeqCst);
                    errors.push(format!(
                        "partial: {}/{}",
                        r.partitions_answered, r.partitions_total
                    ));
                }
                Ok(_) => {
                    l.ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    l.failed.fetch_add(1, Ordering::SeqCst);
                    errors.push(e.to_string());
                }
            }
            i += 1;
        }
        errors
    });
    (load, task)
}

async fn stop_load(load: &Load, task: tokio::task::JoinHandle<Vec<String>>, what: &str) {
    load.stop.store(true, Ordering::SeqCst);
    let errors = task.await.unwrap();
    let ok = load.ok.load(Ordering::SeqCst);
    assert!(ok > 20, "{what}: only {ok} queries ran");
    assert!(
        errors.is_empty(),
        "{what}: {} of {} queries failed or were partial; first: {:?}",
        errors.len(),
        ok + errors.len() as u64,
        &errors[..errors.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_equals_engine_survives_a_killed_shard_and_a_coordinator_restart() {
    let lake = tempfile::tempdir().unwrap();
    write_lake(lake.path());
    let url = format!("file://{}/", lake.path().display());

    // The reference: the single-process engine over the same files.
    let engine = RuLake::new(CacheConfig::default());
    let source = ParquetSource::open(ParquetSourceConfig {
        url: url.clone(),
        id_column: ID_COLUMN.into(),
        vector_column: VECTOR_COLUMN.into(),
        options: Vec::new(),
    })
    .unwrap();
    engine.register_source("lake", Arc::new(source)).unwrap();
    engine
        .create_collection(CollectionSpec::new("docs", "lake", DIM).partitions(8))
        .unwrap();

    let mut cluster = Distributed::start(3);
    let coord = cluster.coordinator();
    let c = cluster.client(&coord).await;
    c.create_collection(parquet_spec("docs", &url, 8, 2))
        .await
        .unwrap();
    wait_complete(&c, "docs").await;

    for q in queries(40) {
        let want = engine
            .search("docs", &q, SearchParams::k(10))
            .await
            .unwrap();
        let got = c.search("docs", &q, 10).await.unwrap();
        assert_eq!(got.partitions_answered, 8);
        let want: Vec<(String, f32)> = want
            .hits
            .iter()
            .map(|h| (h.id.to_key(), h.distance))
            .collect();
        assert_eq!(hits(&got), want, "cluster and engine differ");
    }

    // Kill -9 one shard node under load: the retry/hedge path answers
    // every query in full from the other replica.
    let (load, task) = start_load(&coord, "docs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill_shard(2);
    // Past the grace period the node's partitions get new replicas.
    let start = Instant::now();
    loop {
        let st = c.cluster_status().await.unwrap();
        let replicas_ok = cluster.assignment_ok(&[1, 3], 2).await;
        if replicas_ok && st.shards.iter().any(|s| s.id == "2" && !s.live) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node 2's partitions were not re-replicated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&load, task, "shard killed").await;

    // A second coordinator routes by the same epoch and answers the same;
    // a restarted coordinator loses nothing.
    let other = cluster.coordinator();
    let c2 = cluster.client(&other).await;
    let (e1, e2) = (
        c.cluster_status().await.unwrap().assignment_epoch,
        c2.cluster_status().await.unwrap().assignment_epoch,
    );
    assert_eq!(e1, e2, "coordinators see different epochs");
    for q in queries(10) {
        let a = c.search("docs", &q, 10).await.unwrap();
        let b = c2.search("docs", &q, 10).await.unwrap();
        assert_eq!(hits(&a), hits(&b));
        assert_eq!(b.partitions_answered, 8);
    }
    c.create_alias("live", "docs").await.unwrap();
    cluster.restart_coordinator(&coord);
    let c = cluster.client(&coord).await;
    let listed = c.list_collections().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(c.list_aliases().await.unwrap().len(), 1);
    let q = queries(1).remove(0);
    wait_complete(&c, "live").await;
    let a = c.search("live", &q, 10).await.unwrap();
    let b = c2.search("docs", &q, 10).await.unwrap();
    assert_eq!(hits(&a), hits(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_and_draining_shards_under_load_moves_little_and_loses_nothing() {
    let lake = tempfile::tempdir().unwrap();
    write_lake(lake.path());
    let url = format!("file://{}/", lake.path().display());
    let mut cluster = Distributed::start(3);
    let coord = cluster.coordinator();
    let c = cluster.client(&coord).await;
    for name in ["a", "b"] {
        c.create_collection(parquet_spec(name, &url, 32, 1))
            .await
            .unwrap();
        wait_complete(&c, name).await;
    }
    let before = cluster.assignment().await;

    // Join: a fourth node takes about a quarter of the partitions.
    let (load, task) = start_load(&coord, "a");
    cluster.spawn_shard(4);
    let start = Instant::now();
    let after = loop {
        let a = cluster.assignment().await;
        let settled = a.handoff.is_empty() && a.partitions.values().any(|ns| ns.contains(&4));
        if settled {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node 4 never got partitions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&load, task, "node joined").await;
    let (moved, total) = rulake_catalog::placement::moved(&before.partitions, &after.partitions);
    let ideal = total as f64 / 4.0;
    assert!(
        moved as f64 <= 1.5 * ideal,
        "{moved} of {total} replicas moved on a join; ideal {ideal}"
    );
    assert!(moved > 0);

    // Drain node 1 under load, then stop it: no query sees a partial answer.
    let (load, task) = start_load(&coord, "b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let drained = c.drain_shard("1").await.unwrap();
    assert!(drained.partitions_moved > 0);
    let a = cluster.assignment().await;
    assert!(!a.uses(1), "a drained node still serves");
    cluster.stop_shard(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_load(&load, task, "node drained and stopped").await;
    // Bad input to the admin call: clear errors.
    let e = c.drain_shard("nope").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    let e = c.drain_shard("99").await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
}
