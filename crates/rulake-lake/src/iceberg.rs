//! Apache Iceberg tables: table metadata and manifests decide which Parquet
//! files hold a snapshot, RuLake's own Parquet reader reads them.
//!
//! Why not the `iceberg` crate: it pins an older arrow release than the
//! workspace (and brings its own storage layer), so using it would build a
//! second Arrow stack for what RuLake needs from it, a file list (see
//! `docs/lake-formats.md`). The metadata chain is read here: metadata JSON →
//! snapshot → manifest list (Avro) → manifests (Avro) → data files.
//! Manifests and manifest lists are immutable once written, so they are
//! cached by path and a refresh after an append reads only the new ones.
//!
//! Where the table is: a metadata file URL (`…/metadata/00002-….metadata.json`,
//! a static table), or the table's location, whose newest metadata file is
//! found from `metadata/version-hint.text` or, failing that, the highest
//! numbered `*.metadata.json` (what file-system catalogs and pyiceberg's
//! SQL catalog write). The generation is the snapshot id.
//!
//! Correctness comes before coverage: positional and equality delete files,
//! which RuLake does not apply, are an [`LakeError::Unsupported`] naming the
//! table and the file, never deleted rows served.

use crate::avro::{read_container, Value};
use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, RowStream, Source, Unit};
use crate::store::{open_store, path_in_store, to_url, StoreUrl};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parking_lot::Mutex;
use rulake_types::Generation;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Manifests fetched concurrently.
const MANIFEST_CONCURRENCY: usize = 8;

/// How to find and read an Iceberg table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcebergSourceConfig {
    /// A metadata file URL (static table) or the table location URL.
    pub location: String,
    /// Id column: `long`, `int` or `string`.
    pub id_column: String,
    /// Vector column: `list<float>` or `list<double>`.
    pub vector_column: String,
    /// Serve this snapshot forever (time travel) instead of the current one.
    pub snapshot_id: Option<i64>,
    /// Store options overriding the environment (`aws_endpoint`, ...).
    pub options: Vec<(String, String)>,
}

impl IcebergSourceConfig {
    /// Follow the current snapshot of the table at `location`.
    pub fn new(location: impl Into<String>, id_column: &str, vector_column: &str) -> Self {
        IcebergSourceConfig {
            location: location.into(),
            id_column: id_column.to_owned(),
            vector_column: vector_column.to_owned(),
            snapshot_id: None,
            options: Vec::new(),
        }
    }

    /// Pin the source to one snapshot.
    pub fn at_snapshot(mut self, snapshot_id: i64) -> Self {
        self.snapshot_id = Some(snapshot_id);
        self
    }

    /// Add a store option (overrides the environment).
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One data file of a snapshot.
#[derive(Clone, Debug)]
struct DataFile {
    location: String,
    size: u64,
}

/// A manifest list entry.
#[derive(Clone, Debug)]
struct ManifestRef {
    path: String,
    /// 0 data, 1 deletes.
    content: i64,
}

/// An Iceberg table source.
#[derive(Debug)]
pub struct IcebergSource {
    config: IcebergSourceConfig,
    store: StoreUrl,
    /// Metadata file given directly (static table), or `None` for a location.
    static_metadata: Option<Path>,
    files: ParquetSource,
    /// Parsed metadata files by path (immutable once written).
    metadata: Mutex<HashMap<Path, Arc<Json>>>,
    /// Decoded manifest lists and manifests by location.
    manifest_lists: Mutex<HashMap<String, Arc<Vec<ManifestRef>>>>,
    manifests: Mutex<HashMap<String, Arc<Vec<DataFile>>>>,
}

/// Sequence number of a metadata file name: `00012-<uuid>.metadata.json` or
/// `v12.metadata.json`.
fn metadata_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".metadata.json")?;
    let stem = stem.strip_prefix('v').unwrap_or(stem);
    let digits: String = stem.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    digits.parse().ok()
}

