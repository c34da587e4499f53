//! The cluster roles as processes: `rulake shard`, `rulake coordinator`,
//! and `rulake dev`, which starts a whole cluster on loopback (three meta
//! members, N shard nodes, one coordinator) for trying the distributed
//! path on one machine. Meta members are `rulake meta`.

use crate::cluster_tls::{self, ClusterTlsArgs};
use anyhow::Context;
use rulake_api::ShardApi;
use rulake_catalog::{Follower, MetaClient};
use rulake_coordinator::{Coordinator, RouterConfig, ShardConfig, ShardNode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
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
    #[arg(long, default_value = "rulake-shard", env = "RULAKE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Cache budget in bytes.
    #[arg(long, default_value_t = 4 << 30, env = "RULAKE_CACHE_BYTES")]
    pub cache_bytes: usize,
    /// Heartbeat interval to the meta group, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    #[command(flatten)]
    pub observe: crate::observe::ObserveArgs,
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
}

/// `rulake coordinator` options: the public API's flags plus the cluster's.
#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// Meta members, `host:port,...`.
    #[arg(long, value_delimiter = ',', required = true, env = "RULAKE_META")]
    pub meta: Vec<String>,
    /// A shard request still running after this many milliseconds is
    /// duplicated on another replica.
    #[arg(long, default_value_t = 50)]
    pub hedge_ms: u64,
    /// Catalog poll interval, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    #[command(flatten)]
    pub serve: crate::serve::Args,
}

/// `rulake dev` options.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Shard nodes to start.
    #[arg(long, default_value_t = 3)]
    pub shards: u32,
    /// Where the coordinator's public API listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Every process's data lives under here (meta-N, shard-N, managed).
    #[arg(long, default_value = "rulake-dev")]
    pub data_dir: PathBuf,
    /// Cache budget of each shard node, bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub cache_bytes: usize,
    /// A shard node silent this long (milliseconds) loses its partitions.
    #[arg(long, default_value_t = 3000)]
    pub shard_grace_ms: u64,
    /// Passed to every process: mutual TLS between them. The certificate
    /// must name 127.0.0.1.
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
}

fn parse_id(s: &str) -> Result<u64, String> {
    rulake_coordinator::parse_node_id(s).ok_or_else(|| {
        format!("{s:?} is not a node id: a number ≥ 1 or a pod name ending in -<ordinal>")
    })
}

pub async fn shard(a: ShardArgs) -> anyhow::Result<()> {
    let advertise = a.advertise.clone().unwrap_or_else(|| a.listen.to_string());
    let mut cfg = ShardConfig::new(a.id, &advertise, a.meta.clone(), &a.data_dir);
    cfg.cache_bytes = a.cache_bytes;
    cfg.heartbeat = Duration::from_millis(a.heartbeat_ms.max(10));
    let tls = a.tls.load()?;
    cfg.transport = cluster_tls::transport(tls.as_ref());
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("bind {}", a.listen))?;
    let node = ShardNode::start(cfg).await?;
    let engine = Arc::new(node.engine().clone());
    let (metrics_layer, metrics_http) =
        crate::observe::start(&a.observe, &engine, None, Some(node.coordinator())).await?;
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
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(metrics_layer)
        .add_service(ShardApi::new(node).server())
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, crate::serve::shutdown())
        .await?;
    metrics_http.abort();
    eprintln!("rulake shard: stopped");
    Ok(())
}

