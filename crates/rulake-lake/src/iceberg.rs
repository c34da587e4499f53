//! Apache Iceberg tables: the `iceberg` crate (apache/iceberg-rust) reads
//! the table metadata, RuLake's own Parquet reader reads the data.
//!
//! The split is deliberate (see `docs/lake-formats.md`): `iceberg` is on an
//! older arrow/parquet release than the workspace, so only its `spec` types
//! are used (table metadata, snapshots, schemas, manifest lists and
//! manifests, decoded from bytes RuLake fetched through its own
//! `object_store` client). Nothing Arrow-typed crosses from the crate:
//! what comes out of it is paths, sizes, sequence numbers and field ids.
//! Data and delete files are Parquet read by the workspace's reader, so
//! one Arrow serves every query. Manifests and manifest lists are
//! immutable once written, so they are cached by path and a refresh after
//! an append decodes only the new ones.
//!
//! Where the table is: a metadata file URL (`…/metadata/00002-….metadata.json`,
//! a static table), the table's location, whose newest metadata file is
//! found from `metadata/version-hint.text` or, failing that, the highest
//! numbered `*.metadata.json` (what file-system catalogs and pyiceberg's
//! SQL catalog write), or a table in a SQL catalog (feature `iceberg-sql`:
//! pyiceberg's `SqlCatalog` over SQLite), whose `metadata_location` is read
//! on every generation check because the catalog, not the file names, is
//! the source of truth there. The generation is the snapshot id.
//!
//! Deletes (format v2) are applied, not refused: position delete files
//! apply to data files whose data sequence number is at most theirs,
//! equality delete files on the id column to data files whose number is
//! strictly lower (the Iceberg spec's "Scan Planning" rules). Delete files
//! are immutable, so they are read once and cached by path; the affected
//! data files' units get versions naming their delete files, so only their
//! partitions rebuild. Correctness comes before coverage: what RuLake does
//! not apply (v3 deletion vectors in Puffin files, equality deletes on
//! another column or in a partitioned spec) is an [`LakeError::Unsupported`]
//! naming the table and the file, never deleted rows served.

