//! The lake under faults: a `rulake serve` reads Parquet prefixes over the
//! S3 protocol from [`FaultyLake`]s, queries run all along, and each time
//! a new file lands the collections reload while the lake refuses
//! requests (503), stalls them, cuts bodies short, is down altogether, or
//! goes down between the listing and the reads of the new generation.
//! `docs` is eventual and reloaded by an explicit refresh; `live` is
//! `fresh`, so each of its queries (2 s deadline) checks the lake itself.
//!
//! Checked: no query fails or returns a wrong answer (every answer is
//! exact for the generation it names, one that was loaded whole); while a
//! reload fails the previous generation keeps serving; a failed refresh
//! says clearly that the lake is unavailable, in bounded time; once the
//! lake heals both collections load the new generation; the server never
//! panics and stops cleanly.

use rulake_chaos::lake::{FaultyLake, LakeFault};
use rulake_client::{proto, Client};
use rulake_lake::{IdsRef, ID_COLUMN, VECTOR_COLUMN};
use rulake_tests::Served;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 8;
const ROWS_PER_FILE: usize = 400;
const K: u32 = 10;
/// The prefixes the collections read, each from a lake of its own (a
/// server's policy maps each prefix to one endpoint).
const PREFIX: &str = "s3://lake/emb/";
/// The `fresh` collection's.
const LIVE_PREFIX: &str = "s3://live/emb/";
/// The `fresh` collection's deadline per query: short, as an online
/// caller's, and longer than a stalled request (so a stall alone need not
/// fail a query that answers from what is warm).
const FRESH_DEADLINE: Duration = Duration::from_secs(2);

/// Rows of file `f`: ids `f * ROWS_PER_FILE ..`, vectors drawn from `f`.
fn file_rows(f: usize) -> (Vec<u64>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ (f as u64 + 1).wrapping_mul(0x9e37_79b9);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    let ids = (0..ROWS_PER_FILE)
        .map(|i| (f * ROWS_PER_FILE + i) as u64)
        .collect();
    let vectors = (0..ROWS_PER_FILE * DIM).map(|_| next() * 10.0).collect();
    (ids, vectors)
}

/// Put file `f` under `emb/` of `bucket` in the lake served from `root`:
/// written aside, then renamed in, so no listing sees half of it.
fn add_file(root: &Path, bucket: &str, f: usize) {
    let (ids, vectors) = file_rows(f);
    let aside = root.join(format!("aside-{f}.parquet"));
    rulake_lake::write_parquet_file(&aside, IdsRef::U64(&ids), &vectors, DIM, 100).unwrap();
    let to = root.join(bucket).join(format!("emb/part-{f}.parquet"));
    std::fs::rename(&aside, to).unwrap();
}

/// A lake over a new directory under `tmp`, its bucket `bucket` holding
/// file 0 under `emb/`.
fn lake_at(tmp: &Path, bucket: &str, seed: u64) -> (std::path::PathBuf, FaultyLake) {
    let root = tmp.join(bucket);
    std::fs::create_dir_all(root.join(bucket).join("emb")).unwrap();
    add_file(&root, bucket, 0);
    let lake = FaultyLake::start(&root, seed);
    (root, lake)
}

