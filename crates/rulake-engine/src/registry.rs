//! Sources and collections by name: what exists, what it reads, and what
//! survives a change to it.
//!
//! A collection holds its source (pinned, when the spec asks for a
//! version) rather than looking it up per query, so a source can only be
//! unregistered once no collection reads it. An alter changes only what
//! needs no rebuild, and does so by swapping in a new [`Collection`] value
//! that carries the serving generation over; everything that must outlive
//! such a swap (deleted ids, the partitions this engine owns) is therefore
//! kept beside the collections, keyed by name, not inside them. Dropping a
//! collection clears all of it, cached and persisted partitions included.

use crate::check::GenerationCheck;
use crate::deletes::Deletes;
use crate::load::key;
use crate::retune::Retune;
use crate::{Alter, CollectionInfo, CollectionSpec, EngineError, Result, RuLake};
use parking_lot::{Mutex, RwLock};
use rulake_lake::{Listing, Source};
use rulake_types::{SearchParams, VectorId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// The generation a collection serves and when the source was last seen
/// at it (what an `eventual` collection's staleness is measured from).
#[derive(Clone)]
pub(crate) struct Serving {
    pub(crate) listing: Listing,
    pub(crate) checked_at: Instant,
    /// When this generation was swapped in (lineage reports it).
    pub(crate) loaded_at: std::time::SystemTime,
}

/// One registered collection: its spec, its source and its serving state.
pub(crate) struct Collection {
    pub(crate) spec: CollectionSpec,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) serving: RwLock<Option<Serving>>,
    /// Serialises refreshes and partition loads of this collection.
    pub(crate) refresh: tokio::sync::Mutex<()>,
    /// Whether a refresh runs in the background; queries that must see
    /// its end (a `fresh` collection's) wait on the change to `false`.
    pub(crate) background: tokio::sync::watch::Sender<bool>,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The generation check `fresh` queries share.
    pub(crate) check: Arc<GenerationCheck>,
    /// Live re-tuning toward `spec.target_recall`.
    pub(crate) retune: Arc<Retune>,
}

impl Collection {
    /// A collection value with no refresh running, serving `serving`.
    fn new(
        spec: CollectionSpec,
        source: Arc<dyn Source>,
        serving: Option<Serving>,
        last_error: Option<String>,
    ) -> Self {
        let retune = Arc::new(Retune::new(spec.target_recall));
        Collection {
            spec,
            source,
            serving: RwLock::new(serving),
            refresh: tokio::sync::Mutex::new(()),
            background: tokio::sync::watch::Sender::new(false),
            last_error: Mutex::new(last_error),
            check: Arc::default(),
            retune,
        }
    }

    /// The re-tuning state a query's answer should be counted toward:
    /// only answers searched at the defaults (no `nprobe` from the query
    /// or the collection) say anything about them.
    pub(crate) fn retune_for(&self, params: &SearchParams) -> Option<&Arc<Retune>> {
        (params.nprobe.is_none() && self.spec.nprobe.is_none()).then_some(&self.retune)
    }
}

/// Check a source or collection name (`kind` names it in the error).
pub(crate) fn valid_name(kind: &str, name: &str) -> Result<()> {
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
            Arc::new(Collection::new(spec, source, None, None)),
        );
        Ok(())
    }

    /// Drop a collection and its cached (and persisted) partitions.
    ///
    /// Synchronous: the persisted files are removed before it returns, so
    /// a collection created again under the name starts from nothing. An
    /// async caller with a persist directory should run it on a blocking
    /// thread.
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
        let serving = old.serving.read().clone();
        let last_error = old.last_error.lock().clone();
        let new = Arc::new(Collection::new(
            spec.clone(),
            old.source.clone(),
            serving,
            last_error,
        ));
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

    pub(crate) fn deletes(&self, name: &str) -> Option<Arc<Deletes>> {
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

    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
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

    /// The partitions this engine serves of a collection (all of them in
    /// one process), in partition order.
    pub(crate) fn owned(&self, spec: &CollectionSpec) -> Vec<u32> {
        match self.inner.owned.read().get(&spec.name) {
            Some(set) => set
                .iter()
                .copied()
                .filter(|p| *p < spec.partitions)
                .collect(),
            None => (0..spec.partitions).collect(),
        }
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
            probe_factor: c.retune.factor(),
        };
        Ok(info)
    }
}
