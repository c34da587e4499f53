//! `rulake-bench cluster`: the distributed query path measured (the
//! `cluster` section of docs/BENCHMARKS.md).
//!
//! Two parts. A placement simulation, no processes: partitions over 10,
//! 100 and 1,000 nodes, the replicas moved by a join and a leave against
//! the ideal `1/N`, and the fullest node against the mean. Then real
//! processes on loopback (one meta member, 1..=S shard nodes, one
//! coordinator) answering the same queries with the same concurrency as
//! the single-process engine over the same lake, in the same run. On a
//! two-core machine every process shares the same cores, so the figures
//! show the cost of the network hops, not the gain of more machines.

use crate::grpc::{summarize, Latency};
use crate::process::{free_addr, spawn_role, Procs};
use crate::report;
use rulake::measure::{bar, write_lake};
use rulake_catalog::placement::{moved, place};
use rulake_client::{proto, Client};
use rulake_datasets::ClusteredGaussian;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{ParquetSource, ParquetSourceConfig, ID_COLUMN, VECTOR_COLUMN};
use rulake_types::SearchParams;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `rulake-bench cluster` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors in the lake.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Partitions of the collection.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Shard node counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub shards: Vec<u32>,
    /// Queries timed per setting.
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Partitions in the placement simulation.
    #[arg(long, default_value_t = 10_000)]
    pub sim_partitions: usize,
    /// Only the placement simulation (no processes).
    #[arg(long)]
    pub placement_only: bool,
    /// Working directory (the lake and the processes' data).
    #[arg(long, default_value = "rulake-demo-lake/cluster")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

struct SimRow {
    nodes: usize,
    join: f64,
    leave: f64,
    max_mean: f64,
    millis: f64,
}

fn max_mean(a: &std::collections::BTreeMap<String, Vec<u64>>, nodes: usize) -> f64 {
    let mut load: HashMap<u64, usize> = HashMap::new();
    let mut total = 0;
    for ns in a.values() {
        for n in ns {
            *load.entry(*n).or_default() += 1;
            total += 1;
        }
    }
    let max = load.values().copied().max().unwrap_or(0) as f64;
    max / (total as f64 / nodes as f64)
}

fn simulate(partitions: usize) -> Vec<SimRow> {
    let cfg = rulake_catalog::PlacementConfig::default();
    let parts: Vec<(String, u32)> = (0..partitions).map(|p| (format!("c/{p}"), 1)).collect();
    [10usize, 100, 1000]
        .iter()
        .map(|&n| {
            let nodes: Vec<u64> = (1..=n as u64).collect();
            let t = Instant::now();
            let none = std::collections::BTreeMap::new();
            let base = place(&parts, &nodes, &none, cfg.vnodes, cfg.load_factor);
            let millis = t.elapsed().as_secs_f64() * 1e3;
            let mut grown = nodes.clone();
            grown.push(n as u64 + 1);
            let joined = place(&parts, &grown, &base, cfg.vnodes, cfg.load_factor);
            let (mj, total) = moved(&base, &joined);
            let left = place(&parts, &nodes[1..], &base, cfg.vnodes, cfg.load_factor);
            let (ml, _) = moved(&base, &left);
            SimRow {
                nodes: n,
                join: mj as f64 / (total as f64 / (n + 1) as f64),
                leave: ml as f64 / (total as f64 / n as f64),
                max_mean: max_mean(&base, n),
                millis,
            }
        })
        .collect()
}