impl IcebergSource {
    /// Open a table (no I/O yet besides building the store client).
    pub fn open(config: IcebergSourceConfig) -> Result<Self> {
        let loc = config.location.trim_end_matches('/');
        let url = to_url(loc)?;
        let is_file = loc.ends_with(".metadata.json");
        // The store is opened on the table location: the metadata file's
        // grandparent when a file is given.
        let table_url = if is_file {
            let mut u = url.clone();
            u.path_segments_mut()
                .map_err(|_| LakeError::InvalidUrl {
                    url: loc.to_owned(),
                    reason: "cannot address a metadata file in this URL".into(),
                })?
                .pop()
                .pop();
            u
        } else {
            url.clone()
        };
        let store = open_store(&table_url, &config.options)?;
        let static_metadata = if is_file {
            Some(
                path_in_store(&store, url.as_str()).ok_or_else(|| LakeError::InvalidUrl {
                    url: loc.to_owned(),
                    reason: "metadata file URL not understood".into(),
                })?,
            )
        } else {
            None
        };
        let files =
            ParquetSource::for_table(store.clone(), &config.id_column, &config.vector_column);
        Ok(IcebergSource {
            config,
            store,
            static_metadata,
            files,
            metadata: Mutex::new(HashMap::new()),
            manifest_lists: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
        })
    }

    /// The config this source was opened with.
    pub fn config(&self) -> &IcebergSourceConfig {
        &self.config
    }

    fn table(&self) -> String {
        self.config.location.clone()
    }

