//! Catalog → engine, level-triggered: compare what the catalog says with
//! what was last applied to the engine and apply the difference. Running
//! it twice changes nothing; running it after a restart rebuilds the
//! engine's collections from the catalog alone.
//!
//! Sync runs on the async path of every write, so its steps that can
//! block run on tokio's blocking pool: opening a source (an Iceberg table
//! named through a SQL catalog is looked up in SQLite), creating a
//! collection (pinning such a table opens it again) and dropping one (its
//! persisted partitions are removed from disk before the call returns).
//! A sync runs to the end in a task of its own, so a caller that goes
//! away cannot leave the engine changed but not recorded as changed.

use crate::{Coordinator, CoordinatorError, Result};
use rulake_catalog::{Catalog, CollectionRecord, SourceKind, SourceRecord};
use rulake_engine::{Alter, CollectionSpec, EngineError, RuLake};
use rulake_lake::managed::Commits;
use rulake_lake::{LakeError, ManagedSource, Source};
use rulake_types::VectorId;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tracing::Instrument;

/// What the engine was last brought to.
#[derive(Default)]
pub(crate) struct Synced {
    collections: HashMap<String, (CollectionRecord, SourceRecord)>,
    tombstones: HashMap<String, BTreeSet<String>>,
    managed: HashMap<String, Arc<ManagedSource>>,
}

/// The engine's spec of a catalog collection.
pub(crate) fn engine_spec(rec: &CollectionRecord, src: &SourceRecord) -> Result<CollectionSpec> {
    let mut spec = CollectionSpec::new(&rec.name, &src.name, rec.dim as usize)
        .metric(rec.metric)
        .partitions(rec.partitions)
        .consistency(rec.consistency)
        .rerank(rec.rerank as usize)
        .nprobe(rec.nprobe.map(|n| n as usize))
        .payload_columns(rec.payload_names());
    if let Some(r) = rec.target_recall {
        spec = spec.target_recall(r);
    }
    if let Some(text) = &rec.standing_filter {
        let f = rulake_types::filter::parse(text)
            .map_err(|e| CoordinatorError::InvalidArgument(format!("standing filter: {e}")))?;
        spec = spec.standing_filter(f);
    }
    if let Some(p) = src.kind.pinned() {
        spec = spec.pin(p);
    }
    Ok(spec)
}

fn lake_err(e: LakeError) -> CoordinatorError {
    match e {
        LakeError::InvalidUrl { .. } | LakeError::Invalid(_) => {
            CoordinatorError::InvalidArgument(e.to_string())
        }
        LakeError::NotBuilt { .. } => CoordinatorError::FailedPrecondition(e.to_string()),
        LakeError::Denied { .. } => CoordinatorError::PermissionDenied(e.to_string()),
        other => CoordinatorError::Lake(other),
    }
}

/// Open the source a catalog record describes (no I/O yet), through the
/// lake's one factory.
pub(crate) fn open_source(src: &SourceRecord) -> Result<Arc<dyn Source>> {
    rulake_lake::open_source(&src.kind, &src.options).map_err(lake_err)
}

/// A writer's handle on a managed source's files.
pub(crate) fn managed_writer(prefix: &str) -> Result<ManagedSource> {
    ManagedSource::open(prefix, &[]).map_err(lake_err)
}

/// What a task of sync's answered: its result, or its panic resumed in
/// the caller as if it had run inline.
pub(crate) fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(CoordinatorError::Unavailable(format!(
            "catalog → engine sync did not finish: {e}"
        ))),
    }
}

/// Run `f` on tokio's blocking pool and wait for it.
async fn off_worker<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    joined(tokio::task::spawn_blocking(f).await)
}

/// [`open_source`] for async callers, on a blocking thread.
pub(crate) async fn open_source_async(src: &SourceRecord) -> Result<Arc<dyn Source>> {
    let src = src.clone();
    off_worker(move || open_source(&src)).await
}

/// `engine.create_collection(spec)` on a blocking thread.
async fn create_in_engine(engine: &RuLake, spec: CollectionSpec) -> Result<()> {
    let engine = engine.clone();
    off_worker(move || Ok(engine.create_collection(spec)?)).await
}

/// `engine.drop_collection(name)` on a blocking thread; the engine's own
/// answer, for the caller to judge.
async fn drop_in_engine(engine: &RuLake, name: &str) -> Result<Result<(), EngineError>> {
    let (engine, name) = (engine.clone(), name.to_owned());
    off_worker(move || Ok(engine.drop_collection(&name))).await
}