fn wait_tcp(addr: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `concurrency` workers answer `total` queries round-robin; latencies in µs.
async fn drive<F, Fut>(total: usize, concurrency: usize, f: F) -> anyhow::Result<(f64, Latency)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while i < total {
                let t = Instant::now();
                f(i).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                i += concurrency;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let qps = total as f64 / start.elapsed().as_secs_f64();
    Ok((qps, summarize(all)))
}

struct ClusterRow {
    shards: u32,
    load_secs: f64,
    qps: f64,
    lat: Latency,
    engine_qps: f64,
    engine_lat: Latency,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    eprintln!(
        "placement simulation: {} partitions over 10, 100, 1000 nodes",
        a.sim_partitions
    );
    let sim = simulate(a.sim_partitions);
    let mut md = String::new();
    writeln!(md, "## Distributed query path and placement\n")?;
    writeln!(
        md,
        "Reproduce: `cargo run --release -p rulake-bench -- cluster` (`--placement-only` for the simulation alone).\n"
    )?;
    writeln!(
        md,
        "### Placement simulation ({} partitions, one replica, 128 virtual nodes per node, load cap 1.1 × mean)\n",
        a.sim_partitions
    )?;
    writeln!(
        md,
        "| nodes | moved on a join / ideal | moved on a leave / ideal | max / mean | first placement |"
    )?;
    writeln!(md, "| ---: | ---: | ---: | ---: | ---: |")?;
    for r in &sim {
        writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.3} | {:.1} ms |",
            r.nodes, r.join, r.leave, r.max_mean, r.millis
        )?;
    }
    writeln!(
        md,
        "\nIdeal moves are `1/(N+1)` of the replicas on a join and `1/N` on a leave (a join below 1.00 means the new node took its floor share). Targets: moves within 1.5× of ideal, max/mean ≤ 1.1. Placement is sticky with a load cap and a fill of under-loaded nodes (`crates/rulake-catalog/src/placement.rs`); plain consistent hashing with 128 virtual nodes leaves max/mean far above 1.1 when nodes hold about ten partitions each.\n"
    )?;
    if a.placement_only {
        report::write_section(&a.output, "cluster", &md)?;
        eprintln!("wrote the cluster section of {}", a.output.display());
        return Ok(());
    }
    let rows = measure_cluster(&a).await?;
    writeln!(
        md,
        "### Query throughput on loopback (n = {}, D = {}, {} partitions, {} queries, {} in flight)\n",
        a.n, a.dim, a.partitions, a.queries, a.concurrency
    )?;
    writeln!(
        md,
        "Each row: one meta member, the shard nodes and one coordinator as separate processes, measured right after the single-process engine answered the same queries over the same lake in the same run. All processes share this machine's two cores.\n"
    )?;
    writeln!(
        md,
        "| shard nodes | load to first full answer | cluster q/s | p50 | p99 | engine q/s | p50 | p99 | cluster / engine |"
    )?;
    writeln!(
        md,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for r in &rows {
        writeln!(
            md,
            "| {} | {:.1} s | {:.0} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.2}× |",
            r.shards,
            r.load_secs,
            r.qps,
            r.lat.p50,
            r.lat.p99,
            r.engine_qps,
            r.engine_lat.p50,
            r.engine_lat.p99,
            r.qps / r.engine_qps
        )?;
    }
    report::write_section(&a.output, "cluster", &md)?;
    eprintln!("wrote the cluster section of {}", a.output.display());
    Ok(())
}

