//! `rulake-bench fresh`: what the `fresh` consistency level costs against
//! `eventual` when many clients query at once (the `fresh` section of
//! docs/BENCHMARKS.md), on a local lake and on an S3-compatible server.
//!
//! A `fresh` query needs a look at the lake that started after it arrived;
//! concurrent queries share one such look (the engine's single-flight
//! generation check), so the lake sees about one listing per check window,
//! not one per query. The listings are read from the lake request metrics
//! (`rulake_lake::io`), the same counters `/metrics` exports. The S3 side
//! is `s3s-fs` in this process on loopback: real S3 requests over HTTP,
//! without a network's latency, so it shows the request count more than
//! the time a remote store would add per check.

use crate::report;
use rulake::measure::{bar, write_lake};
use rulake_datasets::ClusteredGaussian;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::io::{snapshot, LakeKind};
use rulake_lake::{ParquetSource, ParquetSourceConfig, Source, ID_COLUMN, VECTOR_COLUMN};
use rulake_types::{Consistency, SearchParams};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "rulake";
const SECRET_KEY: &str = "rulake-secret";

/// `rulake-bench fresh` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors in the lake.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Concurrent clients (one row per count).
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub clients: Vec<usize>,
    /// Seconds per measured phase (each level runs two phases, alternating).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Working directory (the lakes).
    #[arg(long, default_value = "rulake-demo-lake/fresh")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

/// One level on one lake: queries answered and lake requests made.
#[derive(Default)]
struct Phase {
    queries: u64,
    seconds: f64,
    lists: u64,
    heads: u64,
    gets: u64,
}

impl Phase {
    fn qps(&self) -> f64 {
        self.queries as f64 / self.seconds
    }
    fn add(&mut self, o: Phase) {
        self.queries += o.queries;
        self.seconds += o.seconds;
        self.lists += o.lists;
        self.heads += o.heads;
        self.gets += o.gets;
    }
}

struct Row {
    lake: &'static str,
    clients: usize,
    /// Mean time of one generation check, asked alone.
    check_s: f64,
    fresh: Phase,
    eventual: Phase,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.clients.iter().all(|&c| c >= 1) && a.seconds > 0.0,
        "nothing to measure"
    );
    let g = ClusteredGaussian::new(a.dim, 64, 0.35, 42);
    // The S3 server serves buckets as directories under its root, so the
    // lake is written once, under the bucket `lake`, and read both ways.
    let root = a.work.join(format!("s3-n{}-d{}", a.n, a.dim));
    let lake = root.join("lake").join("emb");
    if !lake.exists() {
        write_lake(&lake, &g, a.n, a.dim, 8, 8)?;
    }
    let queries: Vec<Vec<f32>> = g
        .sample(1000, 7)
        .chunks(a.dim)
        .map(<[f32]>::to_vec)
        .collect();
    let queries = Arc::new(queries);

    let local = ParquetSourceConfig::new(
        lake.canonicalize()?.to_string_lossy(),
        ID_COLUMN,
        VECTOR_COLUMN,
    );
    let endpoint = format!("http://{}", start_s3(&root).await?);
    let s3 = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", ACCESS_KEY),
        ("aws_secret_access_key", SECRET_KEY),
        ("aws_region", "us-east-1"),
        ("aws_virtual_hosted_style_request", "false"),
    ]
    .into_iter()
    .fold(
        ParquetSourceConfig::new("s3://lake/emb", ID_COLUMN, VECTOR_COLUMN),
        |c, (k, v)| c.with_option(k, v),
    );
    let mut rows = Vec::new();
    for (name, config) in [("local files", local), ("S3 (s3s-fs, loopback)", s3)] {
        eprintln!("{name}: loading");
        rows.extend(measure(name, config, &a, &queries).await?);
    }

    let md = render(&a, &rows)?;
    print!("{md}");
    report::write_section(&a.output, "fresh", &md)?;
    eprintln!("wrote the fresh section of {}", a.output.display());
    Ok(())
}

