//! RuLake embedded: register sources and collections, then search them,
//! all in one process. This is the engine `rulake serve` will put behind
//! gRPC, and what an application can link directly.
//!
//! A collection reads one source, split into `P` partitions by a stable
//! hash of the source's units. A query fans out to every partition in
//! parallel, each partition answers with exact distances, and the answers
//! merge exactly. Before answering, a `fresh` collection checks the
//! source's generation and loads a changed source first; an `eventual`
//! collection never answers from a generation verified longer ago than its
//! staleness bound, and re-checks in the background before it gets there.
//! When the lake fails, the last good generation keeps serving and the
//! error is reported in the cache statistics.
//!
//! Searches run on the calling thread plus rayon's pool: they are CPU work
//! measured in microseconds to milliseconds, and a server embedding the
//! engine decides which threads may block on them.
//!
//! # Layout
//! - [`RuLake`] — the handle (this file).
//! - [`spec`] — [`CollectionSpec`] and the answer types.
//! - [`error`] — [`EngineError`].
//! - `scan` — a shard node's view: owned partitions, scans of some of
//!   them, [`PartitionState`].
//! - [`recall`] — live recall measurement ([`RecallConfig`]) and query
//!   counters ([`QueryStats`]).

mod deletes;
pub mod error;
pub mod recall;
mod scan;
pub mod spec;

pub use error::{EngineError, Result};
pub use recall::{QueryStats, RecallConfig, RecallEstimate, RecallStats};
pub use rulake_shard::{CacheConfig, CacheStats, CachedPartition};
pub use scan::{PartitionState, Scanned};
pub use spec::{
    Alter, CollectionInfo, CollectionSpec, FederatedHit, FederatedResponse, SearchResponse,
};

use deletes::Deletes;
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use rulake_index::SharedKth;
use rulake_lake::{Listing, Source};
use rulake_shard::{build_partition, PartitionCache, PartitionKey, PartitionSpec};
use rulake_types::{hit_order, merge_topk, Consistency, Generation, Hit, SearchParams, VectorId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 10_000;

/// Default rerank factor of a collection.
pub use rulake_index::DEFAULT_RERANK;

/// The embedded engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct RuLake {
    inner: Arc<Inner>,
}

struct Inner {
    sources: RwLock<HashMap<String, Arc<dyn Source>>>,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Deleted ids per collection; kept apart from [`Collection`] so an
    /// alter (which swaps the collection value) keeps them.
    deletes: RwLock<HashMap<String, Arc<Deletes>>>,
    /// Partitions this engine serves, per collection; a collection not
    /// listed is served whole (one process). A shard node sets it from the
    /// assignment. Kept apart from [`Collection`] for the same reason as
    /// `deletes`.
    owned: RwLock<HashMap<String, BTreeSet<u32>>>,
    cache: Arc<PartitionCache>,
    recall: recall::RecallMonitor,
    queries: recall::QueryCounters,
}

struct Serving {
    listing: Listing,
    checked_at: Instant,
}

struct Collection {
    spec: CollectionSpec,
    source: Arc<dyn Source>,
    serving: RwLock<Option<Serving>>,
    /// Serialises refreshes and partition loads of this collection.
    refresh: tokio::sync::Mutex<()>,
    /// Whether a refresh runs in the background; queries that must see
    /// its end (a `fresh` collection's) wait on the change to `false`.
    background: tokio::sync::watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
}

fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidArgument(format!(
            "invalid {kind} name {name:?}: use 1-128 characters of a-z, A-Z, 0-9, '_', '-', '.'"
        )))
    }
}

impl RuLake {
    /// An engine with the given cache configuration (and the default
    /// recall measurement, see [`recall`]).
    pub fn new(cache: CacheConfig) -> Self {
        Self::with_recall(cache, RecallConfig::default())
    }

    /// An engine with the given cache and recall-measurement configuration.
    pub fn with_recall(cache: CacheConfig, recall: RecallConfig) -> Self {
        RuLake {
            inner: Arc::new(Inner {
                sources: RwLock::new(HashMap::new()),
                collections: RwLock::new(HashMap::new()),
                deletes: RwLock::new(HashMap::new()),
                owned: RwLock::new(HashMap::new()),
                cache: PartitionCache::new(cache),
                recall: recall::RecallMonitor::new(recall),
                queries: recall::QueryCounters::default(),
            }),
        }
    }

    /// The recall-measurement configuration.
    pub fn recall_config(&self) -> RecallConfig {
        self.inner.recall.config()
    }