    fn meta_err(&self, file: &str, reason: impl Into<String>) -> LakeError {
        LakeError::TableMetadata {
            table: self.table(),
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    fn not_found(&self, reason: impl Into<String>) -> LakeError {
        LakeError::TableNotFound {
            table: self.table(),
            reason: reason.into(),
        }
    }

    async fn get(&self, path: &Path) -> Result<bytes::Bytes> {
        let r = match self.store.store.get(path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        r.map_err(|e| match e {
            object_store::Error::NotFound { .. } => LakeError::Vanished {
                path: path.to_string(),
            },
            e => LakeError::store(path.to_string(), e),
        })
    }

    /// The newest metadata file of the table.
    async fn current_metadata_path(&self) -> Result<Path> {
        if let Some(p) = &self.static_metadata {
            return Ok(p.clone());
        }
        let dir = self.store.path.clone().join("metadata");
        match self.get(&dir.clone().join("version-hint.text")).await {
            Ok(hint) => {
                let v = String::from_utf8_lossy(&hint).trim().to_owned();
                let p = dir.clone().join(format!("v{v}.metadata.json"));
                if v.parse::<u64>().is_ok() {
                    return Ok(p);
                }
                return Err(self.meta_err(
                    dir.clone().join("version-hint.text").as_ref(),
                    format!("not a version number: {v:?}"),
                ));
            }
            Err(LakeError::Vanished { .. }) => {}
            Err(e) => return Err(e),
        }
        let objects: Vec<ObjectMeta> = self
            .store
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    self.not_found(format!("no metadata directory {dir}"))
                }
                e => LakeError::store(dir.to_string(), e),
            })?;
        objects
            .into_iter()
            .filter_map(|m| {
                let seq = metadata_seq(m.location.filename()?)?;
                Some((seq, m.location))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
            .map(|(_, p)| p)
            .ok_or_else(|| self.not_found(format!("no *.metadata.json under {dir}")))
    }

    async fn load_metadata(&self, path: &Path) -> Result<Arc<Json>> {
        if let Some(m) = self.metadata.lock().get(path) {
            return Ok(m.clone());
        }
        let body = self.get(path).await.map_err(|e| match e {
            LakeError::Vanished { .. } if self.static_metadata.is_some() => {
                self.not_found(format!("metadata file {path} does not exist"))
            }
            e => e,
        })?;
        let json: Json = serde_json::from_slice(&body)
            .map_err(|e| self.meta_err(path.as_ref(), format!("not JSON: {e}")))?;
        if !json.is_object() || json.get("format-version").is_none() {
            return Err(self.meta_err(
                path.as_ref(),
                "not Iceberg table metadata (no format-version)",
            ));
        }
        let json = Arc::new(json);
        self.metadata.lock().insert(path.clone(), json.clone());
        Ok(json)
    }

    /// The snapshot to serve (`None`: the table has no snapshot yet).
    fn snapshot<'a>(&self, file: &Path, md: &'a Json) -> Result<Option<&'a Json>> {
        let wanted = match self.config.snapshot_id {
            Some(id) => id,
            None => match md.get("current-snapshot-id").and_then(|v| v.as_i64()) {
                None | Some(-1) => return Ok(None),
                Some(id) => id,
            },
        };
        let snaps = md
            .get("snapshots")
            .and_then(|s| s.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        match snaps
            .iter()
            .find(|s| s.get("snapshot-id").and_then(|v| v.as_i64()) == Some(wanted))
        {
            Some(s) => Ok(Some(s)),
            None if self.config.snapshot_id.is_some() => Err(LakeError::VersionNotFound {
                table: self.table(),
                what: format!("snapshot {wanted}"),
            }),
            None => Err(self.meta_err(
                file.as_ref(),
                format!("current snapshot {wanted} is not in the snapshot list"),
            )),
        }
    }

    fn generation_of(snapshot: Option<&Json>) -> Generation {
        match snapshot
            .and_then(|s| s.get("snapshot-id"))
            .and_then(|v| v.as_i64())
        {
            Some(id) => Generation(format!("iceberg-{id}")),
            None => Generation("iceberg-empty".into()),
        }
    }

    fn resolve(&self, location: &str, context: &str) -> Result<Path> {
        path_in_store(&self.store, location).ok_or_else(|| LakeError::Unsupported {
            table: self.table(),
            feature: "files in another store".into(),
            detail: format!(
                "{location} (named by {context}) is not inside {}",
                self.store.url
            ),
        })
    }

    async fn avro(&self, location: &str, context: &str) -> Result<Vec<Value>> {
        let path = self.resolve(location, context)?;
        let body = self.get(&path).await.map_err(|e| match e {
            LakeError::Vanished { path } => {
                self.meta_err(&path, format!("named by {context} but missing"))
            }
            e => e,
        })?;
        read_container(&body)
            .map(|f| f.records)
            .map_err(|e| self.meta_err(location, e))
    }

    async fn manifest_list(&self, location: &str, metadata: &str) -> Result<Arc<Vec<ManifestRef>>> {
        if let Some(l) = self.manifest_lists.lock().get(location) {
            return Ok(l.clone());
        }
        let records = self.avro(location, metadata).await?;
        let mut out = Vec::with_capacity(records.len());
        for r in &records {
            let path = r
                .get("manifest_path")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    self.meta_err(location, "manifest list entry without manifest_path")
                })?;
            out.push(ManifestRef {
                path: path.to_owned(),
                content: r.get("content").and_then(Value::as_long).unwrap_or(0),
            });
        }
        let out = Arc::new(out);
        self.manifest_lists
            .lock()
            .insert(location.to_owned(), out.clone());
        Ok(out)
    }

    async fn manifest(&self, m: &ManifestRef, list: &str) -> Result<Arc<Vec<DataFile>>> {
        if let Some(f) = self.manifests.lock().get(&m.path) {
            return Ok(f.clone());
        }
        let records = self.avro(&m.path, list).await?;
        let mut out = Vec::new();
        for r in &records {
            // status 2 = DELETED: the file left the table in this snapshot.
            if r.get("status").and_then(Value::as_long) == Some(2) {
                continue;
            }
            let df = r
                .get("data_file")
                .ok_or_else(|| self.meta_err(&m.path, "manifest entry without data_file"))?;
            let file_path = df
                .get("file_path")
                .and_then(Value::as_str)
                .ok_or_else(|| self.meta_err(&m.path, "data_file without file_path"))?;
            let content = df.get("content").and_then(Value::as_long).unwrap_or(0);
            if m.content != 0 || content != 0 {
                let kind = if content == 2 {
                    "equality"
                } else {
                    "positional"
                };
                return Err(LakeError::Unsupported {
                    table: self.table(),
                    feature: format!("{kind} delete files"),
                    detail: format!(
                        "{file_path} (manifest {}) deletes rows RuLake would still return; rewrite the table's data files (e.g. rewrite_data_files) to apply them",
                        m.path
                    ),
                });
            }
            let format = df
                .get("file_format")
                .and_then(Value::as_str)
                .unwrap_or("PARQUET");
            if !format.eq_ignore_ascii_case("parquet") {
                return Err(LakeError::Unsupported {
                    table: self.table(),
                    feature: format!("{format} data files"),
                    detail: format!("{file_path}: RuLake reads Parquet data files only"),
                });
            }
            let size = df
                .get("file_size_in_bytes")
                .and_then(Value::as_long)
                .ok_or_else(|| self.meta_err(&m.path, "data_file without file_size_in_bytes"))?;
            out.push(DataFile {
                location: file_path.to_owned(),
                size: size.max(0) as u64,
            });
        }
        let out = Arc::new(out);
        self.manifests.lock().insert(m.path.clone(), out.clone());
        Ok(out)
    }

    /// Manifest locations of a snapshot (v2: a manifest list; v1 may
    /// inline them).
    async fn snapshot_manifests(&self, snap: &Json, file: &Path) -> Result<Vec<ManifestRef>> {
        if let Some(list) = snap.get("manifest-list").and_then(|v| v.as_str()) {
            return Ok(self.manifest_list(list, file.as_ref()).await?.to_vec());
        }
        if let Some(ms) = snap.get("manifests").and_then(|v| v.as_array()) {
            return Ok(ms
                .iter()
                .filter_map(|m| m.as_str())
                .map(|p| ManifestRef {
                    path: p.to_owned(),
                    content: 0,
                })
                .collect());
        }
        Err(self.meta_err(
            file.as_ref(),
            "snapshot has neither manifest-list nor manifests",
        ))
    }

    /// Forget cached manifests no longer referenced (bounded memory over a
    /// long-lived table).
    fn trim_caches(&self, keep_lists: &[&str], keep: &[ManifestRef]) {
        self.manifest_lists
            .lock()
            .retain(|k, _| keep_lists.contains(&k.as_str()));
        let live: std::collections::HashSet<&str> = keep.iter().map(|m| m.path.as_str()).collect();
        self.manifests
            .lock()
            .retain(|k, _| live.contains(k.as_str()));
        let mut md = self.metadata.lock();
        if md.len() > 4 {
            md.clear();
        }
    }
}