/// Both levels over one lake, at each client count: two collections of
/// one source, measured in alternating phases so machine noise hits both
/// alike.
async fn measure(
    lake: &'static str,
    config: ParquetSourceConfig,
    a: &Args,
    queries: &Arc<Vec<Vec<f32>>>,
) -> anyhow::Result<Vec<Row>> {
    let engine = RuLake::new(CacheConfig::default());
    let source = Arc::new(ParquetSource::open(config)?);
    engine.register_source("lake", source.clone())?;
    for (name, consistency) in [
        ("fresh", Consistency::Fresh),
        (
            "eventual",
            Consistency::Eventual {
                max_staleness: Duration::from_secs(3600),
            },
        ),
    ] {
        engine.create_collection(
            CollectionSpec::new(name, "lake", a.dim)
                .partitions(2)
                .consistency(consistency),
        )?;
        engine
            .search(name, &queries[0], SearchParams::k(10))
            .await?;
    }
    // What one check costs alone: the floor of a fresh query's wait.
    let t = Instant::now();
    for _ in 0..50 {
        source.generation().await?;
    }
    let check_s = t.elapsed().as_secs_f64() / 50.0;
    let mut rows = Vec::new();
    let pb = bar(4 * a.clients.len() as u64, lake);
    for &clients in &a.clients {
        let mut row = Row {
            lake,
            clients,
            check_s,
            fresh: Phase::default(),
            eventual: Phase::default(),
        };
        for _ in 0..2 {
            row.fresh
                .add(phase(&engine, "fresh", clients, a, queries.clone()).await?);
            pb.inc(1);
            row.eventual
                .add(phase(&engine, "eventual", clients, a, queries.clone()).await?);
            pb.inc(1);
        }
        rows.push(row);
    }
    pb.finish_and_clear();
    Ok(rows)
}

/// `clients` clients querying `collection` back to back for
/// `a.seconds`; what they got through and what the lake was asked.
async fn phase(
    engine: &RuLake,
    collection: &'static str,
    clients: usize,
    a: &Args,
    queries: Arc<Vec<Vec<f32>>>,
) -> anyhow::Result<Phase> {
    let before = snapshot(LakeKind::Parquet);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let clients: Vec<_> = (0..clients)
        .map(|c| {
            let (engine, queries) = (engine.clone(), queries.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = c * 97;
                while Instant::now() < end {
                    let q = &queries[i % queries.len()];
                    engine.search(collection, q, SearchParams::k(10)).await?;
                    done += 1;
                    i += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let mut queries_done = 0;
    for c in clients {
        queries_done += c.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = snapshot(LakeKind::Parquet);
    Ok(Phase {
        queries: queries_done,
        seconds,
        lists: after.lists - before.lists,
        heads: after.heads - before.heads,
        gets: after.requests - before.requests,
    })
}

fn render(a: &Args, rows: &[Row]) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "## Fresh against eventual under concurrency\n")?;
    writeln!(
        md,
        "`cargo run --release -p rulake-bench -- fresh` (n = {}, D = {}, k = 10, 2 partitions, collection defaults; \
clients querying back to back, {} s per phase, two phases per level, alternating). One Parquet lake (8 files × \
8 row groups) read as local files and through an S3-compatible server (`s3s-fs` in the same process, on loopback); \
one engine serves a `fresh` and an `eventual` collection of the same source. Lake requests are the lake request \
metrics of the run (`rulake_lake_list_requests_total`, `…_head_requests_total`, `…_read_requests_total`). A `fresh` \
query's generation check of a Parquet prefix is one listing; concurrent queries share one check that started \
after each of them arrived.\n",
        a.n, a.dim, a.seconds
    )?;
    writeln!(
        md,
        "| lake | clients | one check alone (ms) | fresh (q/s) | eventual (q/s) | fresh / eventual | target (8 clients) | fresh: LISTs | queries per LIST | eventual: LISTs | GETs (fresh / eventual) |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")?;
    for r in rows {
        writeln!(
            md,
            "| {} | {} | {:.2} | {:.0} | {:.0} | {:.2}× | ≥ 0.8× | {} | {:.1} | {} | {} / {} |",
            r.lake,
            r.clients,
            r.check_s * 1e3,
            r.fresh.qps(),
            r.eventual.qps(),
            r.fresh.qps() / r.eventual.qps(),
            r.fresh.lists,
            r.fresh.queries as f64 / r.fresh.lists.max(1) as f64,
            r.eventual.lists,
            r.fresh.gets,
            r.eventual.gets,
        )?;
    }
    writeln!(
        md,
        "\nBefore the shared check, every `fresh` query listed the lake itself: one LIST per query \
(queries per LIST = 1.0). A `fresh` query waits for a check that starts after it arrives: on average the rest of \
the running check and then a whole one, so C clients querying back to back get at most about \
C ÷ (1.5 × one check + one search) queries/s, whatever the sharing saves the lake. Past that, `fresh` reaches \
`eventual` only with more clients in flight (the 32-client rows) or a check much shorter than a search.\n"
    )?;
    Ok(md)
}

/// Start an S3-compatible server (`s3s-fs`) on loopback over `root` (each
/// directory under it a bucket); its address.
async fn start_s3(root: &Path) -> anyhow::Result<std::net::SocketAddr> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let fs = s3s_fs::FileSystem::new(root)
        .map_err(|e| anyhow::anyhow!("cannot serve {} over S3: {e:?}", root.display()))?;
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            let svc = service.clone();
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