use crate::deletes::{DeleteRegistry, FileDeletes};
use crate::error::{LakeError, Location, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, RowStream, Source, Unit};
use crate::store::{open_store, path_in_store, to_url, StoreUrl};
use ::iceberg::spec::{
    DataContentType, DataFileFormat, FormatVersion, Manifest, ManifestContentType, ManifestList,
    ManifestStatus, SnapshotRef, TableMetadata,
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parking_lot::Mutex;
use rulake_types::{Generation, VectorId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Manifests fetched concurrently.
const MANIFEST_CONCURRENCY: usize = 8;
/// Delete files read concurrently.
const DELETE_FILE_CONCURRENCY: usize = 4;
/// Rows per batch when reading a delete file.
const DELETE_BATCH_ROWS: usize = 8192;

/// A table named through a SQL catalog (pyiceberg's `SqlCatalog`): the
/// `iceberg_tables` row `(catalog_name, table_namespace, table_name)`
/// holds the current `metadata_location`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlCatalogTable {
    /// `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (the
    /// SQLAlchemy URIs pyiceberg takes) or a plain file path.
    pub uri: String,
    /// The catalog's name (`SqlCatalog(name, ...)`), column `catalog_name`.
    pub catalog: String,
    /// Namespace, dot-separated.
    pub namespace: String,
    /// Table name.
    pub table: String,
}

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
    /// The table through a SQL catalog instead of `location` (which is
    /// then ignored). Opening it needs the `iceberg-sql` feature.
    pub catalog: Option<SqlCatalogTable>,
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
            catalog: None,
        }
    }

    /// Follow the table a SQL catalog names: its `metadata_location` is
    /// looked up on every generation check.
    pub fn sql_catalog(table: SqlCatalogTable, id_column: &str, vector_column: &str) -> Self {
        IcebergSourceConfig {
            catalog: Some(table),
            ..Self::new(String::new(), id_column, vector_column)
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

/// One data or delete file of a snapshot.
#[derive(Clone, Debug)]
struct DataFile {
    location: String,
    size: u64,
    /// 0 data, 1 position deletes, 2 equality deletes.
    content: i64,
    /// Data sequence number (inherited from the manifest when null).
    seq: i64,
    /// `PARQUET`, `PUFFIN`, ...
    format: String,
    /// Field ids of an equality delete.
    equality_ids: Vec<i64>,
    /// True when the file's partition tuple has fields.
    partitioned: bool,
}

/// A manifest list entry.
#[derive(Clone, Debug)]
struct ManifestRef {
    path: String,
    /// 0 data, 1 deletes.
    content: i64,
    /// The manifest's sequence number (what null entry numbers inherit).
    sequence_number: i64,
}

/// What a delete file deletes, read once per file.
#[derive(Debug)]
enum DeleteRows {
    /// Position deletes: data file path → positions.
    Positions(HashMap<String, Vec<u64>>),
    /// Equality deletes on the id column.
    Ids(Arc<HashSet<VectorId>>),
}

impl DeleteRows {
    fn len(&self) -> usize {
        match self {
            DeleteRows::Positions(m) => m.values().map(Vec::len).sum(),
            DeleteRows::Ids(s) => s.len(),
        }
    }
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
    metadata: Mutex<HashMap<Path, Arc<TableMetadata>>>,
    /// Decoded manifest lists and manifests by location.
    manifest_lists: Mutex<HashMap<String, Arc<Vec<ManifestRef>>>>,
    manifests: Mutex<HashMap<String, Arc<Vec<DataFile>>>>,
    /// Decoded delete files by location.
    delete_files: Mutex<HashMap<String, Arc<DeleteRows>>>,
    /// Delete sets of the newest listings, applied when units are read.
    deletes: DeleteRegistry,
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
        // A catalog table's store is the one its current metadata file is
        // in: read the catalog once here to find it.
        let from_catalog = match &config.catalog {
            Some(c) => Some(sql_lookup_blocking(c, &catalog_table_name(c))?),
            None => None,
        };
        let loc = from_catalog
            .as_deref()
            .unwrap_or(&config.location)
            .trim_end_matches('/');
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
        let store = open_store(&table_url, &config.options, crate::io::LakeKind::Iceberg)?;
        let static_metadata = if is_file && config.catalog.is_none() {
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
            delete_files: Mutex::new(HashMap::new()),
            deletes: DeleteRegistry::default(),
        })
    }

    /// The config this source was opened with.
    pub fn config(&self) -> &IcebergSourceConfig {
        &self.config
    }

    fn table(&self) -> String {
        match &self.config.catalog {
            Some(c) => catalog_table_name(c),
            None => self.config.location.clone(),
        }
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
        if let Some(c) = &self.config.catalog {
            let (c, table) = (c.clone(), self.table());
            let loc = tokio::task::spawn_blocking(move || sql_lookup_blocking(&c, &table))
                .await
                .map_err(|e| LakeError::Invalid(format!("catalog lookup failed: {e}")))??;
            return self.resolve(&loc, "the SQL catalog");
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

    async fn load_metadata(&self, path: &Path) -> Result<Arc<TableMetadata>> {
        if let Some(m) = self.metadata.lock().get(path) {
            return Ok(m.clone());
        }
        let body = self.get(path).await.map_err(|e| match e {
            LakeError::Vanished { .. } if self.static_metadata.is_some() => {
                self.not_found(format!("metadata file {path} does not exist"))
            }
            e => e,
        })?;
        // Syntax first, so a truncated or foreign file says what it is;
        // then the crate's own reading of the spec (format versions 1-3).
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.meta_err(path.as_ref(), format!("not JSON: {e}")))?;
        if !json.is_object() || json.get("format-version").is_none() {
            return Err(self.meta_err(
                path.as_ref(),
                "not Iceberg table metadata (no format-version)",
            ));
        }
        let md: TableMetadata = serde_json::from_value(json).map_err(|e| {
            self.meta_err(
                path.as_ref(),
                format!("not valid Iceberg table metadata: {e}"),
            )
        })?;
        let md = Arc::new(md);
        self.metadata.lock().insert(path.clone(), md.clone());
        Ok(md)
    }

    /// The snapshot to serve (`None`: the table has no snapshot yet).
    fn snapshot<'a>(&self, file: &Path, md: &'a TableMetadata) -> Result<Option<&'a SnapshotRef>> {
        let wanted = match self.config.snapshot_id {
            Some(id) => id,
            None => match md.current_snapshot_id() {
                None => return Ok(None),
                Some(id) => id,
            },
        };
        match md.snapshot_by_id(wanted) {
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

    fn generation_of(snapshot: Option<&SnapshotRef>) -> Generation {
        match snapshot {
            Some(s) => Generation(format!("iceberg-{}", s.snapshot_id())),
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

    /// The bytes of a manifest list or manifest named by `context`.
    async fn metadata_file(&self, location: &str, context: &str) -> Result<bytes::Bytes> {
        let path = self.resolve(location, context)?;
        self.get(&path).await.map_err(|e| match e {
            LakeError::Vanished { path } => {
                self.meta_err(&path, format!("named by {context} but missing"))
            }
            e => e,
        })
    }

    async fn manifest_list(
        &self,
        location: &str,
        metadata: &str,
        version: FormatVersion,
    ) -> Result<Arc<Vec<ManifestRef>>> {
        if let Some(l) = self.manifest_lists.lock().get(location) {
            return Ok(l.clone());
        }
        let body = self.metadata_file(location, metadata).await?;
        let list = ManifestList::parse_with_version(&body, version)
            .map_err(|e| self.meta_err(location, format!("manifest list: {e}")))?;
        let out: Vec<ManifestRef> = list
            .entries()
            .iter()
            .map(|m| ManifestRef {
                path: m.manifest_path.clone(),
                content: match m.content {
                    ManifestContentType::Data => 0,
                    ManifestContentType::Deletes => 1,
                },
                sequence_number: m.sequence_number,
            })
            .collect();
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
        let body = self.metadata_file(&m.path, list).await?;
        let manifest = Manifest::parse_avro(&body)
            .map_err(|e| self.meta_err(&m.path, format!("manifest: {e}")))?;
        let mut out = Vec::new();
        for entry in manifest.entries() {
            // DELETED: the file left the table in this snapshot.
            if entry.status() == ManifestStatus::Deleted {
                continue;
            }
            let df = entry.data_file();
            let content = match df.content_type() {
                DataContentType::Data => 0,
                DataContentType::PositionDeletes => 1,
                DataContentType::EqualityDeletes => 2,
            };
            if m.content != 0 && content == 0 {
                return Err(self.meta_err(&m.path, "a data file in a delete manifest"));
            }
            let format = match df.file_format() {
                DataFileFormat::Parquet => "PARQUET",
                DataFileFormat::Puffin => "PUFFIN",
                DataFileFormat::Avro => "AVRO",
                DataFileFormat::Orc => "ORC",
            };
            out.push(DataFile {
                location: df.file_path().to_owned(),
                size: df.file_size_in_bytes(),
                content,
                // Null numbers inherit the manifest's (only added entries
                // may have them); v1 tables have none and read as 0.
                seq: entry.sequence_number().unwrap_or(m.sequence_number),
                format: format.to_owned(),
                equality_ids: df
                    .equality_ids()
                    .unwrap_or_default()
                    .into_iter()
                    .map(i64::from)
                    .collect(),
                partitioned: !df.partition().fields().is_empty(),
            });
        }
        let out = Arc::new(out);
        self.manifests.lock().insert(m.path.clone(), out.clone());
        Ok(out)
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
            Some(id) => format!("{}@{id}", self.table()),
            None => self.table(),
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
        let list_loc = snap.manifest_list().to_owned();
        let manifests = self
            .manifest_list(&list_loc, path.as_ref(), md.format_version())
            .await?
            .to_vec();
        let list_ref = list_loc.as_str();
        let per_manifest: Vec<Arc<Vec<DataFile>>> = futures::stream::iter(manifests.clone())
            .map(|m| async move { self.manifest(&m, list_ref).await })
            .buffered(MANIFEST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut data = Vec::new();
        let mut delete_files = Vec::new();
        let mut seen = HashSet::new();
        for files in &per_manifest {
            for f in files.iter() {
                match f.content {
                    0 => {
                        if f.format != "PARQUET" {
                            return Err(LakeError::Unsupported {
                                table: self.table(),
                                feature: format!("{} data files", f.format),
                                detail: format!(
                                    "{}: RuLake reads Parquet data files only",
                                    f.location
                                ),
                            });
                        }
                        if seen.insert(f.location.clone()) {
                            data.push(f);
                        }
                    }
                    1 | 2 => delete_files.push(f),
                    other => {
                        return Err(self.meta_err(
                            &list_loc,
                            format!("{}: unknown content type {other}", f.location),
                        ))
                    }
                }
            }
        }
        let id_field = id_field_id(&md, &self.config.id_column);
        for d in &delete_files {
            self.check_delete_file(d, id_field)?;
        }
        let live_data: Arc<HashSet<String>> =
            Arc::new(data.iter().map(|f| f.location.clone()).collect());
        let owned: Vec<DataFile> = delete_files.iter().map(|d| (*d).clone()).collect();
        let rows: Vec<Arc<DeleteRows>> = futures::stream::iter(owned)
            .map(|d| {
                let live = live_data.clone();
                async move { self.delete_rows(&d, &live).await }
            })
            .buffered(DELETE_FILE_CONCURRENCY)
            .try_collect()
            .await?;
        crate::deletes::check_total(&self.table(), rows.iter().map(|r| r.len()).sum())?;
        let mut objects = Vec::with_capacity(data.len());
        let mut by_object = HashMap::new();
        for f in &data {
            let location = self.resolve(&f.location, "a manifest")?;
            let deletes = deletes_of(f, &delete_files, &rows);
            // Data and delete files are immutable: the path names the
            // content, the delete files name the deletes.
            let e_tag = match &deletes {
                Some(d) => d.e_tag("iceberg"),
                None => "iceberg".to_owned(),
            };
            if let Some(d) = deletes {
                by_object.insert(location.to_string(), Arc::new(d));
            }
            objects.push(ObjectMeta {
                location,
                last_modified: chrono::DateTime::default(),
                size: f.size,
                e_tag: Some(e_tag),
                version: None,
            });
        }
        self.trim_caches(&[list_loc.as_str()], &manifests);
        let live_deletes: HashSet<&str> =
            delete_files.iter().map(|d| d.location.as_str()).collect();
        self.delete_files
            .lock()
            .retain(|k, _| live_deletes.contains(k.as_str()));
        let units = self.files.units_of_objects(objects).await?;
        self.deletes.publish(&units, &by_object);
        Ok(Listing { generation, units })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        let rows = self.files.read_object_unit(unit, dim);
        self.deletes
            .apply(unit, self.files.first_row_of(unit), dim, rows)
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

impl IcebergSource {
    /// Refuse the delete files RuLake does not apply.
    fn check_delete_file(&self, d: &DataFile, id_field: Option<i64>) -> Result<()> {
        let unsupported = |feature: &str, detail: String| LakeError::Unsupported {
            table: self.table(),
            feature: feature.to_owned(),
            detail,
        };
        if d.format == "PUFFIN" {
            return Err(unsupported(
                "deletion vectors (Iceberg format v3)",
                format!(
                    "{} is a Puffin deletion vector; RuLake applies v2 position and equality delete files",
                    d.location
                ),
            ));
        }
        if d.format != "PARQUET" {
            return Err(unsupported(
                &format!("{} delete files", d.format),
                format!("{}: RuLake reads Parquet delete files only", d.location),
            ));
        }
        if d.content == 2 {
            if id_field.is_none() || d.equality_ids != [id_field.unwrap_or_default()] {
                return Err(unsupported(
                    "equality deletes on a column other than the id column",
                    format!(
                        "{} deletes by field ids {:?}; RuLake applies equality deletes on the id column {:?} (field id {}) only",
                        d.location,
                        d.equality_ids,
                        self.config.id_column,
                        id_field.map_or("unknown".into(), |i| i.to_string())
                    ),
                ));
            }
            if d.partitioned {
                return Err(unsupported(
                    "equality deletes in a partitioned spec",
                    format!(
                        "{} applies to one partition only; RuLake applies unpartitioned equality deletes",
                        d.location
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Read a delete file (cached by location): the positions it deletes
    /// in the live data files, or the ids.
    async fn delete_rows(&self, d: &DataFile, live: &HashSet<String>) -> Result<Arc<DeleteRows>> {
        if let Some(r) = self.delete_files.lock().get(&d.location) {
            return Ok(r.clone());
        }
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
        use parquet::arrow::ProjectionMask;
        let path = self.resolve(&d.location, "a delete manifest")?;
        let file = d.location.clone();
        let corrupt = |e: parquet::errors::ParquetError| {
            let vanished = matches!(&e, parquet::errors::ParquetError::External(inner)
                if matches!(inner.downcast_ref::<object_store::Error>(), Some(object_store::Error::NotFound { .. })));
            if vanished {
                LakeError::Vanished { path: file.clone() }
            } else {
                self.meta_err(&file, format!("delete file: {e}"))
            }
        };
        let reader = crate::reader::ObjectReader {
            store: self.store.store.clone(),
            path,
            size: d.size,
            counters: Arc::default(),
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(corrupt)?;
        let schema = builder.schema().clone();
        let columns: Vec<&str> = if d.content == 1 {
            vec!["file_path", "pos"]
        } else {
            vec![self.config.id_column.as_str()]
        };
        let mut idx = Vec::new();
        for c in &columns {
            idx.push(
                schema.index_of(c).map_err(|_| {
                    self.meta_err(&file, format!("delete file has no column {c:?}"))
                })?,
            );
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
        let mut stream = builder
            .with_projection(mask)
            .with_batch_size(DELETE_BATCH_ROWS)
            .build()
            .map_err(corrupt)?;
        let mut positions: HashMap<String, Vec<u64>> = HashMap::new();
        let mut ids = HashSet::new();
        let mut count = 0usize;
        let at = Location {
            object: d.location.clone(),
            row_group: None,
        };
        while let Some(batch) = stream.try_next().await.map_err(corrupt)? {
            count += batch.num_rows();
            crate::deletes::check_total(&self.table(), count)?;
            if d.content == 2 {
                let col = batch
                    .column_by_name(&self.config.id_column)
                    .ok_or_else(|| self.meta_err(&file, "id column missing from a batch"))?;
                ids.extend(crate::arrow_conv::ids_from_array(
                    col,
                    &at,
                    &self.config.id_column,
                    count - batch.num_rows(),
                )?);
                continue;
            }
            let (Some(paths), Some(pos)) = (
                batch.column_by_name("file_path"),
                batch.column_by_name("pos"),
            ) else {
                return Err(self.meta_err(&file, "position delete batch without file_path/pos"));
            };
            let pos = pos
                .as_primitive_opt::<arrow_array::types::Int64Type>()
                .ok_or_else(|| self.meta_err(&file, "pos is not a long column"))?;
            let path_at = |i: usize| -> Option<&str> {
                if paths.is_null(i) {
                    return None;
                }
                if let Some(a) = paths.as_string_opt::<i32>() {
                    return Some(a.value(i));
                }
                if let Some(a) = paths.as_string_opt::<i64>() {
                    return Some(a.value(i));
                }
                paths.as_string_view_opt().map(|a| a.value(i))
            };
            for i in 0..batch.num_rows() {
                let p = path_at(i).ok_or_else(|| {
                    self.meta_err(&file, format!("row {i}: file_path null or not a string"))
                })?;
                if pos.is_null(i) || pos.value(i) < 0 {
                    return Err(self.meta_err(&file, format!("row {i}: pos null or negative")));
                }
                if live.contains(p) {
                    positions
                        .entry(p.to_owned())
                        .or_default()
                        .push(pos.value(i) as u64);
                }
            }
        }
        let rows = Arc::new(if d.content == 1 {
            DeleteRows::Positions(positions)
        } else {
            DeleteRows::Ids(Arc::new(ids))
        });
        self.delete_files
            .lock()
            .insert(d.location.clone(), rows.clone());
        Ok(rows)
    }
}

/// The deletes that apply to data file `f` (the spec's sequence-number
/// rules), or `None`.
fn deletes_of(
    f: &DataFile,
    delete_files: &[&DataFile],
    rows: &[Arc<DeleteRows>],
) -> Option<FileDeletes> {
    let mut positions = Vec::new();
    let mut ids = Vec::new();
    let mut what = Vec::new();
    for (d, r) in delete_files.iter().zip(rows) {
        match r.as_ref() {
            // Position deletes: data sequence number <= the delete's.
            DeleteRows::Positions(m) if f.seq <= d.seq => {
                if let Some(p) = m.get(&f.location) {
                    positions.extend_from_slice(p);
                    what.push(d.location.clone());
                }
            }
            // Equality deletes: strictly older data only.
            DeleteRows::Ids(s) if f.seq < d.seq && !s.is_empty() => {
                ids.push(s.clone());
                what.push(d.location.clone());
            }
            _ => {}
        }
    }
    let d = FileDeletes::new(positions, ids, &what);
    (!d.is_empty()).then_some(d)
}

/// The field id of column `name` in the table's current schema.
fn id_field_id(md: &TableMetadata, name: &str) -> Option<i64> {
    md.current_schema()
        .field_by_name(name)
        .map(|f| i64::from(f.id))
}

fn catalog_table_name(c: &SqlCatalogTable) -> String {
    format!(
        "{}.{} (SQL catalog {:?} at {})",
        c.namespace, c.table, c.catalog, c.uri
    )
}

/// The current `metadata_location` of a SQL catalog table.
#[cfg(feature = "iceberg-sql")]
fn sql_lookup_blocking(c: &SqlCatalogTable, table: &str) -> Result<String> {
    use rusqlite::{Connection, OpenFlags, OptionalExtension};
    let file = sqlite_path(&c.uri).ok_or_else(|| LakeError::InvalidUrl {
        url: c.uri.clone(),
        reason: "not a SQLite catalog URI (sqlite:///path or a file path)".into(),
    })?;
    if !std::path::Path::new(&file).is_file() {
        return Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: format!("the SQL catalog database {file} does not exist"),
        });
    }
    let bad = |e: rusqlite::Error| LakeError::TableMetadata {
        table: table.to_owned(),
        file: file.clone(),
        reason: format!("SQL catalog: {e}"),
    };
    let conn = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(bad)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(bad)?;
    let row: Option<Option<String>> = conn
        .query_row(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
            [&c.catalog, &c.namespace, &c.table],
            |r| r.get(0),
        )
        .optional()
        .map_err(bad)?;
    match row {
        Some(Some(loc)) => Ok(loc),
        Some(None) => Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: "the catalog row has no metadata_location (a view or an unfinished create)"
                .into(),
        }),
        None => Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: format!(
                "no table {}.{} in catalog {:?} of {file}",
                c.namespace, c.table, c.catalog
            ),
        }),
    }
}

#[cfg(not(feature = "iceberg-sql"))]
fn sql_lookup_blocking(_c: &SqlCatalogTable, table: &str) -> Result<String> {
    Err(LakeError::Unsupported {
        table: table.to_owned(),
        feature: "Iceberg SQL catalogs".into(),
        detail: "this build has no `iceberg-sql` feature; address the table by its location or metadata file".into(),
    })
}

/// The file of a SQLAlchemy SQLite URI (`sqlite:///rel.db`,
/// `sqlite:////abs.db`) or a plain path.
#[cfg_attr(not(feature = "iceberg-sql"), allow(dead_code))]
fn sqlite_path(uri: &str) -> Option<String> {
    let rest = match uri.strip_prefix("sqlite:") {
        Some(r) => r.strip_prefix("///")?,
        None if !uri.contains("://") => uri,
        None => return None,
    };
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() || rest == ":memory:" {
        return None;
    }
    Some(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{metadata_seq, sqlite_path};

    #[test]
    fn sqlite_uris() {
        assert_eq!(
            sqlite_path("sqlite:////tmp/c.db").as_deref(),
            Some("/tmp/c.db")
        );
        assert_eq!(sqlite_path("sqlite:///c.db").as_deref(), Some("c.db"));
        assert_eq!(sqlite_path("/tmp/c.db").as_deref(), Some("/tmp/c.db"));
        assert_eq!(sqlite_path("sqlite://"), None);
        assert_eq!(sqlite_path("sqlite:///:memory:"), None);
        assert_eq!(sqlite_path("postgresql://x/y"), None);
    }

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