    /// Change how recall is measured (takes effect for the next search).
    pub fn set_recall_config(&self, config: RecallConfig) {
        self.inner.recall.set_config(config);
    }

    /// Measured recall@k per collection (collections with no measured
    /// sample yet are absent).
    pub fn recall_estimates(&self) -> BTreeMap<String, RecallEstimate> {
        self.inner.recall.estimates()
    }

    /// Counters of the recall measurement.
    pub fn recall_stats(&self) -> RecallStats {
        self.inner.recall.stats()
    }

    /// Queries answered and their fan-out.
    pub fn query_stats(&self) -> QueryStats {
        self.inner.queries.stats()
    }

    /// Whether a collection of this name exists.
    pub fn has_collection(&self, name: &str) -> bool {
        self.inner.collections.read().contains_key(name)
    }

    /// Register a source under a name. The engine reads every source it
    /// serves through this, so here its failed reads start counting as
    /// lake read errors of its kind (`rulake_lake::io`).
    pub fn register_source(&self, name: &str, source: Arc<dyn Source>) -> Result<()> {
        valid_name("source", name)?;
        let source = rulake_lake::io::metered(source);
        let mut s = self.inner.sources.write();
        if s.contains_key(name) {
            return Err(EngineError::AlreadyExists {
                kind: "source",
                name: name.to_owned(),
            });
        }
        s.insert(name.to_owned(), source);
        Ok(())
    }

