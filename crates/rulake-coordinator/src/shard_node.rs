//! The shard role: an engine that serves only the partitions the
//! assignment gives this node.
//!
//! A shard node registers itself in the catalog, follows the catalog by
//! polling, brings its engine to it with the same level-triggered sync the
//! embedded server uses, and then narrows each collection to the partitions
//! it owns or hands off. Partitions it gains are loaded in the background
//! (from its persisted cache when the generation matches, else from the
//! lake) when they fit the budget nobody holds; partitions it loses leave
//! memory at once. Every heartbeat tells each meta member it is alive and
//! which partitions are warm, which is what lets the leader retire a
//! hand-off.
//!
//! A node that is about to stop ([`ShardNode::leave`]) leaves routing, not
//! placement: its status reports tell coordinators it has nothing warm, so
//! they send new scans to the other replicas, while its heartbeats still
//! tell the meta group the truth and its partitions stay assigned to it. A
//! restart (an upgrade, an evicted pod) therefore moves no partition; only
//! a drain through the admin API (a scale-down) does.
//!
//! The gRPC face of the role (`ShardService`) is in `rulake-api`, with
//! every other error-to-status mapping.

use crate::router::partition_key;
use crate::{Coordinator, CoordinatorError, Result};
use parking_lot::Mutex;
use rulake_catalog::{CatalogClient, Command, Follower, NodeRecord, Transport};
use rulake_engine::{CacheConfig, RuLake};
use rulake_proto::internal::v1 as pb;
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a shard node runs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Node id, unique in the cluster (≥ 1), stable across restarts.
    pub id: u64,
    /// Address coordinators reach this node's `ShardService` at.
    pub advertise: String,
    /// Meta members' addresses.
    pub meta: Vec<String>,
    /// Persisted partitions live under `data_dir/cache`.
    pub data_dir: PathBuf,
    /// Partition cache budget in bytes.
    pub cache_bytes: usize,
    /// Heartbeat interval (the meta group's grace period should be a few of these).
    pub heartbeat: Duration,
    /// Catalog poll interval.
    pub poll: Duration,
    /// Channels to the meta group.
    pub transport: Transport,
}

impl ShardConfig {
    /// Defaults for node `id` advertised at `advertise`.
    pub fn new(id: u64, advertise: &str, meta: Vec<String>, data_dir: impl Into<PathBuf>) -> Self {
        ShardConfig {
            id,
            advertise: advertise.to_owned(),
            meta,
            data_dir: data_dir.into(),
            cache_bytes: 4 << 30,
            heartbeat: Duration::from_millis(500),
            poll: Duration::from_millis(200),
            transport: Transport::default(),
        }
    }
}

/// A running shard node. Cheap to clone.
#[derive(Clone)]
pub struct ShardNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    capacity: u64,
    engine: RuLake,
    coord: Coordinator,
    follower: Follower,
    meta: CatalogClient,
    /// Collections being loaded now.
    warming: Mutex<HashSet<String>>,
    /// Serialises catalog → engine applications.
    apply: tokio::sync::Mutex<u64>,
    /// Set by [`ShardNode::leave`]: the node is stopping.
    leaving: AtomicBool,
}

/// A shard node id from its name: a number (≥ 1) as is, or a StatefulSet
/// pod name `<set>-<ordinal>` as `ordinal + 1`, so Kubernetes pods need no
/// id of their own and admin calls may name a node either way.
pub fn parse_node_id(name: &str) -> Option<u64> {
    if let Ok(n) = name.parse::<u64>() {
        return (n > 0).then_some(n);
    }
    let (_, ordinal) = name.rsplit_once('-')?;
    ordinal.parse::<u64>().ok()?.checked_add(1)
}

/// How long registration keeps trying while the meta group comes up.
const REGISTER_FOR: Duration = Duration::from_secs(60);

