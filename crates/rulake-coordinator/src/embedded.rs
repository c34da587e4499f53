//! Every role in one process (`rulake serve`, the embedded default): a
//! one-member meta group, the engine, and the coordinator over both, all
//! under one data directory. The meta member is served over in-memory
//! pipes ([`LocalLink`]), not a port: nothing outside this process can
//! read or write the catalog except through the public API and its
//! authentication. A restart on the
//! same directory finds the catalog (Raft log and snapshot) and the
//! persisted partition cache, so collections, aliases, deletes and managed
//! data survive it.

use crate::{Coordinator, CoordinatorError, Result};
use rulake_catalog::local::LOCAL_ADDR;
use rulake_catalog::{CatalogClient, CatalogConfig, CatalogNode, LocalLink};
use rulake_engine::{CacheConfig, RuLake};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How an embedded node runs.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Everything durable lives here: `meta/` (catalog), `cache/`
    /// (persisted partitions), `managed/` (managed collections' files,
    /// unless `managed_root` says otherwise).
    pub data_dir: PathBuf,
    /// Partition cache budget in bytes.
    pub cache_bytes: usize,
    /// Where managed collections' files go; `None`: under `data_dir`.
    pub managed_root: Option<String>,
}

impl EmbeddedConfig {
    /// Defaults for `data_dir`: 4 GiB of cache.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            cache_bytes: 4 << 30,
            managed_root: None,
        }
    }
}

/// A running embedded node. Dropping it stops the meta member's server.
pub struct Embedded {
    /// The coordinator to serve from.
    pub coordinator: Coordinator,
    /// The meta member.
    pub meta: CatalogNode,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Unavailable(format!("{}: {e}", path.display()))
}

impl Embedded {
    /// Start the meta member (bootstrapping a one-member group on first
    /// start), wait for it to lead, and open the coordinator.
    pub async fn start(cfg: EmbeddedConfig) -> Result<Embedded> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| storage(&cfg.data_dir, e))?;
        let link = LocalLink::new();
        let transport = link.transport();
        // `listen` is never bound: the member is served through `link`.
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut mc = CatalogConfig::new(1, unbound, cfg.data_dir.join("meta"));
        mc.advertise = LOCAL_ADDR.to_owned();
        mc.transport = transport.clone();
        mc.peers = BTreeMap::from([(1, LOCAL_ADDR.to_owned())]);
        let meta = CatalogNode::start(&mc).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = meta.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server.serve_incoming(link.incoming(), shutdown).await {
                tracing::error!(error = %e, "meta member stopped");
            }
        });
        meta.bootstrap(&mc.peers).await?;
        // One member: it elects itself within an election timeout.
        let start = Instant::now();
        loop {
            if meta.is_leader() {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(CoordinatorError::Unavailable(
                    "the one-member meta group elected no leader within 10 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let engine = RuLake::new(CacheConfig {
            budget_bytes: cfg.cache_bytes,
            persist_dir: Some(cfg.data_dir.join("cache")),
        });
        let client = CatalogClient::with_transport(&[LOCAL_ADDR.to_owned()], &transport)?;
        let managed_root = match cfg.managed_root {
            Some(r) => r,
            None => {
                let dir = cfg.data_dir.join("managed");
                std::fs::create_dir_all(&dir).map_err(|e| storage(&dir, e))?;
                let abs = dir.canonicalize().map_err(|e| storage(&dir, e))?;
                format!("file://{}", abs.display())
            }
        };
        let coordinator = Coordinator::open(engine, client, meta.state(), &managed_root).await?;
        Ok(Embedded {
            coordinator,
            meta,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stop the meta member and wait for it.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let _ = self.meta.raft().shutdown().await;
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop_now();
    }
}