    /// Remove a registered source. Refused while a collection reads it
    /// (collections hold the source, so dropping the name alone would leave
    /// them reading something no longer listed).
    pub fn unregister_source(&self, name: &str) -> Result<()> {
        let users: Vec<String> = self
            .inner
            .collections
            .read()
            .values()
            .filter(|c| c.spec.source == name)
            .map(|c| c.spec.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::FailedPrecondition(format!(
                "source {name:?} is used by collections {users:?}; drop them first"
            )));
        }
        self.inner
            .sources
            .write()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| EngineError::NotFound {
                kind: "source",
                name: name.to_owned(),
            })
    }

    /// Create a collection over a registered source. Nothing is read until
    /// the first query or [`RuLake::refresh`].
    pub fn create_collection(&self, spec: CollectionSpec) -> Result<()> {
        valid_name("collection", &spec.name)?;
        spec.validate()?;
        let source = self
            .inner
            .sources
            .read()
            .get(&spec.source)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                kind: "source",
                name: spec.source.clone(),
            })?;
        let source = match &spec.pin {
            Some(version) => source.pinned(version).map_err(|e| {
                EngineError::InvalidArgument(format!("collection {:?}: {e}", spec.name))
            })?,
            None => source,
        };
        let mut c = self.inner.collections.write();
        if c.contains_key(&spec.name) {
            return Err(EngineError::AlreadyExists {
                kind: "collection",
                name: spec.name.clone(),
            });
        }
        c.insert(
            spec.name.clone(),
            Arc::new(Collection {
                spec,
                source,
                serving: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                background: tokio::sync::watch::Sender::new(false),
                last_error: Mutex::new(None),
            }),
        );
        Ok(())
    }

    /// Drop a collection and its cached (and persisted) partitions.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.inner
            .collections
            .write()
            .remove(name)
            .ok_or_else(|| EngineError::NotFound {
                kind: "collection",
                name: name.to_owned(),
            })?;
        self.inner.deletes.write().remove(name);
        self.inner.owned.write().remove(name);
        self.inner.cache.remove_collection(name);
        self.inner.recall.forget(name);
        Ok(())
    }

    /// Change what can change without a rebuild: consistency, default
    /// rerank and nprobe. The serving generation and every cached
    /// partition stay; the next query uses the new values.
    pub async fn alter_collection(&self, name: &str, alter: Alter) -> Result<CollectionSpec> {
        let old = self.collection(name)?;
        // No refresh of the old value may finish after the swap.
        let _guard = old.refresh.lock().await;
        let mut spec = old.spec.clone();
        alter.apply_to(&mut spec);
        spec.validate()?;
        let serving = old.serving.read().as_ref().map(|s| Serving {
            listing: s.listing.clone(),
            checked_at: s.checked_at,
        });
        let new = Arc::new(Collection {
            spec: spec.clone(),
            source: old.source.clone(),
            serving: RwLock::new(serving),
            refresh: tokio::sync::Mutex::new(()),
            background: tokio::sync::watch::Sender::new(false),
            last_error: Mutex::new(old.last_error.lock().clone()),
        });
        let mut map = self.inner.collections.write();
        match map.get(name) {
            Some(cur) if Arc::ptr_eq(cur, &old) => {
                map.insert(name.to_owned(), new);
                Ok(spec)
            }
            _ => Err(EngineError::FailedPrecondition(format!(
                "collection {name:?} was dropped or changed while being altered"
            ))),
        }
    }

    /// Replace the set of deleted ids of a collection. Searches skip them
    /// from the next query on, in every partition, without a rebuild.
    pub fn set_deleted(&self, name: &str, ids: HashSet<VectorId>) -> Result<()> {
        self.collection(name)?;
        let mut d = self.inner.deletes.write();
        if ids.is_empty() {
            d.remove(name);
        } else {
            d.insert(name.to_owned(), Arc::new(Deletes::new(ids)));
        }
        Ok(())
    }

    fn deletes(&self, name: &str) -> Option<Arc<Deletes>> {
        self.inner.deletes.read().get(name).cloned()
    }

    /// Which of `ids` the collection's serving generation holds (deleted
    /// ones included), loading it first if needed. A writer uses this to
    /// refuse ids that would appear twice.
    pub async fn existing_ids(&self, name: &str, ids: &HashSet<VectorId>) -> Result<Vec<VectorId>> {
        let c = self.collection(name)?;
        let owned = self.owned(&c.spec);
        self.lookup(name, &owned, ids).await
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.inner
            .collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                kind: "collection",
                name: name.to_owned(),
            })
    }

    /// Names of all collections.
    pub fn list_collections(&self) -> Vec<String> {
        let mut v: Vec<_> = self.inner.collections.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Cache counters, bytes and unresolved errors.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// A collection's spec and serving state.
    pub fn describe(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let (generation, source_rows) = match c.serving.read().as_ref() {
            Some(s) => (Some(s.listing.generation.clone()), s.listing.rows()),
            None => (None, 0),
        };
        let mut warm = 0;
        let mut vectors = 0;
        let deletes = self.deletes(name);
        for p in 0..c.spec.partitions {
            if let Some(part) = self.inner.cache.peek(&key(&c.spec.name, p)) {
                warm += 1;
                let hidden = deletes.as_ref().map_or(0, |d| d.hidden_in(&part));
                vectors += (part.index.live_len() - hidden) as u64;
            }
        }
        let info = CollectionInfo {
            spec: c.spec.clone(),
            generation,
            source_rows,
            vectors_cached: vectors,
            partitions_warm: warm,
            last_error: c.last_error.lock().clone(),
        };
        Ok(info)
    }

    /// Check the source now and load a new generation if it changed.
    /// On failure the previous generation keeps serving.
    pub async fn refresh(&self, name: &str) -> Result<Generation> {
        let c = self.collection(name)?;
        self.refresh_collection(&c).await
    }

    async fn refresh_collection(&self, c: &Arc<Collection>) -> Result<Generation> {
        let _guard = c.refresh.lock().await;
        let result = self.refresh_locked(c).await;
        match &result {
            Ok(_) => {
                *c.last_error.lock() = None;
                self.inner.cache.clear_error(&c.spec.name);
            }
            Err(e) => {
                tracing::warn!(collection = %c.spec.name, error = %e, "refresh failed; previous generation keeps serving");
                *c.last_error.lock() = Some(e.to_string());
                self.inner.cache.record_error(&c.spec.name, e);
            }
        }
        result
    }

    async fn refresh_locked(&self, c: &Arc<Collection>) -> Result<Generation> {
        let spec = &c.spec;
        let listing = c.source.list_units().await?;
        let unchanged = c
            .serving
            .read()
            .as_ref()
            .is_some_and(|s| s.listing.generation == listing.generation);
        if unchanged {
            if let Some(s) = c.serving.write().as_mut() {
                s.checked_at = Instant::now();
            }
            return Ok(listing.generation);
        }
        // Build every partition of the new generation before swapping any.
        let owned = self.owned(spec);
        let mut built = Vec::with_capacity(owned.len());
        for p in owned {
            let pspec = self.partition_spec(spec, p);
            let previous = self.inner.cache.peek(&pspec.key);
            let part = match previous {
                None => self.load_from_disk(&pspec, &listing.generation).await,
                Some(_) => None,
            };
            let part = match part {
                Some(p) => p,
                None => Arc::new(
                    build_partition(
                        c.source.as_ref(),
                        &listing,
                        &pspec,
                        previous,
                        &self.inner.cache,
                    )
                    .await
                    .map_err(|e| self.unavailable(c, e))?,
                ),
            };
            built.push((pspec.key, part));
        }
        // The swap is one step under the serving lock: a query that does
        // not wait for the refresh sees all old partitions or all new ones.
        let generation = listing.generation.clone();
        {
            let mut serving = c.serving.write();
            for (k, part) in &built {
                self.inner
                    .cache
                    .insert(k.clone(), part.clone())
                    .map_err(|e| self.unavailable(c, e))?;
            }
            *serving = Some(Serving {
                listing,
                checked_at: Instant::now(),
            });
        }
        // Persist off the query path; a crash before it finishes only costs a rebuild.
        if self.inner.cache.persist_dir().is_some() {
            let cache = self.inner.cache.clone();
            // Detached on purpose: the handle is not awaited.
            drop(tokio::task::spawn_blocking(move || {
                for (k, part) in built {
                    if let Err(e) = cache.persist(&k, &part) {
                        tracing::warn!(partition = %k, error = %e, "could not persist partition");
                    }
                }
            }));
        }
        Ok(generation)
    }

    fn unavailable(&self, c: &Collection, e: rulake_shard::ShardError) -> EngineError {
        match EngineError::from(e) {
            EngineError::Unavailable { source, .. } => EngineError::Unavailable {
                collection: c.spec.name.clone(),
                source,
            },
            other => other,
        }
    }

    async fn load_from_disk(
        &self,
        pspec: &PartitionSpec,
        generation: &Generation,
    ) -> Option<Arc<CachedPartition>> {
        self.inner.cache.persist_dir()?;
        let cache = self.inner.cache.clone();
        let (k, g, dim, metric) = (
            pspec.key.clone(),
            generation.clone(),
            pspec.dim,
            pspec.metric,
        );
        tokio::task::spawn_blocking(move || cache.load_persisted(&k, &g, dim, metric))
            .await
            .ok()
            .flatten()
            .map(Arc::new)
    }

    fn partition_spec(&self, spec: &CollectionSpec, p: u32) -> PartitionSpec {
        PartitionSpec {
            key: key(&spec.name, p),
            partitions: spec.partitions,
            dim: spec.dim,
            metric: spec.metric,
            build: spec.build,
        }
    }

    /// Make sure the collection may answer under its consistency level.
    ///
    /// A `fresh` collection whose source moved on starts (or joins) a
    /// refresh and waits for it, but with a `deadline` only until
    /// [`answer_by`] of it: past that it answers from the generation it
    /// has warm, and the newer generation, still loading in the
    /// background, is returned so the answer can say so. A slow load never
    /// fails a query that has something to serve.
    async fn ensure_current(
        &self,
        c: &Arc<Collection>,
        deadline: Option<Instant>,
    ) -> Result<Option<Generation>> {
        let age = c.serving.read().as_ref().map(|s| s.checked_at.elapsed());
        let Some(age) = age else {
            // Nothing to serve yet: the load is the answer's only way.
            let r = self.refresh_collection(c).await;
            if c.serving.read().is_none() {
                r?;
            }
            return Ok(None);
        };
        match c.spec.consistency {
            Consistency::Fresh => {
                let newer = match c.source.generation().await {
                    Ok(g) => {
                        if self.serves(c, &g) {
                            if c.last_error.lock().take().is_some() {
                                // The lake is back to what is served: nothing is wrong any more.
                                self.inner.cache.clear_error(&c.spec.name);
                            }
                            return Ok(None);
                        }
                        g
                    }
                    Err(e) => {
                        // Serve the last good generation; say so in the stats.
                        self.inner.cache.record_error(&c.spec.name, &e);
                        *c.last_error.lock() = Some(e.to_string());
                        return Ok(None);
                    }
                };
                let until = deadline.map(answer_by);
                // A refresh joined may have listed the source just before
                // it moved on; one more round picks the move up.
                for _ in 0..2 {
                    let mut done = self.refresh_in_background(c);
                    let end = done.wait_for(|running| !*running);
                    match until {
                        Some(t) => {
                            if tokio::time::timeout_at(t.into(), end).await.is_err() {
                                return Ok(Some(newer));
                            }
                        }
                        None => {
                            let _ = end.await;
                        }
                    }
                    // A failed refresh leaves the last good generation
                    // serving, its error in the stats.
                    if self.serves(c, &newer) || c.last_error.lock().is_some() {
                        return Ok(None);
                    }
                }
                Ok(None)
            }
            Consistency::Eventual { max_staleness } => {
                if age > max_staleness {
                    // Too stale to serve: the refresh's error, if any, is
                    // in the stats and the last good generation serves.
                    let _ = self.refresh_collection(c).await;
                } else if age > max_staleness / 2 {
                    self.refresh_in_background(c);
                }
                Ok(None)
            }
        }
    }

    /// Whether `c` serves generation `g` now.
    fn serves(&self, c: &Collection, g: &Generation) -> bool {
        c.serving
            .read()
            .as_ref()
            .is_some_and(|s| s.listing.generation == *g)
    }

    /// Start a refresh of `c` in the background unless one runs already;
    /// the receiver sees `false` once it (either one) is over.
    fn refresh_in_background(&self, c: &Arc<Collection>) -> tokio::sync::watch::Receiver<bool> {
        let rx = c.background.subscribe();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return rx;
        };
        let started = c
            .background
            .send_if_modified(|running| !std::mem::replace(running, true));
        if started {
            let (engine, c) = (self.clone(), c.clone());
            rt.spawn(async move {
                // The refresh runs in its own task so that a panic inside a
                // source library surfaces here as a recorded error instead
                // of leaving `background` set and every waiter parked.
                let run = {
                    let (engine, c) = (engine.clone(), c.clone());
                    tokio::spawn(async move { engine.refresh_collection(&c).await })
                };
                if let Err(e) = run.await {
                    let msg = format!("refresh aborted: {}", panic_message(e));
                    tracing::error!(collection = %c.spec.name, error = %msg, "refresh task failed; previous generation keeps serving");
                    *c.last_error.lock() = Some(msg.clone());
                    engine.inner.cache.record_error(&c.spec.name, &msg);
                }
                c.background.send_replace(false);
            });
        }
        rx
    }

    /// The serving generation and every partition of a collection, loading
    /// evicted ones back (from disk when persisted, else from the lake).
    pub async fn partitions(&self, name: &str) -> Result<(Generation, Vec<Arc<CachedPartition>>)> {
        let c = self.collection(name)?;
        self.ensure_current(&c, None).await?;
        self.serving_partitions(&c).await
    }

    async fn serving_partitions(
        &self,
        c: &Arc<Collection>,
    ) -> Result<(Generation, Vec<Arc<CachedPartition>>)> {
        let (g, _, parts) = self.serving_owned(c).await?;
        Ok((g, parts))
    }

    /// The partitions this engine serves of a collection (all of them in
    /// one process), in partition order.
    fn owned(&self, spec: &CollectionSpec) -> Vec<u32> {
        match self.inner.owned.read().get(&spec.name) {
            Some(set) => set
                .iter()
                .copied()
                .filter(|p| *p < spec.partitions)
                .collect(),
            None => (0..spec.partitions).collect(),
        }
    }

    /// The serving generation, the partition numbers served here and their
    /// partitions, loading evicted or newly owned ones (from disk when
    /// persisted, else from the lake).
    async fn serving_owned(
        &self,
        c: &Arc<Collection>,
    ) -> Result<(Generation, Vec<u32>, Vec<Arc<CachedPartition>>)> {
        let spec = &c.spec;
        let numbers = self.owned(spec);
        let (mut generation, mut parts, mut missing) = self.snapshot(c, &numbers, true);
        if !missing.is_empty() {
            let _guard = c.refresh.lock().await;
            // Under the refresh lock no swap can happen: take the snapshot
            // again, so what was cached and what is loaded now are of one
            // generation (not counted again: the first look counted).
            (generation, parts, missing) = self.snapshot(c, &numbers, false);
            let listing = c
                .serving
                .read()
                .as_ref()
                .map(|s| s.listing.clone())
                .unwrap_or_default();
            for (i, p) in missing {
                let pspec = self.partition_spec(spec, p);
                let part = match self.load_from_disk(&pspec, &listing.generation).await {
                    Some(part) => part,
                    None => Arc::new(
                        build_partition(
                            c.source.as_ref(),
                            &listing,
                            &pspec,
                            None,
                            &self.inner.cache,
                        )
                        .await
                        .map_err(|e| self.unavailable(c, e))?,
                    ),
                };
                self.inner
                    .cache
                    .insert(pspec.key.clone(), part.clone())
                    .map_err(|e| self.unavailable(c, e))?;
                parts[i] = Some(part);
            }
        }
        let parts: Vec<_> = parts.into_iter().map(|p| p.expect("filled")).collect();
        Ok((generation, numbers, parts))
    }

    /// The serving generation and the cached partitions among `numbers`,
    /// read under the serving lock (so of one generation), with the
    /// positions and numbers of those not cached; `count` records the
    /// looks as cache hits and misses.
    #[allow(clippy::type_complexity)]
    fn snapshot(
        &self,
        c: &Collection,
        numbers: &[u32],
        count: bool,
    ) -> (
        Generation,
        Vec<Option<Arc<CachedPartition>>>,
        Vec<(usize, u32)>,
    ) {
        let serving = c.serving.read();
        let generation = serving
            .as_ref()
            .map(|s| s.listing.generation.clone())
            .unwrap_or_default();
        let mut missing = Vec::new();
        let parts = numbers
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let k = key(&c.spec.name, p);
                let part = if count {
                    self.inner.cache.get(&k)
                } else {
                    self.inner.cache.peek(&k)
                };
                if part.is_none() {
                    missing.push((i, p));
                }
                part
            })
            .collect();
        (generation, parts, missing)
    }

    /// Check a query against a collection: `k` in range, the dimension,
    /// finite components. A coordinator checks before fanning out, so a
    /// bad query gets the same error wherever the partitions live.
    pub fn check_query(spec: &CollectionSpec, query: &[f32], params: &SearchParams) -> Result<()> {
        if params.k == 0 || params.k > MAX_K {
            return Err(EngineError::InvalidArgument(format!(
                "k must be between 1 and {MAX_K}, got {}",
                params.k
            )));
        }
        if query.len() != spec.dim {
            return Err(EngineError::InvalidArgument(format!(
                "query has {} dimensions, collection {:?} has {}",
                query.len(),
                spec.name,
                spec.dim
            )));
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return Err(EngineError::InvalidArgument(format!(
                "query component {i} is not a finite number"
            )));
        }
        Ok(())
    }

    fn effective(spec: &CollectionSpec, params: SearchParams) -> SearchParams {
        SearchParams {
            k: params.k,
            nprobe: params.nprobe.or(spec.nprobe),
            rerank: params.rerank.or(Some(spec.rerank)),
        }
    }

    /// Search one collection.
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        params: SearchParams,
    ) -> Result<SearchResponse> {
        self.search_until(collection, query, params, None).await
    }

    /// Search one collection, answering by `deadline`: a `fresh`
    /// collection whose newer generation is still loading then answers
    /// from the one it has warm (see [`SearchResponse::loading`]).
    pub async fn search_until(
        &self,
        collection: &str,
        query: &[f32],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<SearchResponse> {
        let c = self.collection(collection)?;
        Self::check_query(&c.spec, query, &params)?;
        let loading = self.ensure_current(&c, deadline).await?;
        let (generation, parts) = self.serving_partitions(&c).await?;
        let params = Self::effective(&c.spec, params);
        let masks = self.masks(&c.spec.name, &parts);
        let hits = search_partitions(&parts, &masks, query, params)?;
        let answered = parts.len() as u32;
        self.inner.queries.record(1, answered, c.spec.partitions);
        self.inner
            .recall
            .offer(&c.spec.name, query, &hits, &parts, &masks, params.k);
        Ok(SearchResponse {
            hits,
            generation,
            loading,
            partitions_answered: parts.len() as u32,
            partitions_total: c.spec.partitions,
        })
    }

    /// Search one collection with many queries in one call (parallel over
    /// queries; one consistency check for the batch).
    pub async fn batch_search(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
    ) -> Result<Vec<SearchResponse>> {
        self.batch_search_until(collection, queries, params, None)
            .await
    }

    /// [`RuLake::batch_search`] answering by `deadline`, as
    /// [`RuLake::search_until`].
    pub async fn batch_search_until(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<Vec<SearchResponse>> {
        let c = self.collection(collection)?;
        for q in queries {
            Self::check_query(&c.spec, q, &params)?;
        }
        let loading = self.ensure_current(&c, deadline).await?;
        let (generation, parts) = self.serving_partitions(&c).await?;
        let params = Self::effective(&c.spec, params);
        let masks = self.masks(&c.spec.name, &parts);
        self.inner
            .queries
            .record(queries.len(), parts.len() as u32, c.spec.partitions);
        queries
            .par_iter()
            .map(|q| {
                let hits = search_partitions_seq(&parts, &masks, q, params)?;
                self.inner
                    .recall
                    .offer(&c.spec.name, q, &hits, &parts, &masks, params.k);
                Ok(SearchResponse {
                    hits,
                    generation: generation.clone(),
                    loading: loading.clone(),
                    partitions_answered: parts.len() as u32,
                    partitions_total: c.spec.partitions,
                })
            })
            .collect()
    }

    /// Search several collections of one dimension and metric as one:
    /// every partition of every collection in parallel, one exact merge.
    pub async fn federated_search(
        &self,
        collections: &[&str],
        query: &[f32],
        params: SearchParams,
    ) -> Result<FederatedResponse> {
        self.federated_search_until(collections, query, params, None)
            .await
    }

    /// [`RuLake::federated_search`] answering by `deadline`, as
    /// [`RuLake::search_until`].
    pub async fn federated_search_until(
        &self,
        collections: &[&str],
        query: &[f32],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<FederatedResponse> {
        if collections.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no collections to search".into(),
            ));
        }
        let cs: Vec<_> = collections
            .iter()
            .map(|n| self.collection(n))
            .collect::<Result<_>>()?;
        let first = &cs[0].spec;
        for c in &cs {
            if c.spec.dim != first.dim || c.spec.metric != first.metric {
                return Err(EngineError::FailedPrecondition(format!(
                    "federated collections must share dimension and metric: {:?} is {}d {}, {:?} is {}d {}",
                    first.name, first.dim, first.metric, c.spec.name, c.spec.dim, c.spec.metric
                )));
            }
            Self::check_query(&c.spec, query, &params)?;
        }
        let mut work = Vec::new();
        let mut generations = BTreeMap::new();
        let mut loading = BTreeMap::new();
        let mut total = 0;
        for c in &cs {
            if let Some(g) = self.ensure_current(c, deadline).await? {
                loading.insert(c.spec.name.clone(), g);
            }
            let (g, parts) = self.serving_partitions(c).await?;
            total += c.spec.partitions;
            generations.insert(c.spec.name.clone(), g.clone());
            let plan = partition_params(&parts, Self::effective(&c.spec, params));
            let masks = self.masks(&c.spec.name, &parts);
            for ((part, p), mask) in parts.into_iter().zip(plan).zip(masks) {
                work.push((c.spec.name.clone(), g.clone(), part, p, mask));
            }
        }
        let answered = work.len() as u32;
        self.inner.queries.record(1, answered, total);
        let shared = SharedKth::new(params.k);
        let lists: Vec<Vec<FederatedHit>> = work
            .par_iter()
            .map(|(name, g, part, p, mask)| {
                Ok(partition_hits(part, mask, query, *p, Some(&shared))?
                    .into_iter()
                    .map(|h| FederatedHit {
                        collection: name.clone(),
                        generation: g.clone(),
                        id: h.id,
                        distance: h.distance,
                    })
                    .collect())
            })
            .collect::<Result<_>>()?;
        let mut all: Vec<FederatedHit> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then_with(|| a.collection.cmp(&b.collection))
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut seen = std::collections::HashSet::new();
        all.retain(|h| seen.insert((h.collection.clone(), h.id.clone())));
        all.truncate(params.k);
        Ok(FederatedResponse {
            hits: all,
            generations,
            loading,
            partitions_answered: answered,
            partitions_total: total,
        })
    }
}

