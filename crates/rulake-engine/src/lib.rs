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
//! A query passes the stages below in this order; each module holds one
//! decision and adds its methods to [`RuLake`].
//! - [`RuLake`] — the handle and the state it shares (this file).
//! - `registry` — sources and collections by name: create, alter, drop,
//!   describe, deleted ids, which partitions this engine serves.
//! - `freshness` — whether a collection may answer from what it serves
//!   (`fresh` / `eventual`, generations, background refresh, deadlines;
//!   [`answer_by`]).
//! - `check` — the generation check `fresh` queries share: one at a time,
//!   each starting after the queries it answers arrived.
//! - `load` — how a generation becomes cached partitions: build all
//!   before swapping any, disk before lake, persist off the query path.
//! - `search` — checks, fan-out over partitions and the exact merge, for
//!   one collection, a batch and a federation.
//! - `filter` — filtered search: the rows a filter selects per partition,
//!   and the plan (exact scan of the matches or masked IVF) that keeps
//!   recall at every selectivity.
//! - `plan` — how a collection's `nprobe` and `rerank` are shared out over
//!   its partitions ([`partition_params`]).
//! - `scan` — a shard node's view: owned partitions, scans of some of
//!   them, [`PartitionState`].
//! - `deletes` — deleted ids as per-partition position bitsets.
//! - `lineage` — what the served generation is made of ([`Lineage`]).
//! - [`spec`] — [`CollectionSpec`] and the answer types.
//! - [`error`] — [`EngineError`].
//! - [`recall`] — live recall measurement ([`RecallConfig`]) and query
//!   counters ([`QueryStats`]).

mod check;
mod deletes;
pub mod error;
mod filter;
mod freshness;
mod lineage;
mod load;
mod plan;
pub mod recall;
mod registry;
mod retune;
mod scan;
mod search;
pub mod spec;

pub use error::{EngineError, Result};
pub use freshness::answer_by;
pub use lineage::Lineage;
pub use plan::partition_params;
pub use recall::{QueryStats, RecallConfig, RecallEstimate, RecallStats};
pub use rulake_cache::{memory, CacheConfig, CacheStats, CachedPartition};
pub use scan::{PartitionState, Scanned};
pub use spec::{
    check_payload_columns, check_standing_filter, Alter, CollectionInfo, CollectionSpec,
    FederatedHit, FederatedResponse, SearchResponse,
};

use deletes::Deletes;
use parking_lot::RwLock;
use registry::Collection;
use rulake_cache::PartitionCache;
use rulake_lake::Source;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 10_000;

/// Default rerank factor of a collection.
pub use rulake_index::{DEFAULT_RERANK, DEFAULT_TARGET_RECALL};

/// Largest rerank factor a query uses; a larger one is taken as this, as
/// an `nprobe` beyond the lists that exist probes them all.
pub use rulake_index::MAX_RERANK;

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
    /// Persist tasks not awaited yet (see [`RuLake::flush_persisted`]).
    persisting: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Held by the one persist task writing at a time.
    persist_lock: Arc<parking_lot::Mutex<()>>,
    recall: recall::RecallMonitor,
    queries: recall::QueryCounters,
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
                persisting: Default::default(),
                persist_lock: Default::default(),
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

    /// Cache counters, bytes and unresolved errors.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }
}