/// Search `collection` until every partition answers, with the client's
/// own (long) deadline, so a `fresh` collection has loaded what its
/// source holds now.
async fn settled(c: &Client, collection: &str) -> proto::SearchResponse {
    let start = Instant::now();
    loop {
        match c.search_with(collection, &query(0), exhaustive()).await {
            Ok(r)
                if r.partitions_answered == r.partitions_total
                    && r.loading_generation.is_empty() =>
            {
                return r
            }
            r => assert!(
                start.elapsed() < Duration::from_secs(60),
                "{collection} never loaded: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn query(i: usize) -> Vec<f32> {
    (0..DIM).map(|d| ((i * 5 + d * 3) % 11) as f32).collect()
}

const QUERIES: usize = 8;

/// The exact top-`K` of query `q` over files `0..files`, as (id, distance).
fn exact(files: usize, q: usize) -> Vec<(u64, f32)> {
    let q = query(q);
    let mut all: Vec<(f32, u64)> = (0..files)
        .flat_map(|f| {
            let (ids, vectors) = file_rows(f);
            let q = q.clone();
            ids.into_iter()
                .zip(vectors.chunks(DIM).map(<[f32]>::to_vec).collect::<Vec<_>>())
                .map(move |(id, v)| {
                    let d: f32 = v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                    (d, id)
                })
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter()
        .take(K as usize)
        .map(|(d, id)| (id, d))
        .collect()
}

fn hits(r: &proto::SearchResponse) -> Vec<(u64, f32)> {
    r.hits
        .iter()
        .map(|h| match h.id.as_ref().and_then(|i| i.id.as_ref()) {
            Some(proto::vector_id::Id::Num(n)) => (*n, h.distance),
            other => panic!("unexpected id {other:?}"),
        })
        .collect()
}

fn same(got: &[(u64, f32)], want: &[(u64, f32)]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() <= 1e-3 * w.1.max(1.0))
}

/// Collection `name` over `prefix`: `fresh`, or eventual and checked only
/// when refreshed (every reload of it is one the test asked for, under a
/// fault it chose).
fn spec(name: &str, prefix: &str, fresh: bool) -> proto::CollectionSpec {
    let level = if fresh {
        proto::consistency::Level::Fresh(proto::consistency::Fresh {})
    } else {
        proto::consistency::Level::Eventual(proto::consistency::Eventual {
            max_staleness_ms: 3_600_000,
        })
    };
    proto::CollectionSpec {
        name: name.into(),
        source: Some(proto::Source {
            kind: Some(proto::source::Kind::Parquet(proto::ParquetSource {
                url: prefix.into(),
                id_column: ID_COLUMN.into(),
                vector_column: VECTOR_COLUMN.into(),
                options: Default::default(),
            })),
        }),
        dimension: DIM as u32,
        metric: proto::Metric::L2 as i32,
        partitions: 4,
        replication_factor: 1,
        consistency: Some(proto::Consistency { level: Some(level) }),
        rerank: None,
        nprobe: None,
        target_recall: None,
        ..Default::default()
    }
}

/// Parameters under which the answer is exact.
fn exhaustive() -> proto::SearchParams {
    proto::SearchParams {
        k: K,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
        ..Default::default()
    }
}

/// Every answer: the generation it names, and its hits, per query.
type Answers = Vec<(String, usize, Vec<(u64, f32)>)>;

/// Query `collection` with `deadline` until `stop`; every answer and
/// every failure is kept.
async fn load(
    addr: String,
    collection: &'static str,
    deadline: Duration,
    stop: Arc<AtomicBool>,
) -> (Answers, Vec<String>) {
    let c = Client::connect(&format!("http://{addr}"))
        .await
        .unwrap()
        .with_timeout(deadline);
    let (mut answers, mut errors) = (Vec::new(), Vec::new());
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let q = i % QUERIES;
        let t = Instant::now();
        match c.search_with(collection, &query(q), exhaustive()).await {
            Ok(r) if r.partitions_answered < r.partitions_total => errors.push(format!(
                "{collection}: partial: {}/{}",
                r.partitions_answered, r.partitions_total
            )),
            Ok(r) => answers.push((r.generation.clone(), q, hits(&r))),
            Err(e) => errors.push(format!("{collection}: after {:?}: {e}", t.elapsed())),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (answers, errors)
}

/// What a reload meets, one new file each.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// This fault for the whole refresh.
    Fault(LakeFault),
    /// The listing succeeds, then the lake goes down: the reload fails
    /// halfway through reading the new generation.
    DownAfterListing,
}

fn phases() -> Vec<Phase> {
    vec![
        Phase::Fault(LakeFault::Unavailable { p: 0.5 }),
        Phase::Fault(LakeFault::Stall {
            p: 0.3,
            pause: Duration::from_millis(1500),
        }),
        Phase::Fault(LakeFault::Truncate { p: 0.5 }),
        Phase::Fault(LakeFault::Unavailable { p: 1.0 }),
        Phase::DownAfterListing,
    ]
}

/// Refresh under `phase`.
async fn refresh(c: &Client, lake: &FaultyLake, phase: Phase) -> Result<(String, bool), String> {
    match phase {
        Phase::Fault(f) => {
            lake.set(f);
            c.refresh("docs").await.map_err(|e| status(&e))
        }
        Phase::DownAfterListing => {
            // Every request held a little, so the switch below lands
            // while the listing (the refresh's first request) is held.
            lake.set(LakeFault::Stall {
                p: 1.0,
                pause: Duration::from_millis(300),
            });
            let before = lake.counts().requests;
            let rc = c.clone();
            let r = tokio::spawn(async move { rc.refresh("docs").await.map_err(|e| status(&e)) });
            while lake.counts().requests == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lake.set(LakeFault::Unavailable { p: 1.0 });
            r.await.unwrap()
        }
    }
}

/// A failed call as `CODE: message`.
fn status(e: &rulake_client::ClientError) -> String {
    format!("{:?}: {e}", e.code())
}

/// How long a refresh may take against a lake that refuses everything
/// before it must give up and say so.
const REFRESH_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_lake_faults_keep_serving_exact_answers() {
    let tmp = tempfile::tempdir().unwrap();
    // `docs` (eventual, refreshed by the test) and `live` (fresh: every
    // query checks the lake) read equal lakes, each behind its own server
    // and fault layer, at the prefix each lake's policy entry names.
    let (root, lake) = lake_at(tmp.path(), "lake", 0x5eed);
    let (live_root, live_lake) = lake_at(tmp.path(), "live", 0x11fe);
    let policy = tmp.path().join("policy.json");
    let rules = serde_json::json!({ "allow": [
        { "prefix": PREFIX, "options": lake.store_options() },
        { "prefix": LIVE_PREFIX, "options": live_lake.store_options() },
    ]});
    std::fs::write(&policy, rules.to_string()).unwrap();
    let mut served = Served::start_with(
        &tmp.path().join("data"),
        &["--source-policy".into(), policy.display().to_string()],
    );
    let c = Client::connect(&format!("http://{}", served.addr))
        .await
        .unwrap()
        .with_timeout(REFRESH_BOUND + Duration::from_secs(30));
    c.create_collection(spec("docs", PREFIX, false))
        .await
        .unwrap();
    c.create_collection(spec("live", LIVE_PREFIX, true))
        .await
        .unwrap();
    // Per collection, generation → how many files it holds.
    let mut generations: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let first = settled(&c, "docs").await;
    generations.insert(("docs", first.generation.clone()), 1);
    generations.insert(("live", settled(&c, "live").await.generation), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let streams = [
        tokio::spawn(load(
            served.addr.clone(),
            "docs",
            Duration::from_secs(10),
            stop.clone(),
        )),
        tokio::spawn(load(
            served.addr.clone(),
            "live",
            FRESH_DEADLINE,
            stop.clone(),
        )),
    ];
    let mut serving = first.generation.clone();
    for (round, fault) in phases().into_iter().enumerate() {
        let files = round + 2;
        add_file(&root, "lake", files - 1);
        add_file(&live_root, "live", files - 1);
        // The fresh collection meets the same fault for a while; its
        // queries find the new file and load it through the fault.
        live_lake.set(match fault {
            Phase::Fault(f) => f,
            Phase::DownAfterListing => LakeFault::Unavailable { p: 1.0 },
        });
        let phase_start = Instant::now();
        let before = lake.counts();
        let t = Instant::now();
        let r = refresh(&c, &lake, fault).await;
        let took = t.elapsed();
        let counts = lake.counts();
        eprintln!("{fault:?}: refresh took {took:?}: {r:?}; lake {before:?} -> {counts:?}");
        match &r {
            Ok((g, _)) => {
                generations.insert(("docs", g.clone()), files);
            }
            Err(e) => {
                // A failure names the cause, as a retryable status, in
                // bounded time; the previous generation keeps serving.
                assert!(
                    e.starts_with("Some(Unavailable)") && e.contains("503"),
                    "{fault:?}: a refresh the lake failed should be UNAVAILABLE and say why: {e}"
                );
                assert!(
                    !e.contains("not a readable Parquet file"),
                    "{fault:?}: an unavailable lake blamed on the file: {e}"
                );
                assert!(took <= REFRESH_BOUND, "{fault:?}: failing took {took:?}");
                let now = c
                    .search_with("docs", &query(1), exhaustive())
                    .await
                    .unwrap();
                assert_eq!(
                    now.generation, serving,
                    "{fault:?}: a failed reload changed what is served"
                );
            }
        }
        let held = Duration::from_secs(3).saturating_sub(phase_start.elapsed());
        tokio::time::sleep(held).await;
        // Healed: the new generation loads.
        lake.set(LakeFault::Healthy);
        live_lake.set(LakeFault::Healthy);
        let (g, _) = c
            .refresh("docs")
            .await
            .unwrap_or_else(|e| panic!("after {fault:?} healed, the refresh failed: {e}"));
        generations.insert(("docs", g.clone()), files);
        serving = g;
        let now = c
            .search_with("docs", &query(2), exhaustive())
            .await
            .unwrap();
        assert_eq!(
            now.generation, serving,
            "after {fault:?}: not the new generation"
        );
        assert!(
            same(&hits(&now), &exact(files, 2)),
            "after {fault:?}: not exact"
        );
        let live = settled(&c, "live").await;
        assert!(
            same(&hits(&live), &exact(files, 0)),
            "after {fault:?}: the fresh collection is not at the new generation"
        );
        generations.insert(("live", live.generation), files);
    }
    let counts = lake.counts();
    assert!(
        counts.unavailable > 0 && counts.stalled > 0 && counts.truncated > 0,
        "some fault was never injected: {counts:?}"
    );

    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    let mut want: BTreeMap<(usize, usize), Vec<(u64, f32)>> = BTreeMap::new();
    for (collection, stream) in ["docs", "live"].into_iter().zip(streams) {
        let (answers, failed) = stream.await.unwrap();
        errors.extend(failed);
        assert!(
            answers.len() > 20,
            "{collection}: only {} queries answered",
            answers.len()
        );
        for (g, q, got) in &answers {
            let files = *generations
                .get(&(collection, g.clone()))
                .unwrap_or_else(|| {
                    panic!("{collection}: an answer names generation {g:?}, never loaded whole")
                });
            let want = want.entry((files, *q)).or_insert_with(|| exact(files, *q));
            assert!(
                same(got, want),
                "{collection}: query {q} on generation {g:?} ({files} files): {got:?}, exact {want:?}"
            );
        }
        eprintln!("{collection}: {} answers, all exact", answers.len());
    }
    assert!(
        errors.is_empty(),
        "{} queries failed or were partial with a generation warm to answer from: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    eprintln!(
        "lakes {counts:?} and {:?}; {} generations",
        live_lake.counts(),
        generations.len()
    );
    served.stop(Duration::from_secs(30));
}