impl RuLake {
    /// Per partition, the positions of deleted ids (empty when none are).
    fn masks(&self, name: &str, parts: &[Arc<CachedPartition>]) -> Vec<Arc<Vec<u64>>> {
        match self.deletes(name) {
            None => vec![Arc::default(); parts.len()],
            Some(d) => parts.iter().map(|p| d.mask(p)).collect(),
        }
    }
}

/// Least time kept to answer after waiting for a load.
const ANSWER_MIN: Duration = Duration::from_millis(20);

/// Most time kept to answer after waiting for a load.
const ANSWER_MAX: Duration = Duration::from_millis(500);

/// Until when a query with `deadline` may wait for a newer generation: a
/// quarter of the time left (within [`ANSWER_MIN`]..=[`ANSWER_MAX`]) is
/// kept to search what is warm and send the answer.
pub fn answer_by(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    let keep = (left / 4).clamp(ANSWER_MIN, ANSWER_MAX);
    deadline.checked_sub(keep).unwrap_or(deadline)
}

fn key(collection: &str, p: u32) -> PartitionKey {
    PartitionKey {
        collection: collection.to_owned(),
        partition: p,
    }
}

/// One partition's answer to `query`. `shared`, when the query has other
/// partitions, is the `k`-th best distance they found so far: rows that cannot beat it are
/// not reranked (see `rulake_index::bound`), so a query split over many
/// partitions reads about as many full vectors as one over a single index.
fn partition_hits(
    part: &CachedPartition,
    mask: &[u64],
    query: &[f32],
    p: SearchParams,
    shared: Option<&SharedKth>,
) -> Result<Vec<Hit>> {
    let ids = part.index.ids();
    Ok(part
        .index
        .search_shared(query, p.k, p.nprobe, p.rerank, mask, shared)
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))?
        .into_iter()
        .map(|(pos, distance)| Hit {
            id: ids.get(pos),
            distance,
        })
        .collect())
}