#[async_trait]
impl Source for IcebergSource {
    fn kind(&self) -> &'static str {
        "iceberg"
    }

    fn describe(&self) -> String {
        match self.config.snapshot_id {
            Some(id) => format!("{}@{id}", self.config.location),
            None => self.config.location.clone(),
        }
    }

    async fn generation(&self) -> Result<Generation> {
        let path = self.current_metadata_path().await?;
        let md = self.load_metadata(&path).await?;
        Ok(Self::generation_of(self.snapshot(&path, &md)?))
    }

    async fn list_units(&self) -> Result<Listing> {
        let path = self.current_metadata_path().await?;
        let md = self.load_metadata(&path).await?;
        let snap = self.snapshot(&path, &md)?;
        let generation = Self::generation_of(snap);
        let Some(snap) = snap else {
            return Ok(Listing {
                generation,
                units: Vec::new(),
            });
        };
        let manifests = self.snapshot_manifests(snap, &path).await?;
        let list_loc = snap
            .get("manifest-list")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let list_ref = list_loc.as_str();
        let per_manifest: Vec<Arc<Vec<DataFile>>> = futures::stream::iter(manifests.clone())
            .map(|m| async move { self.manifest(&m, list_ref).await })
            .buffered(MANIFEST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut objects = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for files in &per_manifest {
            for f in files.iter() {
                let location = self.resolve(&f.location, "a manifest")?;
                if !seen.insert(location.clone()) {
                    continue;
                }
                objects.push(ObjectMeta {
                    location,
                    last_modified: chrono::DateTime::default(),
                    size: f.size,
                    // Data files are immutable: the path names the content.
                    e_tag: Some("iceberg".into()),
                    version: None,
                });
            }
        }
        self.trim_caches(&[list_loc.as_str()], &manifests);
        let units = self.files.units_of_objects(objects).await?;
        Ok(Listing { generation, units })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.files.read_object_unit(unit, dim)
    }

    /// A snapshot id, or the generation string `iceberg-<id>`.
    fn pinned(&self, version: &str) -> Result<Arc<dyn Source>> {
        let id = version
            .trim_start_matches("iceberg-")
            .parse()
            .map_err(|_| {
                LakeError::Invalid(format!(
                    "{}: {version:?} is not an Iceberg snapshot id",
                    self.table()
                ))
            })?;
        Ok(Arc::new(IcebergSource::open(
            self.config.clone().at_snapshot(id),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::metadata_seq;

    #[test]
    fn metadata_file_names() {
        assert_eq!(
            metadata_seq("00012-6f1c4b4e-2b9a-4a43-9f0e-1d1f0f2f6a7b.metadata.json"),
            Some(12)
        );
        assert_eq!(metadata_seq("v3.metadata.json"), Some(3));
        assert_eq!(metadata_seq("snap-1-1-abc.avro"), None);
        assert_eq!(metadata_seq("abc.metadata.json"), None);
    }
}
