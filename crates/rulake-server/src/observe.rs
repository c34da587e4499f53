//! What `rulake serve` and `rulake meta` add to be observable: the metrics
//! registry with the engine's (or Raft's) collectors and the lake I/O one, the gRPC metrics
//! layer, and the HTTP port serving `/metrics`, `/healthz` and `/readyz`
//! (see `docs/observability.md`).
//!
//! In one process this node is shard and coordinator at once, so readiness
//! is the shard's: every collection finished its first load. The port has
//! no authentication, so `/readyz` answers only `ready` or `not ready` with
//! a count; which collections wait, and why, goes to the log. A background
//! task warms collections that were created but not yet loaded (a shard
//! builds what it is assigned rather than waiting for the first query), and
//! records the placement as one process sees it: epoch 0 (no catalog
//! assignment yet) with every partition on this node.

use crate::shutdown::Shutdown;
use rulake_catalog::CatalogNode;
use rulake_engine::{RecallConfig, RuLake};
use rulake_metrics::engine::{shard_ready, EngineCollector};
use rulake_metrics::http::Endpoints;
use rulake_metrics::lake::LakeCollector;
use rulake_metrics::placement::PlacementMetrics;
use rulake_metrics::raft::{meta_ready, RaftCollector};
use rulake_metrics::{GrpcMetrics, GrpcMetricsLayer, Metrics};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the housekeeping task warms new collections and updates the
/// placement gauges.
const TICK: Duration = Duration::from_secs(1);

/// Wait before loading a collection again after its first load failed.
const WARM_RETRY: Duration = Duration::from_secs(10);

/// Observability flags of `rulake serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ObserveArgs {
    /// Address of the HTTP port serving /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9090", env = "RULAKE_METRICS_LISTEN")]
    pub metrics_listen: SocketAddr,
    /// Share of searches re-answered by an exact scan to measure recall
    /// (0 disables, 1 measures every query).
    #[arg(long, default_value_t = RecallConfig::default().sample_fraction, env = "RULAKE_RECALL_SAMPLE", value_parser = parse_fraction)]
    pub recall_sample: f64,
    /// Most exact scans per second for recall measurement (each scans a
    /// whole collection).
    #[arg(long, default_value_t = RecallConfig::default().max_scans_per_second, env = "RULAKE_RECALL_MAX_SCANS")]
    pub recall_max_scans: f64,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not a number between 0 and 1"))
}

