//! The [`Coordinator`] itself: one struct, defined here, whose behaviour
//! is split by concern into the files beside this one.
//!
//! Why one struct rather than a service per concern: every concern writes
//! through the same catalog client, reads the same applied catalog view
//! and must see the same engine (or the same router), and a write in one
//! (an ingest commit) must serialise with a write in another (a delete).
//! Keeping that state in one `Inner` behind one cheap `Arc` makes each
//! concern a plain `impl Coordinator` block that cannot disagree with the
//! others about which catalog or engine it is talking to.
//!
//! This file holds what all of them share: construction, the accessors,
//! lookups in the applied catalog view, and the three calls that go to
//! the engine in this process or through the router to shard nodes.

pub(crate) mod aliases;
pub(crate) mod collections;
mod nodes;
mod search;
mod writes;

pub(crate) use collections::unique_suffix;
pub use collections::{CollectionDef, CollectionView};

use crate::router::{Router, RouterConfig};
use crate::{sync, CoordinatorError, Result};
use parking_lot::RwLock;
use rulake_catalog::store::AppliedState;
use rulake_catalog::{CatalogClient, CollectionRecord, SourceRecord};
use rulake_engine::{CollectionInfo, RuLake};
use rulake_types::{Generation, VectorId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The coordinator of one process: what a client's call becomes once it
/// is past the wire. Writes go to the catalog first, then the engine is
/// brought to the catalog's state. Cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) inner: Arc<Inner>,
}

/// The state every concern shares. Crate-visible because the catalog →
/// engine sync (`crate::sync`) drives the engine through it.
pub(crate) struct Inner {
    pub(crate) engine: RuLake,
    pub(crate) meta: CatalogClient,
    pub(crate) view: Arc<RwLock<AppliedState>>,
    /// Where managed collections' files go (`file://...`, `s3://...`).
    pub(crate) managed_root: String,
    pub(crate) sync: tokio::sync::Mutex<sync::Synced>,
    /// Serialises the writers of one collection (ingest commits, deletes),
    /// which check ids against the data before committing.
    pub(crate) writers: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Tags of the ingests running in this process: a sweep never deletes
    /// their files, however old (`crate::sweep`).
    pub(crate) ingests: parking_lot::Mutex<HashSet<String>>,
    /// The shard nodes, when the engine is not in this process.
    pub(crate) remote: Option<Router>,
    /// The polled catalog view, when this process is not a meta member.
    pub(crate) follower: Option<rulake_catalog::Follower>,
}

impl Coordinator {
    /// A coordinator over `engine`, writing through `meta` and reading the
    /// catalog this process has applied from `view`. Brings the engine to
    /// the catalog's state before returning.
    pub async fn open(
        engine: RuLake,
        meta: CatalogClient,
        view: Arc<RwLock<AppliedState>>,
        managed_root: &str,
    ) -> Result<Self> {
        Self::open_with(engine, meta, view, managed_root, None, None).await
    }

    /// A coordinator of a cluster: it holds no partitions and fans queries
    /// out to the shard nodes the catalog lists.
    pub async fn open_remote(
        meta: CatalogClient,
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
        meta: CatalogClient,
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
                ingests: Default::default(),
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

    /// The engine behind the coordinator.
    pub fn engine(&self) -> &RuLake {
        &self.inner.engine
    }

    /// The catalog client.
    pub fn meta(&self) -> &CatalogClient {
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

    // -- the applied catalog view ------------------------------------------

    pub(crate) fn record(&self, target: &str) -> Result<CollectionRecord> {
        collection_in(&self.inner.view.read().catalog, target)
    }

    /// A collection's record and its source, under one read of the view
    /// (a second read while holding one could wait behind a writer forever).
    pub(crate) fn record_and_source(
        &self,
        target: &str,
    ) -> Result<(CollectionRecord, SourceRecord)> {
        let view = self.inner.view.read();
        let rec = collection_in(&view.catalog, target)?;
        let src = source_of(&view.catalog, &rec)?;
        Ok((rec, src))
    }

    // -- wherever the partitions are -----------------------------------------

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
    pub(crate) fn info(&self, target: &str) -> Result<CollectionInfo> {
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
            // Re-tuning happens on the shards, each for its partitions.
            probe_factor: 1.0,
        })
    }
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

/// The source `rec` reads in `cat`, or `NOT_FOUND`.
fn source_of(cat: &rulake_catalog::Catalog, rec: &CollectionRecord) -> Result<SourceRecord> {
    cat.sources
        .get(&rec.source)
        .cloned()
        .ok_or_else(|| CoordinatorError::NotFound {
            kind: "source",
            name: rec.source.clone(),
        })
}
