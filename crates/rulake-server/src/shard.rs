//! `rulake shard`: a shard node. It registers with the meta group, builds
//! the partitions the catalog assigns it from the lake, and serves them to
//! coordinators over the internal `ShardService`. On the shutdown signal
//! it leaves routing and drains before it stops (see [`crate::drain`]).

use crate::cluster_tls::{self, ClusterTlsArgs};
use crate::drain::{drain, Calls};
use crate::shutdown::{Shutdown, GRACE};
use anyhow::Context;
use rulake_api::ShardApi;
use rulake_coordinator::{ShardConfig, ShardNode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `rulake shard` options.
#[derive(clap::Args)]
pub struct ShardArgs {
    /// This node's id, stable across restarts: a number ≥ 1, or a
    /// StatefulSet pod name `<set>-<ordinal>` (id = ordinal + 1).
    #[arg(long, alias = "node-id", env = "RULAKE_NODE_ID", value_parser = parse_id)]
    pub id: u64,
    /// Address the internal ShardService listens on.
    #[arg(long, default_value = "127.0.0.1:7800", env = "RULAKE_LISTEN")]
    pub listen: SocketAddr,
    /// Address coordinators reach this node at (default: --listen).
    #[arg(long, env = "RULAKE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Meta members, `host:port,...`.
    #[arg(long, value_delimiter = ',', required = true, env = "RULAKE_META")]
    pub meta: Vec<String>,
    /// Persisted partitions go under `cache/` here.
    #[arg(long, default_value = "rulake-cache", env = "RULAKE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Cache budget in bytes; refused when it cannot fit the memory limit
    /// (default: a share of the cgroup's memory limit, else of the
    /// machine's memory; docs/operations.md, "Memory").
    #[arg(long, env = "RULAKE_CACHE_BYTES")]
    pub cache_bytes: Option<usize>,
    /// Heartbeat interval to the meta group, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    /// On SIGTERM, the longest time (milliseconds) to keep answering while
    /// coordinators move new scans to other replicas; a node whose
    /// partitions have no other replica keeps answering this long.
    #[arg(long, default_value_t = 15_000, env = "RULAKE_DRAIN_MS")]
    pub drain_ms: u64,
    /// Metrics port and recall sampling.
    #[command(flatten)]
    pub observe: crate::observe::ObserveArgs,
    /// Mutual TLS towards the meta group and coordinators.
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    /// Where sources may come from (as the coordinators allow them).
    #[command(flatten)]
    pub sources: crate::sources::SourceArgs,
}

fn parse_id(s: &str) -> Result<u64, String> {
    rulake_coordinator::parse_node_id(s).ok_or_else(|| {
        format!("{s:?} is not a node id: a number ≥ 1 or a pod name ending in -<ordinal>")
    })
}

/// Run a shard node until `shutdown` fires.
pub async fn run(a: ShardArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.data_dir)?;
    let mut own = crate::sources::own_paths([Some(&a.data_dir)]);
    own.extend(crate::sources::own_paths(
        a.tls.files().into_iter().map(Some),
    ));
    a.sources.install("shard", &own)?;
    let advertise = a.advertise.clone().unwrap_or_else(|| a.listen.to_string());
    let mut cfg = ShardConfig::new(a.id, &advertise, a.meta.clone(), &a.data_dir);
    cfg.cache_bytes = rulake_engine::memory::node_budget(a.cache_bytes)?;
    cfg.heartbeat = Duration::from_millis(a.heartbeat_ms.max(10));
    let tls = a.tls.load()?;
    cfg.transport = cluster_tls::transport(tls.as_ref());
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("bind {}", a.listen))?;
    let node = ShardNode::start(cfg).await?;
    let engine = Arc::new(node.engine().clone());
    let metrics_layer = crate::observe::start(
        &a.observe,
        &engine,
        None,
        Some(node.coordinator()),
        &shutdown,
    )
    .await?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    eprintln!(
        "rulake shard: node {} listening on {} (meta {}, data {})",
        a.id,
        a.listen,
        a.meta.join(","),
        a.data_dir.display()
    );
    let incoming = cluster_tls::incoming(listener, tls.as_ref());
    let calls = Calls::default();
    let stop = {
        let (node, calls, signalled) = (node.clone(), calls.clone(), shutdown.signalled());
        let most = Duration::from_millis(a.drain_ms);
        async move {
            signalled.await;
            drain(&node, &calls, &health_reporter, most).await;
        }
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(metrics_layer)
        .layer(calls.layer())
        .add_service(ShardApi::new(node).server())
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    shutdown.wait(GRACE).await;
    eprintln!("rulake shard: stopped");
    Ok(())
}
