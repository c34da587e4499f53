//! The coordinator: what a client's call becomes once it is past the wire.
//!
//! The catalog (a Raft group) is the truth about collections, aliases,
//! deletes and managed commits; the engine holds what can be searched. The
//! coordinator writes every change to the catalog first and then brings the
//! engine to the catalog's state with one level-triggered [`Coordinator::sync`]
//! (the same function runs at start-up, so a restart rebuilds the engine's
//! view from the catalog and the persisted partition cache). Queries read
//! the catalog only to resolve aliases, from the local applied state, so an
//! alias switch is one atomic step for every query.
//!
//! The engine is either in this process (`rulake serve`, the embedded
//! default) or spread over shard nodes (`rulake coordinator`): then every
//! query, id lookup and refresh goes through the [`router`], and the
//! catalog view is a polled [`rulake_catalog::Follower`]. Everything else
//! (catalog writes, aliases, ingest's files) is the same code.
//!
//! # Layout
//! - [`Coordinator`] — collections, aliases, search, deletes (this file).
//! - [`ingest`] — managed ingest: files first, one catalog commit, cleanup.
//! - [`embedded`] — every role in one process over one data directory.
//! - [`router`] — the fan-out to shard nodes: replica choice, retries,
//!   hedges, partial answers, exact merge.
//! - [`shard_node`] — the shard role: its catalog view, the partitions the
//!   assignment gives it, heartbeats.
//! - `sync` — catalog → engine.
//! - [`error`] — [`CoordinatorError`].

pub mod embedded;
pub mod error;
pub mod ingest;
pub mod router;
pub mod shard_node;
mod sync;

pub use embedded::{Embedded, EmbeddedConfig};
pub use error::{CoordinatorError, Result};
pub use ingest::Ingest;
pub use router::{PartitionRoute, Router, RouterConfig, RouterStats};
pub use shard_node::{parse_node_id, ShardConfig, ShardNode};

