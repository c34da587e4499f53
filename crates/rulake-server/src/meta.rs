//! `rulake meta`: run a member of the catalog's Raft group. The member's
//! flags live here; the client subcommands that administer a running group
//! live with the other client commands in the `rulake` binary.

use crate::shutdown::{Shutdown, GRACE};
use anyhow::{bail, Context};
use rulake_catalog::{CatalogConfig, CatalogNode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of a running member.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Address of the HTTP port serving /metrics, /healthz and /readyz (off when unset).
    #[arg(long, env = "RULAKE_META_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// This member's id (≥ 1).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on (Raft and catalog services).
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Address others reach this member at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Initial members, `id=host:port,...`, the same on every initial member
    /// (include this one). Omit for a member that joins later as a learner.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Data directory (log, vote, snapshots).
    #[arg(long, default_value = "rulake-meta")]
    data_dir: PathBuf,
    /// Leader heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Election timeout lower bound, milliseconds.
    #[arg(long, default_value_t = 500)]
    election_min_ms: u64,
    /// Election timeout upper bound, milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_max_ms: u64,
    /// Build a snapshot every this many log entries.
    #[arg(long, default_value_t = 1000)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = 1000)]
    keep_logs: u64,
    /// A shard node silent this long (milliseconds) is taken out of
    /// placement until it beats again.
    #[arg(long, default_value_t = 5000)]
    shard_grace_ms: u64,
    #[command(flatten)]
    tls: crate::cluster_tls::ClusterTlsArgs,
}

/// Parse `--peers`: `id=host:port,...`, ids ≥ 1, each once.
pub fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for p in peers.iter().filter(|p| !p.is_empty()) {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("peer {p:?} is not id=host:port"))?;
        let id: u64 = id.parse().with_context(|| format!("peer id in {p:?}"))?;
        if id == 0 || addr.is_empty() || out.insert(id, addr.to_owned()).is_some() {
            bail!("peer {p:?}: ids start at 1, appear once, and need an address");
        }
    }
    Ok(out)
}

/// Run a member until `shutdown` fires.
pub async fn run(a: RunArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(id) = a.id else {
        bail!("`rulake meta` runs a member and needs --id (or use a subcommand, see --help)");
    };
    let peers = parse_peers(&a.peers)?;
    if !peers.is_empty() && !peers.contains_key(&id) {
        bail!("--peers must include this member ({id})");
    }
    let mut cfg = CatalogConfig::new(id, a.listen, a.data_dir);
    cfg.advertise = a.advertise.unwrap_or_else(|| a.listen.to_string());
    cfg.peers = peers;
    cfg.heartbeat = Duration::from_millis(a.heartbeat_ms);
    cfg.election_min = Duration::from_millis(a.election_min_ms);
    cfg.election_max = Duration::from_millis(a.election_max_ms);
    cfg.snapshot_every = a.snapshot_every;
    cfg.keep_logs = a.keep_logs;
    cfg.placement.grace = Duration::from_millis(a.shard_grace_ms);
    let tls = a.tls.load()?;
    cfg.transport = crate::cluster_tls::transport(tls.as_ref());
    eprintln!(
        "rulake meta: member {id} listening on {} (data in {})",
        cfg.listen,
        cfg.data_dir.display()
    );
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("bind {}", cfg.listen))?;
    let node = CatalogNode::start(&cfg).await?;
    if let Some(addr) = a.metrics_listen {
        crate::observe::start_meta(&node, addr, &shutdown).await?;
    }
    let incoming = crate::cluster_tls::incoming(listener, tls.as_ref());
    let served = node.run(&cfg.peers, incoming, shutdown.signalled()).await;
    shutdown.wait(GRACE).await;
    Ok(served?)
}
