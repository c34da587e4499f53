//! Catalog → engine, level-triggered: compare what the catalog says with
//! what was last applied to the engine and apply the difference. Running
//! it twice changes nothing; running it after a restart rebuilds the
//! engine's collections from the catalog alone.

use crate::{Coordinator, CoordinatorError, Result};
use rulake_catalog::{CollectionRecord, SourceKind, SourceRecord};
use rulake_engine::{Alter, CollectionSpec, EngineError};
use rulake_lake::managed::Commits;
use rulake_lake::{LakeError, ManagedSource, ParquetSource, ParquetSourceConfig, Source};
use rulake_types::VectorId;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

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
        .nprobe(rec.nprobe.map(|n| n as usize));
    match &src.kind {
        SourceKind::Delta {
            version: Some(v), ..
        } => spec = spec.pin(v.to_string()),
        SourceKind::Iceberg {
            snapshot_id: Some(s),
            ..
        } => spec = spec.pin(s.to_string()),
        _ => {}
    }
    Ok(spec)
}

fn lake_err(e: LakeError) -> CoordinatorError {
    match e {
        LakeError::InvalidUrl { .. } | LakeError::Invalid(_) => {
            CoordinatorError::InvalidArgument(e.to_string())
        }
        other => CoordinatorError::Lake(other),
    }
}

fn columns(id: &str, vector: &str) -> Result<()> {
    if id.is_empty() || vector.is_empty() {
        return Err(CoordinatorError::InvalidArgument(
            "id_column and vector_column are required".into(),
        ));
    }
    Ok(())
}

/// Open the source a catalog record describes (no I/O yet).
pub(crate) fn open_source(src: &SourceRecord) -> Result<Arc<dyn Source>> {
    let options: Vec<(String, String)> = src
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match &src.kind {
        SourceKind::Parquet {
            url,
            id_column,
            vector_column,
        } => {
            columns(id_column, vector_column)?;
            let config = ParquetSourceConfig {
                url: url.clone(),
                id_column: id_column.clone(),
                vector_column: vector_column.clone(),
                options,
            };
            Ok(Arc::new(ParquetSource::open(config).map_err(lake_err)?))
        }
        #[cfg(feature = "delta")]
        SourceKind::Delta {
            url,
            id_column,
            vector_column,
            ..
        } => {
            columns(id_column, vector_column)?;
            let mut config = rulake_lake::DeltaSourceConfig::new(url, id_column, vector_column);
            config.options = options;
            Ok(Arc::new(
                rulake_lake::DeltaSource::open(config).map_err(lake_err)?,
            ))
        }
        #[cfg(feature = "iceberg")]
        SourceKind::Iceberg {
            url,
            id_column,
            vector_column,
            sql_catalog,
            ..
        } => {
            columns(id_column, vector_column)?;
            let mut config = match sql_catalog {
                Some(c) => rulake_lake::IcebergSourceConfig::sql_catalog(
                    rulake_lake::SqlCatalogTable {
                        uri: c.uri.clone(),
                        catalog: c.catalog.clone(),
                        namespace: c.namespace.clone(),
                        table: c.table.clone(),
                    },
                    id_column,
                    vector_column,
                ),
                None => rulake_lake::IcebergSourceConfig::new(url, id_column, vector_column),
            };
            config.options = options;
            Ok(Arc::new(
                rulake_lake::IcebergSource::open(config).map_err(lake_err)?,
            ))
        }
        #[allow(unreachable_patterns)]
        SourceKind::Delta { .. } | SourceKind::Iceberg { .. } => {
            Err(CoordinatorError::FailedPrecondition(
                "this server was built without the delta or iceberg feature".into(),
            ))
        }
        SourceKind::Managed { prefix } => Ok(Arc::new(
            ManagedSource::open(prefix, &options).map_err(lake_err)?,
        )),
    }
}

/// A writer's handle on a managed source's files.
pub(crate) fn managed_writer(prefix: &str) -> Result<ManagedSource> {
    ManagedSource::open(prefix, &[]).map_err(lake_err)
}

fn commits_of(cat: &rulake_catalog::Catalog, source: &str) -> Commits {
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
        let mut synced = self.inner.sync.lock().await;
        let cat = self.inner.view.read().catalog.clone();
        let engine = &self.inner.engine;

        // Gone, or changed beyond what an alter can do: drop from the engine.
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
            match engine.drop_collection(&name) {
                Ok(()) | Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let _ = engine.unregister_source(&src.name);
        }

        for (name, rec) in &cat.collections {
            let Some(src) = cat.sources.get(&rec.source) else {
                continue;
            };
            let now = (rec.clone(), src.clone());
            match synced.collections.get(name) {
                None => {
                    let source: Arc<dyn Source> = match &src.kind {
                        SourceKind::Managed { prefix } => {
                            let m = Arc::new(ManagedSource::open(prefix, &[]).map_err(lake_err)?);
                            m.set_commits(commits_of(&cat, &src.name));
                            synced.managed.insert(src.name.clone(), m.clone());
                            m
                        }
                        _ => open_source(src)?,
                    };
                    let _ = engine.unregister_source(&src.name);
                    engine.register_source(&src.name, source)?;
                    engine.create_collection(engine_spec(rec, src)?)?;
                }
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
