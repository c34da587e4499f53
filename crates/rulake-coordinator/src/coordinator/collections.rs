//! Collections: create, drop, alter, list, describe.
//!
//! Why a collection is two catalog records (a source and a collection)
//! created one after the other, with the engine told last: the catalog is
//! the truth, so everything the engine would refuse is refused before the
//! catalog hears of it, and the engine only ever follows the catalog
//! through `sync`. A dropped managed collection's files are removed only
//! after the catalog stops naming them, so a failure there leaves
//! garbage, never a collection that reads missing files.

use super::{collection_in, source_of, Coordinator};
use crate::{sync, CoordinatorError, Result};
use rulake_catalog::{CollectionChanges, CollectionRecord, Command, SourceKind, SourceRecord};
use rulake_engine::{CollectionInfo, CollectionSpec};
use rulake_lake::{LakeError, Source};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a create waits for the source's schema before leaving the
/// column checks to the first load.
const SCHEMA_WAIT: Duration = Duration::from_secs(10);

/// Refuse payload and standing-filter columns the source's schema lacks
/// or holds in a type RuLake cannot keep, naming the column: one footer,
/// a Delta or an Iceberg schema read now rather than a failed first load.
/// The lake's own trouble (unreachable, no table yet, slow) is not the
/// request's fault: the first load reports it, as before.
async fn check_columns(source: &dyn Source, spec: &CollectionSpec) -> Result<()> {
    let mut columns = spec.payload_columns.clone();
    if let Some(f) = &spec.standing_filter {
        for c in f.columns() {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_owned());
            }
        }
    }
    if columns.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(SCHEMA_WAIT, source.check_columns(&columns)).await {
        Ok(Err(e @ (LakeError::MissingColumn { .. } | LakeError::ColumnType { .. }))) => {
            Err(CoordinatorError::InvalidArgument(e.to_string()))
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "columns not checked at create; the first load will");
            Ok(())
        }
        Ok(Ok(())) | Err(_) => Ok(()),
    }
}

/// Refuse payload column declarations that do not fit the source: a
/// managed source has no schema, so each of its columns names its type
/// (`year:int`); an external table's schema gives the types, so its
/// columns are named alone rather than typed twice, possibly differently.
fn check_declarations(record: &CollectionRecord, source: &SourceKind) -> Result<()> {
    let managed = matches!(source, SourceKind::Managed { .. });
    for text in &record.payload_columns {
        let d = rulake_types::declared(text);
        match (managed, d.ty) {
            (true, None) => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "payload column {text:?} of managed collection {:?} needs a type, as in `{}:string` (types: {}): a managed source has no schema to take it from",
                    record.name,
                    d.name,
                    rulake_types::declare::TYPE_NAMES
                )))
            }
            (false, Some(_)) => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "payload column {text:?}: a {} source's columns take their types from its table's schema; name it alone ({:?})",
                    source.name(),
                    d.name
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

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

impl Coordinator {
    /// Create a collection: its source and record in the catalog, then the
    /// engine. Nothing is read from the lake until the first query but the
    /// schema, when payload or standing-filter columns are to be checked.
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
        check_declarations(&record, &source.kind)?;
        if matches!(source.kind, SourceKind::Managed { .. }) && record.standing_filter.is_some() {
            return Err(CoordinatorError::InvalidArgument(
                "a standing filter needs a Parquet, Delta or Iceberg source: a managed source holds only ids and vectors".into(),
            ));
        }
        let spec = sync::engine_spec(&record, &source)?;
        spec.validate()?;
        let opened = sync::open_source_async(&source).await?;
        check_columns(opened.as_ref(), &spec).await?;
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
        let source = {
            let view = self.inner.view.read();
            let rec = collection_in(&view.catalog, name)?;
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
        let (target, record, source, aliases) = {
            let view = self.inner.view.read();
            let cat = &view.catalog;
            let target = super::aliases::resolve_in(cat, name)?;
            let record = target_record(cat, &target)?;
            let source = source_of(cat, &record)?;
            let aliases = cat
                .aliases
                .iter()
                .filter(|(_, t)| **t == target)
                .map(|(a, _)| a.clone())
                .collect();
            (target, record, source, aliases)
        };
        let info = self.info(&target)?;
        Ok(CollectionView {
            record,
            source,
            aliases,
            info,
        })
    }
}

/// A name part no two creations share: managed prefixes are never reused,
/// so a dropped collection's leftover files can never reappear in a new one.
/// Random (128 bits), not a clock reading, which a clock stepped back
/// could repeat.
pub(crate) fn unique_suffix() -> String {
    rulake_lake::managed::unique_id()
}

/// The record of `target`, which an alias may name while it is being
/// dropped: not found rather than a panic.
pub(crate) fn target_record(
    cat: &rulake_catalog::Catalog,
    target: &str,
) -> Result<rulake_catalog::CollectionRecord> {
    cat.collections
        .get(target)
        .cloned()
        .ok_or_else(|| CoordinatorError::NotFound {
            kind: "collection",
            name: target.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use crate::ingest::tests::managed_collection;
    use crate::{CollectionDef, CoordinatorError};
    use rulake_catalog::{CollectionRecord, SourceKind};
    use rulake_engine::EngineError;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A name read while its collection is dropped and created again, over
    /// and over, is either there or not found, never a panic (issue 25,
    /// bug 7: the name was resolved under one read of the catalog view and
    /// the record indexed under a second one, so a drop applied in between
    /// panicked the caller's task).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_read_while_it_is_dropped_is_found_or_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_node, coord) = managed_collection(dir.path()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (coord, stop) = (coord.clone(), stop.clone());
            // A blocking thread of the runtime: reads spin as fast as the
            // view allows, so drops land between any two of its steps.
            tokio::task::spawn_blocking(move || {
                let (mut reads, mut found) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for r in [coord.describe("x").map(drop), coord.ingest("x").map(drop)] {
                        match r {
                            Ok(()) => found += 1,
                            // Gone from the catalog view, or (described
                            // between the view and the engine) from the engine.
                            Err(CoordinatorError::NotFound { .. })
                            | Err(CoordinatorError::Engine(EngineError::NotFound { .. })) => {}
                            Err(e) => panic!("reading x while it is dropped: {e:?}"),
                        }
                    }
                    reads += 2;
                }
                (reads, found)
            })
        };
        for _ in 0..200 {
            coord
                .create_collection(CollectionDef {
                    record: CollectionRecord::new("x", "", 2),
                    source: SourceKind::Managed {
                        prefix: String::new(),
                    },
                    options: Default::default(),
                })
                .await
                .expect("create x");
            coord.drop_collection("x").await.expect("drop x");
        }
        stop.store(true, Ordering::Relaxed);
        let (reads, found) = reader.await.expect("the reader did not panic");
        assert!(
            found > 0 && found < reads,
            "the reader saw x both there and gone ({found} of {reads} reads found it)"
        );
    }
}