/// The parameters each partition of one collection is searched with: the
/// collection-wide `nprobe` and `rerank` shared out by
/// [`rulake_index::split_search`], so splitting a collection into more
/// partitions spreads the same work over more threads rather than
/// multiplying it. The answer of a search is exactly the merge of each
/// partition's answer at these parameters.
pub fn partition_params(parts: &[Arc<CachedPartition>], p: SearchParams) -> Vec<SearchParams> {
    let total: usize = parts.iter().map(|x| x.index.len()).sum();
    plan_with_total(parts, p, total)
}

/// [`partition_params`] for some partitions of a collection of `total`
/// vectors (a shard node holds only some of them).
pub(crate) fn plan_with_total(
    parts: &[Arc<CachedPartition>],
    p: SearchParams,
    total: usize,
) -> Vec<SearchParams> {
    let rerank = p.rerank.unwrap_or(rulake_index::DEFAULT_RERANK);
    parts
        .iter()
        .map(|part| {
            let (nprobe, rerank) = rulake_index::split_search(
                total,
                part.index.len(),
                part.index.nlist(),
                p.nprobe,
                rerank,
            );
            SearchParams {
                k: p.k,
                nprobe: Some(nprobe),
                rerank: Some(rerank),
            }
        })
        .collect()
}

/// A partition's answer with its place in the collection's partition list.
type Numbered = (usize, Result<Vec<Hit>>);

