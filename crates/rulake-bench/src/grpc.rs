//! `rulake-bench grpc`: what the gRPC API costs over the in-process engine
//! (the `grpc` section of docs/BENCHMARKS.md), and how fast managed ingest
//! writes. One embedded node serves a tonic server on loopback; the same
//! queries go through the engine directly and through `rulake-client`, in
//! alternating rounds so machine noise hits both sides alike.
//!
//! Beside them runs the floor: the generated `SearchService` on a second
//! tonic server whose `Search` does no work and answers with a copy of a
//! real answer, so the call carries the same bytes both ways. What a real
//! Search costs over the in-process engine, less that echo, is what
//! RuLake's own RPC path adds (authorization, deadlines, conversion).

use crate::{fanout, report};
use rulake::measure::{bar, write_lake};
use rulake_api::{router, Api, Limits};
use rulake_client::{proto, Client, Id};
use rulake_coordinator::{Embedded, EmbeddedConfig};
use rulake_datasets::ClusteredGaussian;
use rulake_proto::v1::search_service_client::SearchServiceClient;
use rulake_proto::v1::search_service_server::{SearchService, SearchServiceServer};
use rulake_types::SearchParams;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// `rulake-bench grpc` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Lake sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub sizes: Vec<usize>,
    /// Single queries timed per side.
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Batches of `--batch` queries timed per side.
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    /// Queries per BatchSearch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Vectors ingested for the ingest figure.
    #[arg(long, default_value_t = 200_000)]
    pub ingest: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Working directory (lakes and the node's data directory).
    #[arg(long, default_value = "rulake-demo-lake/grpc")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub(crate) struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

pub(crate) fn summarize(mut v: Vec<f64>) -> Latency {
    v.sort_by(f64::total_cmp);
    Latency {
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
    }
}

/// The floor of a unary call here: `Search` answers with a copy of one
/// real answer and does nothing else (see the module docs).
#[derive(Clone)]
struct Echo(Arc<Mutex<proto::SearchResponse>>);

#[tonic::async_trait]
impl SearchService for Echo {
    async fn search(
        &self,
        _req: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchResponse>, Status> {
        let canned = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Response::new(canned))
    }

    async fn batch_search(
        &self,
        _req: Request<proto::BatchSearchRequest>,
    ) -> Result<Response<proto::BatchSearchResponse>, Status> {
        Err(Status::unimplemented("the echo answers Search only"))
    }

    async fn federated_search(
        &self,
        _req: Request<proto::FederatedSearchRequest>,
    ) -> Result<Response<proto::FederatedSearchResponse>, Status> {
        Err(Status::unimplemented("the echo answers Search only"))
    }
}

/// Serve `routes` on a loopback port the way the node's server is run
/// (TCP_NODELAY on every accepted socket); the address.
pub(crate) async fn serve_loopback(
    routes: tonic::service::Routes,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_routes(routes)
            .serve_with_incoming(incoming),
    );
    Ok(addr)
}