use parking_lot::RwLock;
use rulake_catalog::store::AppliedState;
use rulake_catalog::{
    CollectionChanges, CollectionRecord, Command, MetaClient, SourceKind, SourceRecord,
};
use rulake_engine::{CollectionInfo, FederatedResponse, RuLake, SearchResponse};
use rulake_types::{Generation, SearchParams, VectorId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a write waits for this process to apply what the catalog
/// committed (a one-member group applies at once; a follower may trail).
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What a collection is, as a client creates it: the catalog record (its
/// `source` field is set by the coordinator) and where its vectors come from.
#[derive(Clone, Debug)]
pub struct CollectionDef {
    /// The collection.
    pub record: CollectionRecord,
    /// Its source. For a managed source the prefix is chosen by the
    /// coordinator; whatever the caller put there is ignored.
    pub source: SourceKind,
    /// Object-store options of the source.
    pub options: BTreeMap<String, String>,
}

/// A collection as the coordinator describes it.
#[derive(Clone, Debug)]
pub struct CollectionView {
    /// The catalog's record.
    pub record: CollectionRecord,
    /// Its source.
    pub source: SourceRecord,
    /// Aliases pointing at it.
    pub aliases: Vec<String>,
    /// The engine's serving state.
    pub info: CollectionInfo,
}

/// The coordinator of one process. Cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    engine: RuLake,
    meta: MetaClient,
    view: Arc<RwLock<AppliedState>>,
    /// Where managed collections' files go (`file://...`, `s3://...`).
    managed_root: String,
    sync: tokio::sync::Mutex<sync::Synced>,
    /// Serialises the writers of one collection (ingest commits, deletes),
    /// which check ids against the data before committing.
    writers: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The shard nodes, when the engine is not in this process.
    remote: Option<Router>,
    /// The polled catalog view, when this process is not a meta member.
    follower: Option<rulake_catalog::Follower>,
}

impl Coordinator {
    /// A coordinator over `engine`, writing through `meta` and reading the
    /// catalog this process has applied from `view`. Brings the engine to
    /// the catalog's state before returning.
    pub async fn open(
        engine: RuLake,
        meta: MetaClient,
        view: Arc<RwLock<AppliedState>>,
        managed_root: &str,
    ) -> Result<Self> {
        Self::open_with(engine, meta, view, managed_root, None, None).await
    }

    /// A coordinator of a cluster: it holds no partitions and fans queries
    /// out to the shard nodes the catalog lists.
    pub async fn open_remote(
        meta: MetaClient,
        follower: rulake_catalog::Follower,
        managed_root: &str,
        router: RouterConfig,
    ) -> Result<Self> {
        let view = follower.state();
        let router = Router::start(view.clone(), router);
        let engine = RuLake::new(rulake_engine::CacheConfig {
            budget_bytes: 0,
            persist_dir: None,
        });
        Self::open_with(
            engine,
            meta,
            view,
            managed_root,
            Some(router),
            Some(follower),
        )
        .await
    }

    async fn open_with(
        engine: RuLake,
        meta: MetaClient,
        view: Arc<RwLock<AppliedState>>,
        managed_root: &str,
        remote: Option<Router>,
        follower: Option<rulake_catalog::Follower>,
    ) -> Result<Self> {
        let c = Coordinator {
            inner: Arc::new(Inner {
                engine,
                meta,
                view,
                managed_root: managed_root.trim_end_matches('/').to_owned(),
                sync: tokio::sync::Mutex::new(sync::Synced::default()),
                writers: Default::default(),
                remote,
                follower,
            }),
        };
        c.sync().await?;
        Ok(c)
    }

    /// The fan-out to shard nodes (`None`: the engine is in this process).
    pub fn router(&self) -> Option<&Router> {
        self.inner.remote.as_ref()
    }

    fn record(&self, target: &str) -> Result<CollectionRecord> {
        collection_in(&self.inner.view.read().catalog, target)
    }

    /// Which of `ids` a collection holds, wherever its partitions are.
    pub(crate) async fn existing_ids(
        &self,
        target: &str,
        ids: &HashSet<VectorId>,
    ) -> Result<Vec<VectorId>> {
        match &self.inner.remote {
            Some(r) => r.lookup(&self.record(target)?, ids).await,
            None => Ok(self.inner.engine.existing_ids(target, ids).await?),
        }
    }

    /// Check a collection's source now, wherever its partitions are.
    pub(crate) async fn refresh_target(&self, target: &str) -> Result<Generation> {
        match &self.inner.remote {
            Some(r) => r.refresh(&self.record(target)?).await,
            None => Ok(self.inner.engine.refresh(target).await?),
        }
    }

    /// The serving state of a collection: the engine's, or gathered from
    /// the shards' status reports.
    fn info(&self, target: &str) -> Result<CollectionInfo> {
        let Some(router) = &self.inner.remote else {
            return Ok(self.inner.engine.describe(target)?);
        };
        let (rec, src) = self.record_and_source(target)?;
        let routes = router.routes(&rec);
        let warm = routes.iter().filter(|r| !r.warm.is_empty()).count() as u32;
        let vectors = router.collection_vectors(&rec);
        Ok(CollectionInfo {
            spec: sync::engine_spec(&rec, &src)?,
            generation: router.generation(&rec),
            source_rows: vectors,
            vectors_cached: vectors,
            partitions_warm: warm,
            last_error: None,
        })
    }

    /// A collection's record and its source, under one read of the view
    /// (a second read while holding one could wait behind a writer forever).
    fn record_and_source(&self, target: &str) -> Result<(CollectionRecord, SourceRecord)> {
        let view = self.inner.view.read();
        let rec = collection_in(&view.catalog, target)?;
        let src = view
            .catalog
            .sources
            .get(&rec.source)
            .cloned()
            .ok_or_else(|| CoordinatorError::NotFound {
                kind: "source",
                name: rec.source.clone(),
            })?;
        Ok((rec, src))
    }

    fn check_queries(
        &self,
        target: &str,
        queries: &[Vec<f32>],
        params: &SearchParams,
    ) -> Result<CollectionRecord> {
        let (rec, src) = self.record_and_source(target)?;
        let spec = sync::engine_spec(&rec, &src)?;
        for q in queries {
            RuLake::check_query(&spec, q, params)?;
        }
        Ok(rec)
    }

    /// The engine behind the coordinator.
    pub fn engine(&self) -> &RuLake {
        &self.inner.engine
    }

    /// The catalog client.
    pub fn meta(&self) -> &MetaClient {
        &self.inner.meta
    }

    /// The catalog as this process has applied it.
    pub fn catalog(&self) -> rulake_catalog::Catalog {
        self.inner.view.read().catalog.clone()
    }

    /// Last catalog log index this process applied.
    pub fn applied_index(&self) -> u64 {
        self.inner.view.read().last_applied.map_or(0, |l| l.index)
    }

    /// Commit `cmd` and wait until this process has applied it.
    async fn write(&self, cmd: Command) -> Result<rulake_catalog::Applied> {
        let (index, applied) = self.inner.meta.write(&cmd).await?;
        if let Some(f) = &self.inner.follower {
            if !f.catch_up(index, APPLY_WAIT).await {
                return Err(CoordinatorError::Unavailable(format!(
                    "{} committed at index {index} but this coordinator's catalog view did not reach it within {APPLY_WAIT:?}",
                    cmd.name()
                )));
            }
            return Ok(applied);
        }
        let start = Instant::now();
        while self.applied_index() < index {
            if start.elapsed() > APPLY_WAIT {
                return Err(CoordinatorError::Unavailable(format!(
                    "{} committed at index {index} but not applied here within {APPLY_WAIT:?}",
                    cmd.name()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(applied)
    }

    fn writer_lock(&self, collection: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .writers
            .lock()
            .entry(collection.to_owned())
            .or_default()
            .clone()
    }

    /// The collection a name or alias stands for.
    pub fn resolve(&self, name: &str) -> Result<String> {
        let view = self.inner.view.read();
        let cat = &view.catalog;
        if let Some(target) = cat.aliases.get(name) {
            return Ok(target.clone());
        }
        if cat.collections.contains_key(name) {
            return Ok(name.to_owned());
        }
        Err(CoordinatorError::NotFound {
            kind: "collection or alias",
            name: name.to_owned(),
        })
    }

    // -- collections -------------------------------------------------------

    /// Create a collection: its source and record in the catalog, then the
    /// engine. Nothing is read from the lake until the first query.
    pub async fn create_collection(&self, def: CollectionDef) -> Result<CollectionView> {
        let name = def.record.name.clone();
        if self.inner.remote.is_none() && def.record.replication > 1 {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "replication factor {} needs shard nodes (`rulake coordinator` over `rulake shard`); a single-process server holds one replica",
                def.record.replication
            )));
        }
        let source = SourceRecord {
            name: name.clone(),
            kind: match def.source {
                SourceKind::Managed { .. } => SourceKind::Managed {
                    prefix: format!("{}/{name}/{}/", self.inner.managed_root, unique_suffix()),
                },
                other => other,
            },
            options: def.options,
        };
        // Everything the engine would refuse is refused before the catalog
        // hears of it.
        let mut record = def.record;
        record.source = name.clone();
        sync::engine_spec(&record, &source)?.validate()?;
        sync::open_source(&source)?;
        if self
            .inner
            .view
            .read()
            .catalog
            .collections
            .contains_key(&name)
        {
            return Err(rulake_engine::EngineError::AlreadyExists {
                kind: "collection",
                name,
            }
            .into());
        }
        self.write(Command::CreateSource(source)).await?;
        if let Err(e) = self.write(Command::CreateCollection(record)).await {
            // The source was this collection's alone.
            let _ = self.write(Command::DropSource { name: name.clone() }).await;
            return Err(e);
        }
        self.sync().await?;
        self.describe(&name)
    }

    /// Drop a collection, its source, its deletes and (for a managed
    /// collection) its files.
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        let source =
            {
                let view = self.inner.view.read();
                let rec = view.catalog.collections.get(name).ok_or_else(|| {
                    CoordinatorError::NotFound {
                        kind: "collection",
                        name: name.to_owned(),
                    }
                })?;
                view.catalog.sources.get(&rec.source).cloned()
            };
        let files = source
            .as_ref()
            .map(|s| self.committed_files(&s.name))
            .unwrap_or_default();
        self.write(Command::DropCollection {
            name: name.to_owned(),
        })
        .await?;
        if let Some(s) = &source {
            let used = self
                .inner
                .view
                .read()
                .catalog
                .collections
                .values()
                .any(|c| c.source == s.name);
            if !used {
                self.write(Command::DropSource {
                    name: s.name.clone(),
                })
                .await?;
            }
        }
        self.sync().await?;
        if let Some(SourceKind::Managed { prefix }) = source.map(|s| s.kind) {
            // The catalog no longer names these files; removing them is
            // housekeeping, and a failure only leaves garbage behind.
            if let Ok(m) = rulake_lake::ManagedSource::open(&prefix, &[]) {
                if let Err(e) = m.delete_files(&files).await {
                    tracing::warn!(collection = name, error = %e, "could not delete managed files");
                }
            }
        }
        Ok(())
    }

    fn committed_files(&self, source: &str) -> Vec<String> {
        self.inner
            .view
            .read()
            .catalog
            .managed
            .get(source)
            .map(|cs| cs.iter().flat_map(|c| c.files.clone()).collect())
            .unwrap_or_default()
    }

    /// Change what can change without a rebuild.
    pub async fn alter_collection(
        &self,
        name: &str,
        changes: CollectionChanges,
    ) -> Result<CollectionView> {
        if changes.replication.is_some_and(|r| r > 1) {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "replication factor {} needs the distributed shard role; this server holds one replica",
                changes.replication.unwrap_or_default()
            )));
        }
        self.write(Command::AlterCollection {
            name: name.to_owned(),
            changes,
        })
        .await?;
        self.sync().await?;
        self.describe(name)
    }

    /// Every collection, by name.
    pub fn list(&self) -> Vec<CollectionView> {
        let names: Vec<String> = self
            .inner
            .view
            .read()
            .catalog
            .collections
            .keys()
            .cloned()
            .collect();
        names.iter().filter_map(|n| self.describe(n).ok()).collect()
    }

    /// A collection (or the collection an alias points at).
    pub fn describe(&self, name: &str) -> Result<CollectionView> {
        let target = self.resolve(name)?;
        let (record, source, aliases) = {
            let view = self.inner.view.read();
            let cat = &view.catalog;
            let record = cat.collections[&target].clone();
            let source = cat.sources.get(&record.source).cloned().ok_or_else(|| {
                CoordinatorError::NotFound {
                    kind: "source",
                    name: record.source.clone(),
                }
            })?;
            let aliases = cat
                .aliases
                .iter()
                .filter(|(_, t)| **t == target)
                .map(|(a, _)| a.clone())
                .collect();
            (record, source, aliases)
        };
        let info = self.info(&target)?;
        Ok(CollectionView {
            record,
            source,
            aliases,
            info,
        })
    }

    // -- aliases -----------------------------------------------------------

    /// Point a new alias at a collection.
    pub async fn create_alias(&self, alias: &str, collection: &str) -> Result<()> {
        self.write(Command::CreateAlias {
            alias: alias.to_owned(),
            collection: collection.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Remove an alias.
    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        self.write(Command::DeleteAlias {
            alias: alias.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Re-point existing aliases, all in one catalog commit.
    pub async fn switch_aliases(&self, switches: BTreeMap<String, String>) -> Result<()> {
        if switches.is_empty() {
            return Err(CoordinatorError::InvalidArgument(
                "no aliases to switch".into(),
            ));
        }
        self.write(Command::SwitchAliases { switches }).await?;
        Ok(())
    }

    /// Alias → collection.
    pub fn aliases(&self) -> BTreeMap<String, String> {
        self.inner.view.read().catalog.aliases.clone()
    }

    // -- queries -----------------------------------------------------------

    /// Search a collection or alias, answering by `deadline` (a `fresh`
    /// collection whose newer generation is still loading then answers
    /// from the newest warm one, and says which is loading).
    pub async fn search(
        &self,
        name: &str,
        query: &[f32],
        params: SearchParams,
        deadline: Instant,
    ) -> Result<SearchResponse> {
        let target = self.resolve(name)?;
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .search_until(&target, query, params, Some(deadline))
                .await?);
        };
        let queries = [query.to_vec()];
        let rec = self.check_queries(&target, &queries, &params)?;
        let mut f = router.scan(&rec, &queries, params, deadline).await?;
        Ok(SearchResponse {
            hits: f.hits.pop().unwrap_or_default(),
            generation: f.generation,
            loading: f.loading,
            partitions_answered: f.answered,
            partitions_total: f.total,
        })
    }

    /// Many queries against one collection or alias, one generation,
    /// answering by `deadline` as [`Coordinator::search`].
    pub async fn batch_search(
        &self,
        name: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
        deadline: Instant,
    ) -> Result<Vec<SearchResponse>> {
        let target = self.resolve(name)?;
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .batch_search_until(&target, queries, params, Some(deadline))
                .await?);
        };
        let rec = self.check_queries(&target, queries, &params)?;
        let f = router.scan(&rec, queries, params, deadline).await?;
        Ok(f.hits
            .into_iter()
            .map(|hits| SearchResponse {
                hits,
                generation: f.generation.clone(),
                loading: f.loading.clone(),
                partitions_answered: f.answered,
                partitions_total: f.total,
            })
            .collect())
    }

    /// One query over several collections or aliases, merged exactly. Hits
    /// name the collection they came from (not the alias). Answers by
    /// `deadline` as [`Coordinator::search`].
    pub async fn federated_search(
        &self,
        names: &[String],
        query: &[f32],
        params: SearchParams,
        deadline: Instant,
    ) -> Result<FederatedResponse> {
        let targets: Vec<String> = names
            .iter()
            .map(|n| self.resolve(n))
            .collect::<Result<_>>()?;
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .federated_search_until(&refs, query, params, Some(deadline))
                .await?);
        };
        self.federated_remote(router, &targets, query, params, deadline)
            .await
    }

    async fn federated_remote(
        &self,
        router: &Router,
        targets: &[String],
        query: &[f32],
        params: SearchParams,
        deadline: Instant,
    ) -> Result<FederatedResponse> {
        if targets.is_empty() {
            return Err(CoordinatorError::InvalidArgument(
                "no collections to search".into(),
            ));
        }
        let queries = [query.to_vec()];
        let mut recs = Vec::with_capacity(targets.len());
        for t in targets {
            recs.push(self.check_queries(t, &queries, &params)?);
        }
        let first = &recs[0];
        if let Some(c) = recs
            .iter()
            .find(|c| c.dim != first.dim || c.metric != first.metric)
        {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "federated collections must share dimension and metric: {:?} is {}d {}, {:?} is {}d {}",
                first.name, first.dim, first.metric, c.name, c.dim, c.metric
            )));
        }
        let fans = futures::future::join_all(
            recs.iter()
                .map(|r| router.scan(r, &queries, params, deadline)),
        )
        .await;
        let mut hits = Vec::new();
        let mut generations = BTreeMap::new();
        let mut loading = BTreeMap::new();
        let (mut answered, mut total) = (0, 0);
        for (rec, f) in recs.iter().zip(fans) {
            let mut f = f?;
            answered += f.answered;
            total += f.total;
            generations.insert(rec.name.clone(), f.generation.clone());
            if let Some(g) = f.loading.take() {
                loading.insert(rec.name.clone(), g);
            }
            for h in f.hits.pop().unwrap_or_default() {
                hits.push(rulake_engine::FederatedHit {
                    collection: rec.name.clone(),
                    generation: f.generation.clone(),
                    id: h.id,
                    distance: h.distance,
                });
            }
        }
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then_with(|| a.collection.cmp(&b.collection))
                .then_with(|| a.id.cmp(&b.id))
        });
        hits.truncate(params.k);
        Ok(FederatedResponse {
            hits,
            generations,
            loading,
            partitions_answered: answered,
            partitions_total: total,
        })
    }

    /// Check a collection's source now; returns the generation served and
    /// whether it changed.
    pub async fn refresh(&self, name: &str) -> Result<(Generation, bool)> {
        let target = self.resolve(name)?;
        let before = self.info(&target)?.generation;
        let g = self.refresh_target(&target).await?;
        let changed = before.as_ref() != Some(&g);
        Ok((g, changed))
    }

    // -- placement ---------------------------------------------------------

    fn remote_node(&self, node: u64) -> Result<()> {
        if self.inner.remote.is_none() {
            return Err(CoordinatorError::FailedPrecondition(
                "this server runs every role in one process; there are no shard nodes to place partitions on".into(),
            ));
        }
        if !self.inner.view.read().catalog.nodes.contains_key(&node) {
            return Err(CoordinatorError::NotFound {
                kind: "shard node",
                name: node.to_string(),
            });
        }
        Ok(())
    }

    /// Take shard node `node` out of placement and wait until it serves
    /// nothing: every partition it held is warm on its new owners first
    /// (the meta leader keeps it in hand-off until then), so no query sees
    /// a partial answer. Returns the partitions moved and the epoch in
    /// force. The caller bounds the wait; stopping early undoes nothing.
    pub async fn drain(&self, node: u64) -> Result<(u32, u64)> {
        self.remote_node(node)?;
        let held = |c: &rulake_catalog::Catalog| {
            c.assignment
                .partitions
                .values()
                .chain(c.assignment.handoff.values())
                .filter(|ns| ns.contains(&node))
                .count() as u32
        };
        let before = held(&self.catalog());
        self.write(Command::SetNodeDraining {
            id: node,
            draining: true,
        })
        .await?;
        loop {
            let (uses, epoch) = {
                let v = self.inner.view.read();
                (v.catalog.assignment.uses(node), v.catalog.assignment.epoch)
            };
            if !uses {
                return Ok((before, epoch));
            }
            self.wait_catalog().await;
        }
    }

    /// Put shard node `node` (back) into placement; returns the partitions
    /// it is given and the epoch once the leader has placed it.
    pub async fn admit(&self, node: u64) -> Result<(u32, u64)> {
        self.remote_node(node)?;
        self.write(Command::SetNodeDraining {
            id: node,
            draining: false,
        })
        .await?;
        let start = Instant::now();
        loop {
            let (owned, epoch, any) = {
                let v = self.inner.view.read();
                let a = &v.catalog.assignment;
                let owned = a
                    .partitions
                    .values()
                    .filter(|ns| ns.contains(&node))
                    .count() as u32;
                (owned, a.epoch, !v.catalog.collections.is_empty())
            };
            if owned > 0 || !any || start.elapsed() > APPLY_WAIT {
                return Ok((owned, epoch));
            }
            self.wait_catalog().await;
        }
    }

    /// Wait a little for the catalog view to move.
    async fn wait_catalog(&self) {
        match &self.inner.follower {
            Some(f) => {
                let mut rx = f.changes();
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    // -- deletes -----------------------------------------------------------

    /// Delete ids from a collection: committed as catalog tombstones, so
    /// they hold across restarts and generations, and skipped from the
    /// next query on. Ids the collection does not hold are ignored; the
    /// count of ids newly deleted is returned.
    pub async fn delete(&self, name: &str, ids: Vec<VectorId>) -> Result<u64> {
        let target = self.resolve(name)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let lock = self.writer_lock(&target);
        let _guard = lock.lock().await;
        let wanted: HashSet<VectorId> = ids.into_iter().collect();
        let present = self.existing_ids(&target, &wanted).await?;
        let mut added = 0;
        for chunk in present.chunks(rulake_catalog::model::MAX_BATCH) {
            let applied = self
                .write(Command::AddTombstones {
                    collection: target.clone(),
                    ids: chunk.iter().map(VectorId::to_key).collect(),
                })
                .await?;
            if let rulake_catalog::Applied::Count { changed } = applied {
                added += changed;
            }
        }
        self.sync().await?;
        Ok(added)
    }

    /// Start an ingest into a managed collection (see [`ingest`]).
    pub fn ingest(&self, name: &str) -> Result<Ingest> {
        let target = self.resolve(name)?;
        let (record, source) = {
            let view = self.inner.view.read();
            let record = view.catalog.collections[&target].clone();
            let source = view.catalog.sources.get(&record.source).cloned();
            (record, source)
        };
        let prefix = match source.map(|s| s.kind) {
            Some(SourceKind::Managed { prefix }) => prefix,
            _ => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "collection {target:?} reads an external source; ingest writes only to managed collections (its lake is written by its own tools)"
                )))
            }
        };
        let writer = sync::managed_writer(&prefix)?;
        Ok(Ingest::new(
            self.clone(),
            target,
            record.source,
            record.dim as usize,
            writer,
        ))
    }
}

/// A name part no two creations share: managed prefixes are never reused,
/// so a dropped collection's leftover files can never reappear in a new one.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

/// A collection's record in `cat`, or `NOT_FOUND`.
fn collection_in(cat: &rulake_catalog::Catalog, target: &str) -> Result<CollectionRecord> {
    cat.collections
        .get(target)
        .cloned()
        .ok_or_else(|| CoordinatorError::NotFound {
            kind: "collection",
            name: target.to_owned(),
        })
}
