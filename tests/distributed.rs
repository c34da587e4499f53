//! The distributed query path as real processes on loopback: three
//! `rulake meta` members, `rulake shard` nodes and `rulake coordinator`s,
//! under a steady query load while shard nodes are killed, added and
//! drained, and a `fresh` collection whose new data loads for longer than
//! a query's deadline. The single-process engine over the same Parquet
//! files (or a brute-force scan of their rows) is the reference answer.

use rulake_tests as support;

use rulake_client::{proto, Client};
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{IdsRef, ParquetSource, ParquetSourceConfig, ID_COLUMN, VECTOR_COLUMN};
use rulake_types::SearchParams;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::distributed::Distributed;
use support::process::{free_addr, rulake, wait_listening, Proc};

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
        target_recall: None,
        ..Default::default()
    }
}

/// A `fresh` collection over the Parquet files at `url`, of `dim`.
fn fresh_spec(name: &str, url: &str, dim: usize, partitions: u32) -> proto::CollectionSpec {
    proto::CollectionSpec {
        dimension: dim as u32,
        consistency: Some(proto::Consistency {
            level: Some(proto::consistency::Level::Fresh(
                proto::consistency::Fresh {},
            )),
        }),
        ..parquet_spec(name, url, partitions, 1)
    }
}

/// Parameters under which every partition answers exactly.
fn exhaustive(k: u32) -> proto::SearchParams {
    proto::SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
        ..Default::default()
    }
}