/// Fan out over partitions in parallel and merge exactly.
fn search_partitions(
    parts: &[Arc<CachedPartition>],
    masks: &[Arc<Vec<u64>>],
    query: &[f32],
    p: SearchParams,
) -> Result<Vec<Hit>> {
    let plan = partition_params(parts, p);
    if parts.len() == 1 {
        let mut hits = partition_hits(&parts[0], &masks[0], query, plan[0], None)?;
        hits.sort_by(hit_order);
        return Ok(hits);
    }
    // One task per thread, not per partition: the calling thread searches
    // one group of partitions itself while pool threads take the others.
    // With more tasks than cores the calling thread and the pool's threads
    // share cores, and a query waits for a preempted thread's next time
    // slice; with fewer the cores idle. The calling thread counts as one of
    // them, so the pool wakes only as many threads as it needs.
    let groups = parts.len().min(rayon::current_num_threads().max(1));
    let shared = SharedKth::new(p.k);
    let group = |g: usize| -> Vec<Numbered> {
        (g..parts.len())
            .step_by(groups)
            .map(|i| {
                let hits = partition_hits(&parts[i], &masks[i], query, plan[i], Some(&shared));
                (i, hits)
            })
            .collect()
    };
    let slots: Vec<parking_lot::Mutex<Vec<Numbered>>> = (1..groups)
        .map(|_| parking_lot::Mutex::new(Vec::new()))
        .collect();
    let first = rayon::in_place_scope(|s| {
        for (g, slot) in slots.iter().enumerate() {
            let group = &group;
            s.spawn(move |_| *slot.lock() = group(g + 1));
        }
        group(0)
    });
    let mut answers: Vec<Numbered> = first;
    for slot in slots {
        answers.extend(slot.into_inner());
    }
    // Partition order, so the first error reported is the same every time.
    answers.sort_by_key(|(i, _)| *i);
    let lists = answers
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>>>()?;
    Ok(merge_topk(lists, p.k))
}

/// Sequential fan-out, for callers already parallel over queries.
fn search_partitions_seq(
    parts: &[Arc<CachedPartition>],
    masks: &[Arc<Vec<u64>>],
    query: &[f32],
    p: SearchParams,
) -> Result<Vec<Hit>> {
    let shared = SharedKth::new(p.k);
    let lists: Vec<Vec<Hit>> = parts
        .iter()
        .zip(partition_params(parts, p))
        .zip(masks)
        .map(|((part, pp), mask)| partition_hits(part, mask, query, pp, Some(&shared)))
        .collect::<Result<_>>()?;
    Ok(merge_topk(lists, p.k))
}

/// What a failed task said: the panic payload when it is text.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(e) => e.to_string(),
    }
}