impl ShardNode {
    /// Register with the meta group, follow the catalog and start the
    /// background work (apply, warm, heartbeat).
    pub async fn start(cfg: ShardConfig) -> Result<ShardNode> {
        if cfg.id == 0 {
            return Err(CoordinatorError::InvalidArgument(
                "shard node ids start at 1".into(),
            ));
        }
        let meta = CatalogClient::with_transport(&cfg.meta, &cfg.transport)?;
        let record = NodeRecord {
            id: cfg.id,
            addr: cfg.advertise.clone(),
            capacity_bytes: cfg.cache_bytes as u64,
            draining: false,
        };
        let start = Instant::now();
        let index = loop {
            match meta.write(&Command::RegisterNode(record.clone())).await {
                Ok((index, _)) => break index,
                Err(e) if start.elapsed() < REGISTER_FOR => {
                    tracing::warn!(error = %e, "cannot register with the meta group yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let follower = Follower::spawn(meta.clone(), cfg.poll);
        if !follower.catch_up(index, Duration::from_secs(30)).await {
            return Err(CoordinatorError::Unavailable(
                "registered, but the catalog could not be read back".into(),
            ));
        }
        let engine = RuLake::new(CacheConfig {
            budget_bytes: cfg.cache_bytes,
            persist_dir: Some(cfg.data_dir.join("cache")),
        });
        let coord = Coordinator::open(engine.clone(), meta.clone(), follower.state(), "").await?;
        let node = ShardNode {
            inner: Arc::new(Inner {
                id: cfg.id,
                capacity: cfg.cache_bytes as u64,
                engine,
                coord,
                follower,
                meta,
                warming: Mutex::new(HashSet::new()),
                apply: tokio::sync::Mutex::new(0),
                leaving: AtomicBool::new(false),
            }),
        };
        node.apply().await?;
        tokio::spawn(node.clone().follow());
        tokio::spawn(node.clone().beat(cfg.heartbeat));
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The coordinator this node applies the catalog through (no router:
    /// a shard answers only for itself).
    pub fn coordinator(&self) -> &Coordinator {
        &self.inner.coord
    }

    /// The engine (only the partitions assigned here).
    pub fn engine(&self) -> &RuLake {
        &self.inner.engine
    }

    /// Catch up with the catalog to at least `index` (bounded wait) and
    /// apply it, so a coordinator's read sees its own writes.
    pub async fn catch_up(&self, index: u64) -> Result<()> {
        if self.inner.follower.applied_index() < index {
            self.inner
                .follower
                .catch_up(index, Duration::from_secs(5))
                .await;
        }
        if *self.inner.apply.lock().await < index {
            self.apply().await?;
        }
        Ok(())
    }

    /// Bring the engine to the catalog and narrow it to the assignment.
    async fn apply(&self) -> Result<()> {
        let mut applied = self.inner.apply.lock().await;
        let index = self.inner.follower.applied_index();
        self.inner.coord.sync().await?;
        let cat = self.inner.coord.catalog();
        for rec in cat.collections.values() {
            let owned: BTreeSet<u32> = (0..rec.partitions)
                .filter(|p| {
                    cat.assignment
                        .serving(&partition_key(&rec.name, *p))
                        .contains(&self.inner.id)
                })
                .collect();
            if let Err(e) = self.inner.engine.set_owned(&rec.name, Some(owned)) {
                tracing::warn!(collection = %rec.name, error = %e, "could not narrow collection");
            }
        }
        *applied = index;
        drop(applied);
        self.warm_missing();
        Ok(())
    }

    /// Load, in the background, the owned partitions that are not warm and
    /// fit the budget nobody holds ([`RuLake::prefetch`]): a node assigned
    /// more than its budget leaves the rest cold for queries to load, by
    /// least-recently-used eviction, rather than evicting to warm.
    fn warm_missing(&self) {
        for name in self.inner.engine.list_collections() {
            let cold = self
                .inner
                .engine
                .partition_states(&name)
                .is_ok_and(|ps| ps.iter().any(|p| !p.warm));
            if !cold || !self.inner.warming.lock().insert(name.clone()) {
                continue;
            }
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.inner.engine.prefetch(&name).await {
                    tracing::warn!(collection = %name, error = %e, "could not load assigned partitions");
                }
                node.inner.warming.lock().remove(&name);
            });
        }
    }

    async fn follow(self) {
        let mut changes = self.inner.follower.changes();
        let weak = Arc::downgrade(&self.inner);
        drop(self);
        while changes.changed().await.is_ok() {
            let Some(inner) = weak.upgrade() else { return };
            let node = ShardNode { inner };
            if let Err(e) = node.apply().await {
                tracing::warn!(error = %e, "could not apply the catalog; retrying on the next change");
            }
        }
    }

    async fn beat(self, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        drop(self);
        let mut failures = 0u32;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let node = ShardNode { inner };
            let req = pb::HeartbeatRequest {
                node_id: node.inner.id,
                addr: String::new(),
                capacity_bytes: node.inner.capacity,
                // The truth, even while leaving: placement must not move
                // partitions off a node that is only restarting.
                partitions: node.partition_states(),
            };
            match node.inner.meta.heartbeat(req).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 20 == 0 {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            }
            // Retry loads that failed (the lake was down) or found no free
            // budget (something was dropped or evicted since).
            node.warm_missing();
            drop(node);
            tokio::time::sleep(every).await;
        }
    }

    /// Stop offering this node to new scans: from now on its status
    /// reports have nothing warm, so every coordinator's routing, at its
    /// next status poll, ranks the partitions' other replicas first. It
    /// goes on answering whatever still reaches it (scans already sent, a
    /// partition with no other replica), and its assignment is unchanged.
    /// Not undone: a node leaves routing only to stop.
    pub fn leave(&self) {
        if !self.inner.leaving.swap(true, Ordering::SeqCst) {
            tracing::info!(
                node = self.inner.id,
                "leaving routing: reporting no warm partition"
            );
        }
    }

    /// Whether [`ShardNode::leave`] was called.
    pub fn is_leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::SeqCst)
    }

    /// Every partition this node holds, as it is.
    fn partition_states(&self) -> Vec<pb::PartitionState> {
        let engine = &self.inner.engine;
        let mut partitions = Vec::new();
        for name in engine.list_collections() {
            for p in engine.partition_states(&name).unwrap_or_default() {
                partitions.push(pb::PartitionState {
                    key: partition_key(&name, p.partition),
                    warm: p.warm,
                    generation: p.generation.map(|g| g.0).unwrap_or_default(),
                    vectors: p.vectors,
                });
            }
        }
        partitions
    }

    /// What this node serves now, as coordinators should route by it: a
    /// leaving node reports every partition cold.
    pub fn status(&self) -> pb::ShardStatusReply {
        let mut partitions = self.partition_states();
        if self.is_leaving() {
            for p in &mut partitions {
                p.warm = false;
            }
        }
        let cache = self.inner.engine.cache_stats();
        pb::ShardStatusReply {
            node_id: self.inner.id,
            partitions,
            cache_bytes: cache.bytes as u64,
            cache_budget_bytes: self.inner.capacity,
            epoch: self.inner.coord.catalog().assignment.epoch,
            cache: Some(cache_stats_message(&cache)),
        }
    }
}

/// A node's cache figures as `CacheStats` reports them: what a single
/// server answers for itself and what each shard node reports to
/// coordinators, so `rulake stats` reads the same either way.
pub fn cache_stats_message(s: &rulake_engine::CacheStats) -> rulake_proto::v1::CacheStats {
    rulake_proto::v1::CacheStats {
        hits: s.hits,
        misses: s.misses,
        evictions: s.evictions,
        refused: s.refused,
        builds: s.builds,
        incremental_builds: s.incremental_builds,
        build_seconds: s.build_seconds,
        disk_loads: s.disk_loads,
        errors: s.errors.len() as u64,
        partitions: s.partitions as u32,
        bytes: s.bytes as u64,
        budget_bytes: s.budget_bytes as u64,
        loading_bytes: s.loading_bytes as u64,
        resident_bytes: s.resident_bytes,
        peak_resident_bytes: s.peak_resident_bytes,
    }
}