struct Row {
    n: usize,
    /// Every gRPC Search's latency (seconds), for the fan-out simulation.
    remote_samples: Vec<f64>,
    local: Latency,
    remote: Latency,
    echo: Latency,
    local_batch_qps: f64,
    remote_batch_qps: f64,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.queries >= 10 && a.batches >= 2,
        "too few queries to measure"
    );
    std::fs::create_dir_all(&a.work)?;
    let data_dir = a.work.join("node");
    let _ = std::fs::remove_dir_all(&data_dir);
    let node = Embedded::start(EmbeddedConfig {
        cache_bytes: 16 << 30,
        ..EmbeddedConfig::new(&data_dir)
    })
    .await?;
    let api = Api::new(
        node.coordinator.clone(),
        Limits {
            max_batch: a.batch.max(1024),
            ..Limits::default()
        },
    );
    let addr = serve_loopback(router(api)).await?;
    let client = Client::connect(&format!("http://{addr}")).await?;
    let canned = Arc::new(Mutex::new(proto::SearchResponse::default()));
    let echo_addr = serve_loopback(tonic::service::Routes::new(SearchServiceServer::new(Echo(
        canned.clone(),
    ))))
    .await?;
    // Connected like `rulake-client` connects (TCP_NODELAY, a deadline
    // on every call).
    let mut echo = SearchServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{echo_addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    );
    let engine = node.coordinator.engine().clone();
    let g = ClusteredGaussian::new(a.dim, 64, 0.35, 42);
    let mut rows = Vec::new();
    for &n in &a.sizes {
        let lake = a.work.join(format!("n{n}"));
        if !lake.exists() {
            write_lake(&lake, &g, n, a.dim, 8, 8)?;
        }
        let name = format!("grpc_n{n}");
        let lake_url = lake.canonicalize()?.to_string_lossy().into_owned();
        client
            .create_collection(proto::CollectionSpec {
                name: name.clone(),
                source: Some(proto::Source {
                    kind: Some(proto::source::Kind::Parquet(proto::ParquetSource {
                        url: lake_url,
                        id_column: rulake_lake::ID_COLUMN.into(),
                        vector_column: rulake_lake::VECTOR_COLUMN.into(),
                        options: Default::default(),
                    })),
                }),
                dimension: a.dim as u32,
                metric: proto::Metric::L2 as i32,
                partitions: 1,
                // Not fresh: a fresh collection lists the lake before every
                // answer, which would dominate both sides alike.
                consistency: Some(proto::Consistency {
                    level: Some(proto::consistency::Level::Eventual(
                        proto::consistency::Eventual {
                            max_staleness_ms: 3_600_000,
                        },
                    )),
                }),
                ..Default::default()
            })
            .await?;
        let queries: Vec<Vec<f32>> = g
            .sample(a.queries, 7)
            .chunks(a.dim)
            .map(<[f32]>::to_vec)
            .collect();
        eprintln!("n = {n}: loading the collection (first answer)");
        let t = Instant::now();
        let first = client.search(&name, &queries[0], 10).await?;
        *canned.lock().unwrap_or_else(|p| p.into_inner()) = first;
        eprintln!(
            "n = {n}: first answer in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let params = SearchParams {
            k: 10,
            nprobe: None,
            rerank: None,
        };
        // Single queries, alternating rounds of 100.
        let (mut local, mut remote, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        let pb = bar(3 * a.queries as u64, "single queries");
        for round in queries.chunks(100) {
            for q in round {
                let t = Instant::now();
                engine.search(&name, q, params).await?;
                local.push(t.elapsed().as_secs_f64());
            }
            for q in round {
                let t = Instant::now();
                client.search(&name, q, 10).await?;
                remote.push(t.elapsed().as_secs_f64());
            }
            for q in round {
                let mut r = Request::new(proto::SearchRequest {
                    collection: name.clone(),
                    query: Some(proto::Vector { values: q.clone() }),
                    params: Some(proto::SearchParams {
                        k: 10,
                        ..Default::default()
                    }),
                });
                r.set_timeout(Duration::from_secs(30));
                let t = Instant::now();
                echo.search(r).await?;
                floor.push(t.elapsed().as_secs_f64());
            }
            pb.inc(3 * round.len() as u64);
        }
        pb.finish_and_clear();
        // BatchSearch, alternating batches.
        let (mut local_t, mut remote_t) = (Duration::ZERO, Duration::ZERO);
        let pb = bar(2 * a.batches as u64, "batch search");
        let batch_params = proto::SearchParams {
            k: 10,
            ..Default::default()
        };
        for b in 0..a.batches {
            let qs: Vec<Vec<f32>> = (0..a.batch)
                .map(|i| queries[(b * a.batch + i) % queries.len()].clone())
                .collect();
            let t = Instant::now();
            engine.batch_search(&name, &qs, params).await?;
            local_t += t.elapsed();
            let t = Instant::now();
            client
                .batch_search(&name, &qs, batch_params.clone())
                .await?;
            remote_t += t.elapsed();
            pb.inc(2);
        }
        pb.finish_and_clear();
        let total = (a.batches * a.batch) as f64;
        rows.push(Row {
            n,
            local: summarize(local),
            remote_samples: remote.clone(),
            remote: summarize(remote),
            echo: summarize(floor),
            local_batch_qps: total / local_t.as_secs_f64(),
            remote_batch_qps: total / remote_t.as_secs_f64(),
        });
        client.drop_collection(&name).await?;
    }

    // Managed ingest: vectors/s from the client into Parquet on local disk.
    client
        .create_collection(proto::CollectionSpec {
            name: "grpc_ingest".into(),
            source: Some(proto::Source {
                kind: Some(proto::source::Kind::Managed(proto::ManagedSource {})),
            }),
            dimension: a.dim as u32,
            metric: proto::Metric::L2 as i32,
            partitions: 1,
            ..Default::default()
        })
        .await?;
    let vectors = g.sample(a.ingest, 99);
    let records: Vec<(Id, Vec<f32>)> = vectors
        .chunks(a.dim)
        .enumerate()
        .map(|(i, v)| (Id::Num(i as u64), v.to_vec()))
        .collect();
    let pb = bar(a.ingest as u64, "ingest");
    let p = pb.clone();
    let t = Instant::now();
    let done = client
        .clone()
        .with_timeout(Duration::from_secs(3600))
        .ingest("grpc_ingest", records, 1000, move |sent| {
            p.set_position(sent)
        })
        .await?;
    let ingest_secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    client.drop_collection("grpc_ingest").await?;
    node.shutdown().await;

    let mut md = String::new();
    writeln!(md, "## gRPC tax and ingest\n")?;
    writeln!(
        md,
        "`cargo run --release -p rulake-bench -- grpc` (sizes {:?}, D = {}, k = 10, collection defaults, one partition). \
One process serves the API on loopback over an embedded node; the same queries go to the engine directly \
(in-process) and through `rulake-client` over gRPC, in alternating rounds of 100 single queries and \
alternating batches, so both sides see the same machine load. Latency is per query, seen by the caller. \
The echo is the floor of a unary call on this machine, measured in the same rounds: the generated `SearchService` \
on a second tonic server (same settings), whose `Search` does no work and answers a copy of a real answer, so the \
same request and response bytes cross the wire. Search overhead is gRPC p50 − in-process p50.\n",
        a.sizes,
        a.dim
    )?;
    writeln!(
        md,
        "| n | in-process mean / p50 / p99 (µs) | gRPC mean / p50 / p99 (µs) | echo mean / p50 / p99 (µs) | Search overhead (µs) | overhead / echo p50 | target | BatchSearch of {} in-process (q/s) | over gRPC (q/s) | ratio | target |",
        a.batch
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in &rows {
        let us = |x: f64| x * 1e6;
        writeln!(
            md,
            "| {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.0} | {:.2}× | ≤ 2× | {:.0} | {:.0} | {:.2}× | ≥ 0.95× |",
            r.n,
            us(r.local.mean),
            us(r.local.p50),
            us(r.local.p99),
            us(r.remote.mean),
            us(r.remote.p50),
            us(r.remote.p99),
            us(r.echo.mean),
            us(r.echo.p50),
            us(r.echo.p99),
            us(r.remote.p50 - r.local.p50),
            (r.remote.p50 - r.local.p50) / r.echo.p50,
            r.local_batch_qps,
            r.remote_batch_qps,
            r.remote_batch_qps / r.local_batch_qps,
        )?;
    }
    writeln!(
        md,
        "\nManaged ingest: {} vectors of D = {} streamed in batches of 1,000, written as Parquet on local disk and \
committed as one generation (loaded before the call returns) in {:.1} s: **{:.0} vectors/s** end to end.\n",
        done.records,
        a.dim,
        ingest_secs,
        done.records as f64 / ingest_secs
    )?;
    print!("{md}");
    report::write_section(&a.output, "grpc", &md)?;
    eprintln!("wrote the grpc section of {}", a.output.display());

    let mut fan = String::new();
    writeln!(
        fan,
        "## Fan-out tail (simulated from the gRPC run)
"
    )?;
    writeln!(
        fan,
        "Written by the same `cargo run --release -p rulake-bench -- grpc` run as the section above: a query fanned \
out to F shards answers when its slowest shard does, so each simulated query takes the maximum of F latencies drawn \
from that run's gRPC Search calls (one shard's full round trip on loopback), 20,000 queries per width; hedged, a \
shard call that has taken longer than the per-shard p95 is sent once more and the first answer counts. Draws are \
independent, so real tails (shared networks, busy nodes) are heavier than these (`crates/rulake-bench/src/fanout.rs`).\n"
    )?;
    for r in &rows {
        writeln!(fan, "{}", fanout::table(r.n, &r.remote_samples)?)?;
    }
    print!("{fan}");
    report::write_section(&a.output, "fanout", &fan)?;
    Ok(())
}