pub async fn coordinator(a: CoordinatorArgs) -> anyhow::Result<()> {
    crate::serve::check(&a.serve)?;
    let tls = a.tls.load()?;
    let transport = cluster_tls::transport(tls.as_ref());
    let meta = MetaClient::with_transport(&a.meta, &transport)?;
    let follower = Follower::spawn(meta.clone(), Duration::from_millis(a.poll_ms.max(10)));
    if !follower.catch_up(1, Duration::from_secs(60)).await {
        anyhow::bail!("could not read the catalog from {}", a.meta.join(","));
    }
    let managed = match &a.serve.managed_url {
        Some(u) => u.clone(),
        None => {
            let dir = a.serve.data_dir.join("managed");
            std::fs::create_dir_all(&dir)?;
            format!("file://{}", std::fs::canonicalize(&dir)?.display())
        }
    };
    let router = RouterConfig {
        hedge_delay: Duration::from_millis(a.hedge_ms),
        request_timeout: a.serve.request_timeout,
        transport,
        ..RouterConfig::default()
    };
    let coord = Coordinator::open_remote(meta, follower, &managed, router).await?;
    if let Some(r) = coord.router() {
        r.refresh_status().await;
    }
    let engine = Arc::new(coord.engine().clone());
    let label = format!("meta {}, managed files at {managed}", a.meta.join(","));
    crate::serve::serve_api(&a.serve, coord, &engine, None, "coordinator", &label).await?;
    eprintln!("rulake coordinator: stopped");
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // The shell's `kill`: a slim image may have no /bin/kill.
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -s TERM {}", c.id())])
                .status();
        }
        for (name, c) in &mut self.0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if std::time::Instant::now() > deadline => {
                        eprintln!("rulake dev: {name} did not stop; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

fn spawn(
    children: &mut Children,
    tls: &[String],
    name: &str,
    log: &Path,
    args: &[String],
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let out = std::fs::File::create(log)?;
    let child = Command::new(exe)
        .args(args)
        .args(tls)
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {name}"))?;
    children.0.push((name.to_owned(), child));
    Ok(())
}

pub async fn dev(a: DevArgs) -> anyhow::Result<()> {
    if a.shards == 0 {
        anyhow::bail!("--shards must be at least 1");
    }
    std::fs::create_dir_all(&a.data_dir)?;
    let root = std::fs::canonicalize(&a.data_dir)?;
    let s = |p: &Path| p.display().to_string();
    let mut children = Children(Vec::new());
    let tls = a.tls.to_args();
    let metas: Vec<String> = (0..3)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<anyhow::Result<_>>()?;
    let peers: Vec<String> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={m}", i + 1))
        .collect();
    for (i, m) in metas.iter().enumerate() {
        let id = i + 1;
        spawn(
            &mut children,
            &tls,
            &format!("meta-{id}"),
            &root.join(format!("meta-{id}.log")),
            &[
                "meta".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                m.clone(),
                "--peers".into(),
                peers.join(","),
                "--data-dir".into(),
                s(&root.join(format!("meta-{id}"))),
                "--shard-grace-ms".into(),
                a.shard_grace_ms.to_string(),
            ],
        )?;
    }
    for id in 1..=a.shards {
        let port = free_port()?;
        spawn(
            &mut children,
            &tls,
            &format!("shard-{id}"),
            &root.join(format!("shard-{id}.log")),
            &[
                "shard".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--meta".into(),
                metas.join(","),
                "--data-dir".into(),
                s(&root.join(format!("shard-{id}"))),
                "--cache-bytes".into(),
                a.cache_bytes.to_string(),
                "--metrics-listen".into(),
                "127.0.0.1:0".into(),
            ],
        )?;
    }
    let managed = root.join("managed");
    std::fs::create_dir_all(&managed)?;
    spawn(
        &mut children,
        &tls,
        "coordinator",
        &root.join("coordinator.log"),
        &[
            "coordinator".into(),
            "--listen".into(),
            a.listen.to_string(),
            "--meta".into(),
            metas.join(","),
            "--data-dir".into(),
            s(&root.join("coordinator")),
            "--managed-url".into(),
            format!("file://{}", managed.display()),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ],
    )?;
    eprintln!(
        "rulake dev: 3 meta members ({}), {} shard nodes, coordinator on {}; logs and data in {}",
        metas.join(", "),
        a.shards,
        a.listen,
        root.display()
    );
    eprintln!(
        "rulake dev: try `rulake collections list --addr http://{}`; Ctrl-C stops everything",
        a.listen
    );
    // A process that dies is reported, not replaced, and the rest go on:
    // the cluster is here to show what it does when a node fails.
    let watch = async {
        let mut reported = std::collections::HashSet::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (name, c) in &mut children.0 {
                if let Ok(Some(status)) = c.try_wait() {
                    if reported.insert(name.clone()) {
                        eprintln!("rulake dev: {name} exited ({status}); see its log");
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = crate::serve::shutdown() => eprintln!("rulake dev: stopping"),
        _ = watch => {}
    }
    drop(children);
    Ok(())
}
