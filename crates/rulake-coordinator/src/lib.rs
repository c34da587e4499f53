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
//! Today the engine is in-process (the `rulake serve` embedded default);
//! the distributed query path replaces the engine calls with a fan-out to
//! shard nodes and keeps the rest.
//!
//! # Layout
//! - [`Coordinator`] — collections, aliases, search, deletes (this file).
//! - [`ingest`] — managed ingest: files first, one catalog commit, cleanup.
//! - [`embedded`] — every role in one process over one data directory.
//! - `sync` — catalog → engine.
//! - [`error`] — [`CoordinatorError`].

pub mod embedded;
pub mod error;
pub mod ingest;
mod sync;

pub use embedded::{Embedded, EmbeddedConfig};
pub use error::{CoordinatorError, Result};
pub use ingest::Ingest;

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
        let c = Coordinator {
            inner: Arc::new(Inner {
                engine,
                meta,
                view,
                managed_root: managed_root.trim_end_matches('/').to_owned(),
                sync: tokio::sync::Mutex::new(sync::Synced::default()),
                writers: Default::default(),
            }),
        };
        c.sync().await?;
        Ok(c)
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
        let info = self.inner.engine.describe(&target)?;
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

    /// Search a collection or alias.
    pub async fn search(
        &self,
        name: &str,
        query: &[f32],
        params: SearchParams,
    ) -> Result<SearchResponse> {
        let target = self.resolve(name)?;
        Ok(self.inner.engine.search(&target, query, params).await?)
    }

    /// Many queries against one collection or alias, one generation.
    pub async fn batch_search(
        &self,
        name: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
    ) -> Result<Vec<SearchResponse>> {
        let target = self.resolve(name)?;
        Ok(self
            .inner
            .engine
            .batch_search(&target, queries, params)
            .await?)
    }

    /// One query over several collections or aliases, merged exactly. Hits
    /// name the collection they came from (not the alias).
    pub async fn federated_search(
        &self,
        names: &[String],
        query: &[f32],
        params: SearchParams,
    ) -> Result<FederatedResponse> {
        let targets: Vec<String> = names
            .iter()
            .map(|n| self.resolve(n))
            .collect::<Result<_>>()?;
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        Ok(self
            .inner
            .engine
            .federated_search(&refs, query, params)
            .await?)
    }

    /// Check a collection's source now; returns the generation served and
    /// whether it changed.
    pub async fn refresh(&self, name: &str) -> Result<(Generation, bool)> {
        let target = self.resolve(name)?;
        let before = self.inner.engine.describe(&target)?.generation;
        let g = self.inner.engine.refresh(&target).await?;
        let changed = before.as_ref() != Some(&g);
        Ok((g, changed))
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
        let present = self.inner.engine.existing_ids(&target, &wanted).await?;
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