/// The exact `k` nearest to `q` under L2 of the rows `ids` with `dim`-wide
/// `vectors`, as (id key, distance).
fn brute_force(ids: &[u64], vectors: &[f32], q: &[f32], k: usize) -> Vec<(String, f32)> {
    let mut d: Vec<(f32, u64)> = ids
        .iter()
        .zip(vectors.chunks(q.len()))
        .map(|(id, v)| {
            let d: f32 = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, *id)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter()
        .take(k)
        .map(|(d, id)| (format!("n:{id}"), d))
        .collect()
}

/// Same ids in the same order, distances equal up to float rounding.
fn assert_exact(got: &[(String, f32)], want: &[(String, f32)], what: &str) {
    let ids = |h: &[(String, f32)]| h.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{what}: ids differ");
    for ((_, g), (_, w)) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-3 * w.max(1.0),
            "{what}: distance {g} vs exact {w}"
        );
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

/// Until the coordinator has seen every partition of `collection` reported
/// warm. Before that it does not know the collection's size, and each
/// shard shares out the search parameters over its own partitions alone
/// (a wider search than the single-process engine's), so answers are
/// complete but not yet comparable with the engine's.
async fn wait_warm_reports(c: &Client, collection: &str, partitions: usize) {
    let start = Instant::now();
    loop {
        if let Ok(st) = c.cluster_status().await {
            let routes: Vec<_> = st
                .routes
                .iter()
                .filter(|r| r.collection == collection)
                .collect();
            if routes.len() == partitions && routes.iter().all(|r| !r.warm.is_empty()) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{collection}: the coordinator never saw every partition warm"
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
    wait_warm_reports(&c, "docs", 8).await;

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
    // Both route by that epoch, and identically: the same replicas in the
    // same order for every partition (once each has polled the shards'
    // warm state, which the order depends on).
    let start = Instant::now();
    loop {
        let (a, b) = (
            c.cluster_status().await.unwrap(),
            c2.cluster_status().await.unwrap(),
        );
        let same = a.routing_epoch == b.routing_epoch && a.routes == b.routes;
        let settled = a.routing_epoch == a.assignment_epoch
            && a.routes.len() == 8
            && a.routes.iter().all(|r| r.warm.len() == 2);
        if same && settled {
            assert!(
                a.routes
                    .iter()
                    .all(|r| !r.replicas.contains(&"2".to_string())),
                "a route still names the killed node: {:?}",
                a.routes
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "coordinators route differently at epochs {} and {}:\n{:?}\n{:?}",
            a.routing_epoch,
            b.routing_epoch,
            a.routes,
            b.routes
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// A coordinator whose metrics port is known: its API address, its
/// metrics address and the process (stopped when dropped).
fn coordinator_with_metrics(cluster: &Distributed, dir: &Path) -> (String, String, Proc) {
    let (addr, metrics) = (free_addr(), free_addr());
    let meta: Vec<String> = cluster
        .meta
        .members
        .values()
        .map(|m| m.addr.clone())
        .collect();
    let mut cmd = rulake();
    cmd.args(["coordinator", "--listen", &addr, "--meta", &meta.join(",")])
        .args(["--metrics-listen", &metrics, "--data-dir"])
        .arg(dir.join("coordinator"));
    let proc = Proc::spawn("coordinator", cmd, &dir.join("coordinator.log"));
    wait_listening(&addr, "rulake coordinator");
    (addr, metrics, proc)
}

/// The value of counter `name` on the metrics port at `metrics`.
async fn counter(metrics: &str, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(metrics).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} on {metrics}/metrics")) as u64
}

/// Until the coordinator sees every partition of `collection` warm on
/// `replicas` nodes.
async fn wait_warm_on(c: &Client, collection: &str, replicas: usize) {
    let start = Instant::now();
    loop {
        if let Ok(st) = c.cluster_status().await {
            let routes: Vec<_> = st
                .routes
                .iter()
                .filter(|r| r.collection == collection)
                .collect();
            if !routes.is_empty() && routes.iter().all(|r| r.warm.len() >= replicas) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{collection}: never warm on {replicas} replicas"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A rolling restart of every shard node under load, one at a time and
/// highest id first, as a StatefulSet rolls: on SIGTERM each node leaves
/// routing and drains before it exits, so with replication 2 no scan sent
/// to it fails (the coordinator retries nothing), no query fails or is
/// partial, and each node comes back to the same partitions (the
/// assignment never changes: a restart is not a drain).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_drains_each_shard_and_moves_no_partition() {
    let lake = tempfile::tempdir().unwrap();
    write_lake(lake.path());
    let url = format!("file://{}/", lake.path().display());
    // A grace period far longer than a restart, as the operator sets it.
    let mut cluster = Distributed::start_with_grace(2, "60000");
    let logs = tempfile::tempdir().unwrap();
    let (coord, metrics, _coordinator) = coordinator_with_metrics(&cluster, logs.path());
    let c = cluster.client(&coord).await;
    c.create_collection(parquet_spec("rolled", &url, 8, 2))
        .await
        .unwrap();
    wait_complete(&c, "rolled").await;
    wait_warm_on(&c, "rolled", 2).await;
    let before = cluster.assignment().await;

    let (load, task) = start_load(&coord, "rolled");
    for id in [2, 1] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let retries = counter(&metrics, "rulake_search_retries_total").await;
        let took = cluster.stop_shard(id);
        // Scans that reached the node after it exited would fail and be
        // retried on the other replica; give them time to happen.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let after = counter(&metrics, "rulake_search_retries_total").await;
        assert_eq!(
            after - retries,
            0,
            "scans reached shard {id} after it stopped (it took {took:?} to stop)"
        );
        cluster.spawn_shard(id);
        wait_warm_on(&c, "rolled", 2).await;
    }
    stop_load(&load, task, "rolling restart").await;
    let after = cluster.assignment().await;
    assert_eq!(after.epoch, before.epoch, "a restart moved partitions");
    assert_eq!(after.partitions, before.partitions);
}

/// Dimension of the `fresh` collection: wide enough that building its
/// partitions (a rotation per vector, k-means) is slow in a debug build.
const FRESH_DIM: usize = 128;
/// Rows the `fresh` collection starts with.
const OLD_ROWS: usize = 6_000;
/// Rows of the file appended to it: enough that loading them takes
/// seconds in a debug build, far past `SHORT_DEADLINE`. If a faster
/// machine loads them within the wait, the assertion on
/// `loading_generation` says so.
const NEW_ROWS: usize = 800_000;
/// Row groups of the appended file (see where it is written).
const NEW_UNITS: usize = 64;
/// First id of the appended rows.
const NEW_BASE: u64 = 1_000_000;
/// The deadline of the queries right after the append: a few hundred ms,
/// with room for a loaded machine to search what is warm and answer.
const SHORT_DEADLINE: Duration = Duration::from_millis(500);

/// `n` pseudo-random vectors of `FRESH_DIM` around a few centers.
fn fresh_rows(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let centers: Vec<f32> = (0..8 * FRESH_DIM).map(|i| (i % 13) as f32).collect();
    let mut v = Vec::with_capacity(n * FRESH_DIM);
    for i in 0..n {
        let c = &centers[(i % 8) * FRESH_DIM..(i % 8 + 1) * FRESH_DIM];
        v.extend(c.iter().map(|x| x + next() * 4.0 - 2.0));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_collection_answers_within_the_deadline_from_the_warm_generation() {
    let lake = tempfile::tempdir().unwrap();
    let mut ids: Vec<u64> = (0..OLD_ROWS as u64).collect();
    let mut vectors = fresh_rows(OLD_ROWS, 7);
    rulake_lake::write_parquet_file(
        &lake.path().join("part-old.parquet"),
        IdsRef::U64(&ids),
        &vectors,
        FRESH_DIM,
        OLD_ROWS / 8,
    )
    .unwrap();
    let url = format!("file://{}/", lake.path().display());
    let mut cluster = Distributed::start(2);
    let coord = cluster.coordinator();
    let c = cluster.client(&coord).await;
    c.create_collection(fresh_spec("live", &url, FRESH_DIM, 4))
        .await
        .unwrap();
    let qs: Vec<Vec<f32>> = fresh_rows(3, 99)
        .chunks(FRESH_DIM)
        .map(<[f32]>::to_vec)
        .collect();
    let start = Instant::now();
    let old = loop {
        if let Ok(r) = c.search_with("live", &qs[0], exhaustive(10)).await {
            if r.partitions_answered == r.partitions_total {
                break r;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never complete");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(old.loading_generation.is_empty());

    // Append a big file: written aside, then renamed in, so no listing
    // ever sees half of it. Its first rows sit on the queries.
    let new_ids: Vec<u64> = (0..NEW_ROWS as u64).map(|i| NEW_BASE + i).collect();
    let mut new_vectors = fresh_rows(NEW_ROWS, 11);
    for (i, q) in qs.iter().enumerate() {
        new_vectors[i * FRESH_DIM..(i + 1) * FRESH_DIM].copy_from_slice(q);
    }
    let aside = tempfile::tempdir().unwrap();
    let file = aside.path().join("part-new.parquet");
    // Many row groups (units), so every partition, and so every shard,
    // gets a share of the new rows to load: with few units one shard
    // could own little of the file, finish within the wait and answer
    // from the new generation while the other still loads.
    rulake_lake::write_parquet_file(
        &file,
        IdsRef::U64(&new_ids),
        &new_vectors,
        FRESH_DIM,
        NEW_ROWS / NEW_UNITS,
    )
    .unwrap();
    std::fs::rename(&file, lake.path().join("part-new.parquet")).unwrap();

    // Right after: answered within the short deadline, from the old
    // generation, exactly as over the old rows, naming the one loading.
    let short = cluster.client(&coord).await.with_timeout(SHORT_DEADLINE);
    for (i, q) in qs.iter().enumerate() {
        let r = match short.search_with("live", q, exhaustive(10)).await {
            Ok(r) => r,
            Err(e) => panic!("query {i} right after the append failed: {e}"),
        };
        assert_eq!(r.partitions_answered, 4);
        assert!(
            !r.loading_generation.is_empty() && r.generation == old.generation,
            "query {i}: the new file loaded within the wait (served {:?}, loading {:?}); make NEW_ROWS bigger",
            r.generation,
            r.loading_generation
        );
        assert_ne!(r.loading_generation, old.generation);
        assert_exact(
            &hits(&r),
            &brute_force(&ids, &vectors, q, 10),
            "old generation",
        );
    }

    // The load goes on in the background: a later query gets the new
    // generation, with the new rows.
    let start = Instant::now();
    let new = loop {
        let r = c.search_with("live", &qs[0], exhaustive(10)).await.unwrap();
        if r.loading_generation.is_empty() && r.generation != old.generation {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the new generation never finished loading"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "new generation served {:?} after the append",
        start.elapsed()
    );
    ids.extend(&new_ids);
    vectors.extend(&new_vectors);
    for (i, q) in qs.iter().enumerate() {
        let r = c.search_with("live", q, exhaustive(10)).await.unwrap();
        assert_eq!(r.generation, new.generation);
        let got = hits(&r);
        assert_eq!(got[0], (format!("n:{}", NEW_BASE + i as u64), 0.0));
        assert_exact(&got, &brute_force(&ids, &vectors, q, 10), "new generation");
    }
}