/// The files a managed source serves after the catalog's last commit.
pub(crate) fn commits_of(cat: &rulake_catalog::Catalog, source: &str) -> Commits {
    let list = cat.managed.get(source);
    Commits {
        seq: cat.managed_seq(source),
        files: list
            .map(|cs| cs.iter().flat_map(|c| c.files.iter().cloned()).collect())
            .unwrap_or_default(),
    }
}

/// Whether a change to a collection needs it re-created in the engine
/// (anything but the fields an alter may change).
fn needs_recreate(
    old: &(CollectionRecord, SourceRecord),
    new: &(CollectionRecord, SourceRecord),
) -> bool {
    let strip = |r: &CollectionRecord| CollectionRecord {
        consistency: rulake_types::Consistency::Fresh,
        rerank: 0,
        nprobe: None,
        replication: 0,
        ..r.clone()
    };
    strip(&old.0) != strip(&new.0) || old.1 != new.1
}

impl Coordinator {
    /// Bring the engine to the catalog this process has applied.
    pub async fn sync(&self) -> Result<()> {
        if self.inner.remote.is_some() {
            // The shard nodes hold the collections; each syncs itself.
            return Ok(());
        }
        // In a task of its own, so it runs to the end even when the caller
        // goes away (a client cancels its call) while a step waits on the
        // blocking pool: the engine and `Synced`, the record of what it was
        // brought to, must change together.
        let this = self.clone();
        let task = async move { this.sync_local().await };
        joined(tokio::spawn(task.in_current_span()).await)
    }

    async fn sync_local(&self) -> Result<()> {
        let mut synced = self.inner.sync.lock().await;
        let cat = self.inner.view.read().catalog.clone();
        let engine = &self.inner.engine;
        drop_stale(engine, &mut synced, &cat).await?;

        for (name, rec) in &cat.collections {
            let Some(src) = cat.sources.get(&rec.source) else {
                continue;
            };
            let now = (rec.clone(), src.clone());
            match synced.collections.get(name) {
                None => add_to_engine(engine, &mut synced, &cat, rec, src).await?,
                Some(old) if old.0 != now.0 => {
                    engine
                        .alter_collection(
                            name,
                            Alter {
                                consistency: Some(rec.consistency),
                                rerank: Some(rec.rerank as usize),
                                nprobe: Some(rec.nprobe.map(|n| n as usize)),
                            },
                        )
                        .await?;
                }
                Some(_) => {}
            }
            synced.collections.insert(name.clone(), now);
            if let Some(m) = synced.managed.get(&src.name) {
                let commits = commits_of(&cat, &src.name);
                if m.commits().seq != commits.seq {
                    m.set_commits(commits);
                }
            }
            let tomb = cat.tombstones.get(name).cloned().unwrap_or_default();
            if synced.tombstones.get(name) != Some(&tomb) {
                let ids = tomb.iter().filter_map(|k| VectorId::from_key(k)).collect();
                engine.set_deleted(name, ids)?;
                synced.tombstones.insert(name.clone(), tomb);
            }
        }
        Ok(())
    }
}

/// Gone, or changed beyond what an alter can do: drop from the engine.
async fn drop_stale(engine: &RuLake, synced: &mut Synced, cat: &Catalog) -> Result<()> {
    let stale: Vec<String> = synced
        .collections
        .iter()
        .filter(|(name, old)| {
            let now = cat
                .collections
                .get(*name)
                .and_then(|r| cat.sources.get(&r.source).map(|s| (r.clone(), s.clone())));
            now.is_none_or(|now| needs_recreate(old, &now))
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in stale {
        let (_, src) = synced.collections.remove(&name).expect("listed above");
        synced.tombstones.remove(&name);
        synced.managed.remove(&src.name);
        match drop_in_engine(engine, &name).await? {
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = engine.unregister_source(&src.name);
    }
    Ok(())
}

/// A collection the engine has not seen: its source, then the collection.
async fn add_to_engine(
    engine: &RuLake,
    synced: &mut Synced,
    cat: &Catalog,
    rec: &CollectionRecord,
    src: &SourceRecord,
) -> Result<()> {
    let source: Arc<dyn Source> = match &src.kind {
        SourceKind::Managed { prefix } => {
            let m = Arc::new(ManagedSource::open(prefix, &[]).map_err(lake_err)?);
            m.set_commits(commits_of(cat, &src.name));
            synced.managed.insert(src.name.clone(), m.clone());
            m
        }
        _ => open_source_async(src).await?,
    };
    let _ = engine.unregister_source(&src.name);
    engine.register_source(&src.name, source)?;
    create_in_engine(engine, engine_spec(rec, src)?).await
}