async fn measure_cluster(a: &Args) -> anyhow::Result<Vec<ClusterRow>> {
    std::fs::create_dir_all(&a.work)?;
    let work = a.work.canonicalize()?;
    let lake = work.join(format!("n{}d{}", a.n, a.dim));
    let g = ClusteredGaussian::new(a.dim, 64, 0.35, 42);
    if !lake.exists() {
        write_lake(&lake, &g, a.n, a.dim, 8, 8)?;
    }
    let url = format!("file://{}/", lake.display());
    let queries = Arc::new(g.sample(a.queries.min(1000), 7));
    let dim = a.dim;
    let nq = queries.len() / dim;

    // The reference: the engine in this process.
    let engine = RuLake::new(CacheConfig {
        budget_bytes: 16 << 30,
        persist_dir: None,
    });
    let source = ParquetSource::open(ParquetSourceConfig {
        url: url.clone(),
        id_column: ID_COLUMN.into(),
        vector_column: VECTOR_COLUMN.into(),
        options: Vec::new(),
    })?;
    engine.register_source("lake", Arc::new(source))?;
    engine.create_collection(
        CollectionSpec::new("bench", "lake", a.dim)
            .partitions(a.partitions)
            .consistency(rulake_types::Consistency::Eventual {
                max_staleness: Duration::from_secs(3600),
            }),
    )?;
    eprintln!("loading the lake into the in-process engine");
    engine.refresh("bench").await?;

    let mut rows = Vec::new();
    for &s in &a.shards {
        let run_dir = work.join(format!("run-{s}"));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)?;
        let mut procs = Procs(Vec::new());
        let meta = free_addr()?;
        procs.0.push(spawn_role(
            &[
                "meta",
                "--id",
                "1",
                "--listen",
                &meta,
                "--peers",
                &format!("1={meta}"),
                "--data-dir",
                "meta",
            ],
            &run_dir,
        )?);
        wait_tcp(&meta)?;
        for id in 1..=s {
            let addr = free_addr()?;
            procs.0.push(spawn_role(
                &[
                    "shard",
                    "--id",
                    &id.to_string(),
                    "--listen",
                    &addr,
                    "--meta",
                    &meta,
                    "--data-dir",
                    &format!("shard-{id}"),
                    "--cache-bytes",
                    &(16u64 << 30).to_string(),
                    "--metrics-listen",
                    "127.0.0.1:0",
                ],
                &run_dir,
            )?);
            wait_tcp(&addr)?;
        }
        let coord = free_addr()?;
        procs.0.push(spawn_role(
            &[
                "coordinator",
                "--listen",
                &coord,
                "--meta",
                &meta,
                "--data-dir",
                "coordinator",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            &run_dir,
        )?);
        wait_tcp(&coord)?;
        let client = Client::connect(&format!("http://{coord}")).await?;
        client
            .create_collection(proto::CollectionSpec {
                name: "bench".into(),
                source: Some(proto::Source {
                    kind: Some(proto::source::Kind::Parquet(proto::ParquetSource {
                        url: url.clone(),
                        id_column: ID_COLUMN.into(),
                        vector_column: VECTOR_COLUMN.into(),
                        options: Default::default(),
                    })),
                }),
                dimension: a.dim as u32,
                metric: proto::Metric::L2 as i32,
                partitions: a.partitions,
                replication_factor: 1,
                consistency: Some(proto::Consistency {
                    level: Some(proto::consistency::Level::Eventual(
                        proto::consistency::Eventual {
                            max_staleness_ms: 3_600_000,
                        },
                    )),
                }),
                rerank: None,
                nprobe: None,
                target_recall: None,
                ..Default::default()
            })
            .await?;
        let pb = bar(
            u64::from(a.partitions),
            &format!("{s} shard node(s) loading"),
        );
        let t = Instant::now();
        let q0: Vec<f32> = queries[..dim].to_vec();
        loop {
            if let Ok(r) = client.search("bench", &q0, 10).await {
                pb.set_position(u64::from(r.partitions_answered));
                if r.partitions_answered == r.partitions_total {
                    break;
                }
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(900),
                "the cluster did not load"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pb.finish();
        let load_secs = t.elapsed().as_secs_f64();
        // Warm both sides, then time the engine and the cluster back to back.
        for i in 0..50.min(nq) {
            let q = &queries[i * dim..(i + 1) * dim];
            client.search("bench", q, 10).await?;
        }
        let (engine_qps, engine_lat) = {
            let (e, qs) = (engine.clone(), queries.clone());
            drive(a.queries, a.concurrency, move |i| {
                let (e, qs) = (e.clone(), qs.clone());
                async move {
                    let j = i % nq;
                    e.search("bench", &qs[j * dim..(j + 1) * dim], SearchParams::k(10))
                        .await?;
                    Ok(())
                }
            })
            .await?
        };
        let (qps, lat) = {
            let qs = queries.clone();
            drive(a.queries, a.concurrency, move |i| {
                let (c, qs) = (client.clone(), qs.clone());
                async move {
                    let j = i % nq;
                    let r = c.search("bench", &qs[j * dim..(j + 1) * dim], 10).await?;
                    anyhow::ensure!(
                        r.partitions_answered == r.partitions_total,
                        "partial answer while measuring"
                    );
                    Ok(())
                }
            })
            .await?
        };
        eprintln!(
            "{s} shard node(s): cluster {qps:.0} q/s (p50 {:.0} µs), engine {engine_qps:.0} q/s",
            lat.p50
        );
        rows.push(ClusterRow {
            shards: s,
            load_secs,
            qps,
            lat,
            engine_qps,
            engine_lat,
        });
        drop(procs);
    }
    Ok(rows)
}