/// Set up metrics for `engine` and start the HTTP port and the
/// housekeeping task under `shutdown`. Returns the layer to wrap the gRPC
/// server with.
pub async fn start(
    a: &ObserveArgs,
    engine: &Arc<RuLake>,
    meta: Option<&CatalogNode>,
    cluster: Option<&rulake_coordinator::Coordinator>,
    shutdown: &Shutdown,
) -> anyhow::Result<GrpcMetricsLayer> {
    engine.set_recall_config(RecallConfig {
        sample_fraction: a.recall_sample,
        max_scans_per_second: a.recall_max_scans,
        ..engine.recall_config()
    });
    let metrics = Metrics::new();
    let mut collector = EngineCollector::new(engine.as_ref().clone())?;
    // A process that is not itself a catalog member (shard, coordinator)
    // reports placement as the catalog it follows has it; `rulake serve`
    // is one node holding everything.
    let cluster = cluster.filter(|_| meta.is_none()).cloned();
    if let Some(router) = cluster.as_ref().and_then(|c| c.router()).cloned() {
        collector = collector.with_fanout(move || {
            let s = router.stats();
            rulake_metrics::engine::Fanout {
                queries: s.queries,
                searched: s.fanout_partitions,
                partial: s.partial,
                retries: s.retries,
                hedges: s.hedges,
            }
        });
    }
    metrics.register(Box::new(collector))?;
    // Every role that reads the lake (shard, `serve`) starts here.
    metrics.register(Box::new(LakeCollector::new()?))?;
    if let Some(node) = meta {
        // The embedded catalog member: the consensus panels read it too.
        metrics.register(Box::new(RaftCollector::start(node.clone())?))?;
    }
    let e = engine.clone();
    let grpc = GrpcMetrics::new(&metrics, move |c| e.has_collection(c))?;
    let placement = PlacementMetrics::new(&metrics)?;
    let listener = rulake_metrics::http::bind(a.metrics_listen).await?;
    eprintln!(
        "rulake serve: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    let shard = engine.clone();
    let endpoints = Endpoints::new(metrics).ready_when(move || shard_ready(&shard));
    shutdown.spawn(
        "metrics endpoint",
        serve_endpoints(endpoints, listener, shutdown.signalled()),
    );
    shutdown.spawn(
        "housekeeping",
        housekeeping(engine.clone(), placement, cluster),
    );
    Ok(grpc.layer())
}

async fn serve_endpoints(
    endpoints: Endpoints,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = endpoints.serve(listener, stop).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

async fn housekeeping(
    engine: Arc<RuLake>,
    placement: PlacementMetrics,
    cluster: Option<rulake_coordinator::Coordinator>,
) {
    if let Some(coord) = cluster {
        // A shard or coordinator: placement as the catalog has it (a shard
        // warms its partitions itself, as the catalog assigns them).
        let mut last = rulake_catalog::Assignment::default();
        loop {
            let a = coord.catalog().assignment;
            if a.epoch != last.epoch {
                let mut per: std::collections::BTreeMap<String, u64> = Default::default();
                for ns in a.partitions.values() {
                    for n in ns {
                        *per.entry(n.to_string()).or_default() += 1;
                    }
                }
                let (moved, _) = rulake_catalog::placement::moved(&last.partitions, &a.partitions);
                let moved = if last.epoch == 0 { 0 } else { moved };
                placement.set_assignment(
                    a.epoch,
                    per.iter().map(|(n, c)| (n.as_str(), *c)),
                    moved as u64,
                );
                last = a;
            }
            tokio::time::sleep(TICK).await;
        }
    }
    // When each collection's failed first load may be tried again.
    let mut retry_at: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    loop {
        let mut partitions = 0u64;
        let names = engine.list_collections();
        retry_at.retain(|n, _| names.contains(n));
        for name in names {
            let Ok(info) = engine.describe(&name) else {
                continue;
            };
            partitions += u64::from(info.spec.partitions);
            let due = retry_at
                .get(&name)
                .is_none_or(|t| *t <= tokio::time::Instant::now());
            if info.generation.is_none() && due {
                // Errors are kept in the collection's state (shown by an
                // authorized DescribeCollection, never by the open /readyz);
                // a failed load is tried again after WARM_RETRY.
                if let Err(e) = engine.refresh(&name).await {
                    tracing::warn!(collection = %name, error = %e, "warming failed");
                    retry_at.insert(name, tokio::time::Instant::now() + WARM_RETRY);
                }
            }
        }
        placement.set_assignment(0, [(rulake_api::service::LOCAL_NODE, partitions)], 0);
        tokio::time::sleep(TICK).await;
    }
}

/// A catalog member's observability port under `shutdown`: the Raft
/// collector on `/metrics`, and `/readyz` ready once the member knows a
/// leader.
pub async fn start_meta(
    node: &CatalogNode,
    listen: SocketAddr,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    metrics.register(Box::new(RaftCollector::start(node.clone())?))?;
    let l = rulake_metrics::http::bind(listen).await?;
    eprintln!("rulake meta: metrics on http://{}/metrics", l.local_addr()?);
    let n = node.clone();
    let endpoints = Endpoints::new(metrics).ready_when(move || meta_ready(&n));
    shutdown.spawn(
        "metrics endpoint",
        serve_endpoints(endpoints, l, shutdown.signalled()),
    );
    Ok(())
}
