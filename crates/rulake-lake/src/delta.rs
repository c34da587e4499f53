//! Delta Lake tables: `deltalake-core` (delta-rs) decides which Parquet
//! files hold the table at a version, RuLake's own Parquet reader reads
//! them.
//!
//! The split is the version-skew decision in `docs/lake-formats.md`: the
//! library pins arrow/parquet 59 and `object_store` 0.13, the workspace is
//! one release ahead, so the library is used for table metadata only (log
//! replay, checkpoints, protocol, the live file list and each file's
//! deletion vector descriptor) and no Arrow value crosses from its stack
//! into RuLake's. It reads the log through `ReadOnlyStore`, an adapter
//! over the same store RuLake reads the data with, so credentials, retries
//! and the lake I/O metrics are one path. The loaded table is kept between
//! refreshes, so a refresh replays only the commits that are new.
//!
//! Deletion vectors are applied: a file's vector is read (inline, by UUID
//! under the table, or by absolute path), decoded into row positions and
//! dropped while the file's units are read (see `deletes.rs`). A new vector
//! changes the units of that file only, so only their partitions rebuild.
//!
//! Partition columns are not stored in a Delta table's data files: a
//! payload column that is one takes the file's partition value from its
//! `add` action, for every row of the file. With a filter
//! ([`Source::list_units_pruned`]) a file whose partition values or `add`
//! statistics show that none of its rows match is left out of the listing
//! before its footer or deletion vector is read (`stats`), and then its
//! row groups by their footer statistics.
//!
//! Correctness comes before coverage: anything that would change which rows
//! a file contributes and that RuLake does not apply (column mapping, a
//! vector on a table whose protocol does not allow one) is an error naming
//! the table and the feature, never rows served silently wrong. Reader
//! features the library itself does not support are refused by it when
//! the table loads.

use crate::deletes::{DeleteRegistry, FileDeletes};
use crate::delta_store::{path13, LogFileTooLarge, ReadOnlyStore};
use crate::dv::{self, DvDescriptor};
use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, Pruned, RowStream, Source, Unit};
use crate::store::{open_store, to_url, StoreUrl};
use async_trait::async_trait;
use deltalake_core::kernel::{DataType, LogicalFileView, PrimitiveType, StorageType};
use deltalake_core::logstore::object_store::prefix::PrefixStore;
use deltalake_core::logstore::{default_logstore, StorageConfig};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use rulake_types::{ColumnType, Generation, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use crate::delta_store::MAX_LOG_FILE_BYTES;

/// Deletion vectors fetched concurrently while listing.
const DV_CONCURRENCY: usize = 8;

/// How to find and read a Delta table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaSourceConfig {
    /// Table root URL (`file://`, `s3://`, `gs://`, `az://`, or a local path).
    pub url: String,
    /// Id column: integer or string.
    pub id_column: String,
    /// Vector column: `array<float>`/`array<double>` (Arrow list).
    pub vector_column: String,
    /// Serve this table version forever (time travel) instead of the latest.
    pub version: Option<u64>,
    /// Store options overriding the environment (`aws_endpoint`, ...).
    pub options: Vec<(String, String)>,
}

impl DeltaSourceConfig {
    /// Follow the latest version of the table at `url`.
    pub fn new(url: impl Into<String>, id_column: &str, vector_column: &str) -> Self {
        DeltaSourceConfig {
            url: url.into(),
            id_column: id_column.to_owned(),
            vector_column: vector_column.to_owned(),
            version: None,
            options: Vec::new(),
        }
    }

    /// Pin the source to one table version.
    pub fn at_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Add a store option (overrides the environment).
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One live data file of the table, as the library's snapshot lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LiveFile {
    size: u64,
    modification_time: i64,
    deletion_vector: Option<DvDescriptor>,
    /// Partition column → value as the log writes it (`None`: null).
    partition_values: HashMap<String, Option<String>>,
    /// The `add` action's `stats` JSON, if written.
    stats: Option<String>,
}

/// The partition columns of the loaded version and each data file's
/// values of them, typed: what a payload column that is a partition
/// column reads.
#[derive(Debug, Default)]
struct Partitions {
    /// Partition column → its payload type (`None`: a type RuLake does
    /// not keep).
    columns: HashMap<String, Option<ColumnType>>,
    /// Object path → partition column → value (`None`: unreadable).
    values: HashMap<String, Arc<HashMap<String, Option<Value>>>>,
}

/// A Delta table source.
#[derive(Debug)]
pub struct DeltaSource {
    config: DeltaSourceConfig,
    store: StoreUrl,
    files: ParquetSource,
    /// The table as last loaded (kept so a refresh replays only new
    /// commits); replaced only once a newer load succeeded.
    table: tokio::sync::Mutex<DeltaTable>,
    /// Decoded deletion vectors by unique id (immutable once written).
    vectors: parking_lot::Mutex<HashMap<String, Arc<FileDeletes>>>,
    /// Delete sets of the newest listings, applied when units are read.
    deletes: DeleteRegistry,
    /// The log file the store last refused for its size, if any.
    log_refused: Arc<parking_lot::Mutex<Option<LogFileTooLarge>>>,
    /// Partition values of the newest listing's files.
    partitions: parking_lot::Mutex<Partitions>,
}

impl DeltaSource {
    /// Open a table (no I/O yet besides building the store client).
    pub fn open(config: DeltaSourceConfig) -> Result<Self> {
        let url = to_url(config.url.trim_end_matches('/'))?;
        let store = open_store(&url, &config.options, crate::io::LakeKind::Delta)?;
        let files =
            ParquetSource::for_table(store.clone(), &config.id_column, &config.vector_column);
        let read_only = ReadOnlyStore::new(store.store.clone());
        let log_refused = read_only.refused();
        let root: Arc<dyn deltalake_core::ObjectStore> = Arc::new(read_only);
        let prefixed: Arc<dyn deltalake_core::ObjectStore> =
            Arc::new(PrefixStore::new(root.clone(), path13(&store.path)));
        let log_store = default_logstore(prefixed, root, &url, &StorageConfig::default());
        Ok(DeltaSource {
            config,
            store,
            files,
            table: tokio::sync::Mutex::new(DeltaTable::new(log_store)),
            vectors: parking_lot::Mutex::new(HashMap::new()),
            deletes: DeleteRegistry::default(),
            log_refused,
            partitions: parking_lot::Mutex::new(Partitions::default()),
        })
    }

    /// The config this source was opened with.
    pub fn config(&self) -> &DeltaSourceConfig {
        &self.config
    }

    fn table_name(&self) -> String {
        self.config.url.clone()
    }

    fn log_dir(&self) -> Path {
        self.store.path.clone().join("_delta_log")
    }

    fn meta_err(&self, file: &str, reason: impl Into<String>) -> LakeError {
        LakeError::TableMetadata {
            table: self.table_name(),
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, feature: &str, detail: impl Into<String>) -> LakeError {
        LakeError::Unsupported {
            table: self.table_name(),
            feature: feature.to_owned(),
            detail: detail.into(),
        }
    }

    /// Versions present in `_delta_log/` as a commit or a complete-looking
    /// checkpoint. Used only to say what an error from the library means:
    /// a missing table, a version that does not exist, or a broken log.
    async fn log_versions(&self) -> Result<Vec<u64>> {
        let dir = self.log_dir();
        let objects: Vec<ObjectMeta> = match self.store.store.list(Some(&dir)).try_collect().await {
            Ok(o) => o,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(LakeError::store(dir.to_string(), e)),
        };
        let mut versions: Vec<u64> = objects
            .iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let (num, rest) = name.split_once('.')?;
                let is_log = rest == "json" || rest.starts_with("checkpoint");
                (num.len() == 20 && is_log).then(|| num.parse().ok())?
            })
            .collect();
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// Whether the log holds a version after `known`, asked with a HEAD
    /// of the next commit file and a GET of `_last_checkpoint`, side by
    /// side, instead of a listing: commits are written once each, in
    /// order, so a table that moved on has commit `known + 1`, unless a
    /// log cleanup removed it, which it only does behind a newer
    /// checkpoint. On an object store both are the cheap kind of request;
    /// a listing is billed and timed like ten of them. `None` when the
    /// table is still at `known`; otherwise the version to look for the
    /// newest commit from (`known`, or the newer checkpoint when the
    /// commits after `known` are gone).
    async fn moved_past(&self, known: u64) -> Result<Option<u64>> {
        let dir = self.log_dir();
        let next = dir
            .clone()
            .join(format!("{:020}.json", known.saturating_add(1)));
        let pointer = dir.join("_last_checkpoint");
        let store = &self.store.store;
        let (head, last) = futures::join!(store.head(&next), async {
            match store.get(&pointer).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match head {
            Ok(_) => return Ok(Some(known)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(LakeError::store(next.to_string(), e)),
        }
        let Some(body) = last.map_err(|e| LakeError::read(pointer.to_string(), e))? else {
            return Ok(None);
        };
        let checkpoint = checkpoint_version(&body)
            .ok_or_else(|| self.meta_err(pointer.as_ref(), "no version number"))?;
        Ok((checkpoint > known).then_some(checkpoint))
    }

    /// Turn an error from the library into RuLake's terms. `known` is the
    /// version loaded before (the commits after it are the suspects).
    async fn classify(&self, e: DeltaTableError, known: Option<u64>) -> LakeError {
        // The library keeps only the text of a store error, so the store
        // tells what it refused.
        if let Some(t) = self.log_refused.lock().take() {
            return LakeError::TooLarge {
                path: t.path,
                what: "Delta log file",
                size: t.size,
                limit: MAX_LOG_FILE_BYTES,
            };
        }
        let versions = match self.log_versions().await {
            Ok(v) => v,
            Err(list_err) => return list_err,
        };
        if versions.is_empty() {
            return LakeError::TableNotFound {
                table: self.table_name(),
                reason: format!("no transaction log at {}: {e}", self.log_dir()),
            };
        }
        if let Some(v) = self.config.version {
            if versions.binary_search(&v).is_err() {
                return LakeError::VersionNotFound {
                    table: self.table_name(),
                    what: format!("version {v}"),
                };
            }
        }
        if let DeltaTableError::ObjectStore {
            source: deltalake_core::ObjectStoreError::NotFound { path, .. },
        } = &e
        {
            return LakeError::Vanished { path: path.clone() };
        }
        let file = match known {
            // The first commit the refresh had to read; the library stops
            // at the first one it cannot replay.
            Some(k) => format!("{}/{:020}.json", self.log_dir(), k + 1),
            None => self.log_dir().to_string(),
        };
        let reason = match known {
            Some(k) => format!("replaying the commits after version {k}: {e}"),
            None => format!("loading the table: {e}"),
        };
        self.meta_err(&file, reason)
    }

    /// Load (or refresh) the table to the version to serve. The kept table
    /// is only replaced when the load succeeded, so a broken commit leaves
    /// the previous version in place.
    async fn load(&self, table: &mut DeltaTable) -> Result<()> {
        let known = table.version();
        let mut next = table.clone();
        let r = match (self.config.version, known) {
            (Some(v), Some(k)) if v == k => return Ok(()),
            (Some(v), _) => next.load_version(v).await,
            (None, None) => next.load().await,
            (None, Some(_)) => next.update_incremental(None).await,
        };
        match r {
            Ok(()) => {
                *table = next;
                self.log_refused.lock().take();
                Ok(())
            }
            Err(e) => Err(self.classify(e, known).await),
        }
    }

    /// The live files of the loaded version, checked for what RuLake
    /// cannot read correctly.
    fn live_files(&self, table: &DeltaTable) -> Result<(u64, BTreeMap<String, LiveFile>, Schema)> {
        let state = table
            .snapshot()
            .map_err(|e| self.meta_err(self.log_dir().as_ref(), e.to_string()))?;
        let version = state.version();
        let dv_allowed = self.check_table(state)?;
        let schema = Schema {
            types: state
                .schema()
                .fields()
                .map(|f| (f.name().clone(), payload_type(f.data_type())))
                .collect(),
            partition_columns: state.metadata().partition_columns().to_vec(),
        };
        let mut files = BTreeMap::new();
        for f in state.log_data().iter() {
            let path = f.path().into_owned();
            let deletion_vector = self.dv_descriptor(&f, &path, version)?;
            if deletion_vector.is_some() && !dv_allowed {
                return Err(self.meta_err(
                    self.log_dir().as_ref(),
                    format!(
                        "data file {path} has a deletion vector at version {version} but the protocol does not list the deletionVectors reader feature"
                    ),
                ));
            }
            let size = u64::try_from(f.size()).map_err(|_| {
                self.meta_err(
                    self.log_dir().as_ref(),
                    format!("data file {path} has a negative size"),
                )
            })?;
            files.insert(
                path,
                LiveFile {
                    size,
                    modification_time: f.modification_time(),
                    deletion_vector,
                    partition_values: f.partition_values_map(),
                    stats: f.stats(),
                },
            );
        }
        Ok((version, files, schema))
    }

    /// Refuse table features that change which rows or columns a file
    /// holds and that RuLake does not apply; `Ok(true)` when the protocol
    /// allows deletion vectors.
    fn check_table(&self, state: &DeltaTableState) -> Result<bool> {
        let version = state.version();
        let mode = state
            .metadata()
            .configuration()
            .get("delta.columnMapping.mode")
            .filter(|m| m.as_str() != "none");
        if let Some(mode) = mode {
            return Err(self.unsupported(
                "column mapping",
                format!(
                    "delta.columnMapping.mode = {mode:?} at version {version}: physical column names differ from the logical ones"
                ),
            ));
        }
        let partition_columns = state.metadata().partition_columns();
        for col in [&self.config.id_column, &self.config.vector_column] {
            if partition_columns.contains(col) {
                return Err(self.unsupported(
                    "partition column as id or vector",
                    format!("column {col:?} is a partition column, not stored in the data files"),
                ));
            }
        }
        Ok(state
            .protocol()
            .reader_features()
            .is_some_and(|fs| fs.iter().any(|f| f.to_string() == "deletionVectors")))
    }

    /// The deletion vector descriptor of live file `f` (at `path`), in
    /// RuLake's terms.
    fn dv_descriptor(
        &self,
        f: &LogicalFileView,
        path: &str,
        version: u64,
    ) -> Result<Option<DvDescriptor>> {
        // The library unwraps the descriptor's storage type; a commit
        // naming an unknown one would panic this task, so it is caught
        // here and becomes an error about this file.
        let descriptor = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f.deletion_vector_descriptor()
        }))
        .map_err(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            self.meta_err(
                self.log_dir().as_ref(),
                format!(
                    "data file {path} has a deletion vector the Delta library cannot decode at version {version}: {why}"
                ),
            )
        })?;
        Ok(descriptor.map(|d| DvDescriptor {
            storage_type: match d.storage_type {
                StorageType::UuidRelativePath => "u",
                StorageType::Inline => "i",
                StorageType::AbsolutePath => "p",
            }
            .to_owned(),
            path_or_inline_dv: d.path_or_inline_dv,
            offset: d.offset.map(i64::from),
            size_in_bytes: i64::from(d.size_in_bytes),
            cardinality: d.cardinality,
        }))
    }

    fn object_meta(
        &self,
        rel: &str,
        f: &LiveFile,
        deletes: Option<&FileDeletes>,
    ) -> Result<ObjectMeta> {
        let location = if rel.contains("://") {
            crate::store::path_in_store(&self.store, rel).ok_or_else(|| {
                self.unsupported(
                    "data files in another store",
                    format!("{rel} is not inside {}", self.store.url),
                )
            })?
        } else {
            crate::store::path_under(&self.store.path, rel)
        };
        Ok(ObjectMeta {
            location,
            last_modified: chrono::DateTime::from_timestamp_millis(f.modification_time)
                .unwrap_or_default(),
            size: f.size,
            e_tag: deletes.map(|d| d.e_tag(&format!("{}", f.modification_time))),
            version: None,
        })
    }

    /// Read and decode one deletion vector (cached by its unique id).
    async fn load_vector(&self, data_file: &str, d: &DvDescriptor) -> Result<Arc<FileDeletes>> {
        let id = d.unique_id();
        if let Some(v) = self.vectors.lock().get(&id) {
            return Ok(v.clone());
        }
        let bad =
            |reason: String| self.meta_err(data_file, format!("deletion vector {id}: {reason}"));
        if d.size_in_bytes < 4 || d.size_in_bytes > dv::MAX_DV_BYTES || d.cardinality < 0 {
            return Err(bad(format!(
                "sizeInBytes {} / cardinality {} out of range",
                d.size_in_bytes, d.cardinality
            )));
        }
        let size = d.size_in_bytes as usize;
        let limit = (d.cardinality as usize).min(crate::deletes::MAX_DELETED_ROWS);
        let positions = match d.storage_type.as_str() {
            "i" => {
                let mut bytes = dv::z85_decode(&d.path_or_inline_dv).map_err(bad)?;
                if bytes.len() < size {
                    return Err(bad("inline vector shorter than sizeInBytes".into()));
                }
                bytes.truncate(size);
                dv::decode(&bytes, limit).map_err(bad)?
            }
            "u" | "p" => {
                let (path, bytes) = self.stored_vector(data_file, d, size).await?;
                let data =
                    dv::from_file_range(&bytes, size).map_err(|e| bad(format!("{path}: {e}")))?;
                dv::decode(data, limit).map_err(|e| bad(format!("{path}: {e}")))?
            }
            other => {
                return Err(self.unsupported(
                    "deletion vector storage",
                    format!("storageType {other:?} on {data_file} (known: u, i, p)"),
                ))
            }
        };
        if positions.len() as i64 != d.cardinality {
            return Err(bad(format!(
                "holds {} rows, the log says cardinality {}",
                positions.len(),
                d.cardinality
            )));
        }
        let v = Arc::new(FileDeletes::new(
            positions,
            Vec::new(),
            std::slice::from_ref(&id),
        ));
        self.vectors.lock().insert(id, v.clone());
        Ok(v)
    }

    /// The bytes of a vector of `data_file` stored in a file (`u`: by UUID
    /// under the table, `p`: by absolute path): its `size` bytes framed by
    /// the size and checksum words, and the path they were read from.
    async fn stored_vector(
        &self,
        data_file: &str,
        d: &DvDescriptor,
        size: usize,
    ) -> Result<(Path, bytes::Bytes)> {
        let path = if d.storage_type == "u" {
            let rel = dv::relative_path(&d.path_or_inline_dv).map_err(|reason| {
                self.meta_err(
                    data_file,
                    format!("deletion vector {}: {reason}", d.unique_id()),
                )
            })?;
            crate::store::path_under(&self.store.path, &rel)
        } else {
            let abs = decode_path(&d.path_or_inline_dv);
            crate::store::path_in_store(&self.store, &abs).ok_or_else(|| {
                self.unsupported(
                    "deletion vectors in another store",
                    format!("{abs} is not inside {}", self.store.url),
                )
            })?
        };
        let offset = d.offset.unwrap_or(1).max(0) as u64;
        let range = offset..offset + size as u64 + 8;
        let bytes = self
            .store
            .store
            .get_range(&path, range)
            .await
            .map_err(|e| LakeError::read(path.to_string(), e))?;
        Ok((path, bytes))
    }

    /// The version currently served (after the last listing).
    pub async fn version(&self) -> Option<u64> {
        self.table.lock().await.version()
    }
}

fn generation_of(version: u64) -> Generation {
    Generation(format!("delta-v{version}"))
}

/// The `"version"` of a `_last_checkpoint` file (a one-line JSON object).
fn checkpoint_version(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let after = &text[text.find("\"version\"")? + "\"version\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    value[..digits].parse().ok()
}

/// Absolute deletion-vector paths are URL-encoded like data file paths.
fn decode_path(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}

#[async_trait]
impl Source for DeltaSource {
    fn kind(&self) -> &'static str {
        "delta"
    }

    fn describe(&self) -> String {
        match self.config.version {
            Some(v) => format!("{}@v{v}", self.config.url),
            None => self.config.url.clone(),
        }
    }

    /// The pinned version, or the loaded one while the log holds nothing
    /// newer ([`Self::moved_past`]: two small requests, no listing), or
    /// else the newest commit after it (one listing of `_delta_log/` from
    /// there). Before the first load the table is loaded, which a listing
    /// follows anyway.
    async fn generation(&self) -> Result<Generation> {
        if let Some(v) = self.config.version {
            return Ok(generation_of(v));
        }
        let (known, log_store) = {
            let mut table = self.table.lock().await;
            let Some(known) = table.version() else {
                self.load(&mut table).await?;
                let v = table.version().unwrap_or_default();
                return Ok(generation_of(v));
            };
            (known, table.log_store())
        };
        let Some(from) = self.moved_past(known).await? else {
            return Ok(generation_of(known));
        };
        match log_store.get_latest_version(from).await {
            Ok(v) => Ok(generation_of(v)),
            Err(e) => Err(self.classify(e, Some(known)).await),
        }
    }

    async fn list_units(&self) -> Result<Listing> {
        self.list(None).await
    }

    async fn list_units_pruned(&self, filter: &rulake_types::Filter) -> Result<Listing> {
        self.list(Some(filter)).await
    }

    /// By the table's schema (partition columns included): no data file
    /// is read.
    async fn check_columns(&self, columns: &[String]) -> Result<()> {
        let mut table = self.table.lock().await;
        self.load(&mut table).await?;
        let state = table
            .snapshot()
            .map_err(|e| self.meta_err(self.log_dir().as_ref(), e.to_string()))?;
        let schema = state.schema();
        let at = crate::error::Location {
            object: self.table_name(),
            row_group: None,
        };
        for c in columns {
            let field = schema.fields().find(|f| f.name() == c).ok_or_else(|| {
                LakeError::MissingColumn {
                    at: at.clone(),
                    column: c.clone(),
                    available: schema
                        .fields()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            if payload_type(field.data_type()).is_none() {
                return Err(LakeError::ColumnType {
                    at: at.clone(),
                    column: c.clone(),
                    found: format!("{:?}", field.data_type()),
                    expected: crate::payload_conv::PAYLOAD_TYPES,
                });
            }
        }
        Ok(())
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.read_unit_columns(unit, dim, &[])
    }

    fn read_unit_columns(&self, unit: &Unit, dim: usize, payload: &[String]) -> RowStream {
        let (columns, values) = {
            let p = self.partitions.lock();
            let columns: HashMap<String, Option<ColumnType>> = payload
                .iter()
                .filter_map(|c| p.columns.get(c).map(|t| (c.clone(), *t)))
                .collect();
            (columns, p.values.get(&unit.object).cloned())
        };
        let in_file: Vec<String> = payload
            .iter()
            .filter(|c| !columns.contains_key(*c))
            .cloned()
            .collect();
        let rows = self.files.read_object_unit(unit, dim, &in_file);
        let rows = self
            .deletes
            .apply(unit, self.files.first_row_of(unit), dim, rows);
        if columns.is_empty() {
            return rows;
        }
        let payload = payload.to_vec();
        let (table, object) = (self.table_name(), unit.object.clone());
        rows.map(move |batch| {
            let mut batch = batch?;
            let n = batch.len();
            let mut read = std::mem::take(&mut batch.payload).into_iter();
            for name in &payload {
                let Some(ty) = columns.get(name) else {
                    batch.payload.extend(read.next());
                    continue;
                };
                let value = values.as_ref().and_then(|v| v.get(name).cloned().flatten());
                let (Some(ty), Some(value)) = (ty, value) else {
                    return Err(LakeError::Invalid(format!(
                        "{table}: partition column {name:?} of {object} is not an integer, float, string, boolean, date or timestamp value RuLake can keep"
                    )));
                };
                batch.payload.push(rulake_types::Column {
                    name: name.clone(),
                    ty: Some(*ty),
                    values: vec![value; n],
                });
            }
            Ok(batch)
        })
        .boxed()
    }

    /// `12`, `v12` or the generation string `delta-v12`.
    fn pinned(&self, version: &str) -> Result<Arc<dyn Source>> {
        let digits = version.trim_start_matches("delta-").trim_start_matches('v');
        let v = digits.parse().map_err(|_| {
            LakeError::Invalid(format!(
                "{}: {version:?} is not a Delta table version (a number, v12 or delta-v12)",
                self.table_name()
            ))
        })?;
        Ok(Arc::new(DeltaSource::open(
            self.config.clone().at_version(v),
        )?))
    }
}

impl DeltaSource {
    /// The units of the current version, left out what `filter`'s pruning
    /// shows no row of matches: whole files by their `add` action (before
    /// their footer or deletion vector is read), then row groups.
    async fn list(&self, filter: Option<&rulake_types::Filter>) -> Result<Listing> {
        let mut table = self.table.lock().await;
        self.load(&mut table).await?;
        let (target, mut files, schema) = self.live_files(&table)?;
        let types: HashMap<String, ColumnType> = schema
            .types
            .iter()
            .filter_map(|(n, t)| t.map(|t| (n.clone(), t)))
            .collect();
        // Every live file's partition values, pruned or not: another
        // collection reading this table may read what this one pruned.
        let mut partitions = Partitions {
            columns: schema
                .partition_columns
                .iter()
                .map(|c| (c.clone(), schema.types.get(c).copied().flatten()))
                .collect(),
            values: HashMap::new(),
        };
        for (p, f) in &files {
            let values = f
                .partition_values
                .iter()
                .map(|(c, text)| {
                    let v = types
                        .get(c)
                        .and_then(|&t| crate::stats::delta_partition_value(t, text.as_deref()));
                    (c.clone(), v)
                })
                .collect();
            partitions.values.insert(
                self.object_meta(p, f, None)?.location.to_string(),
                Arc::new(values),
            );
        }
        let mut pruned = Vec::new();
        if let Some(filter) = filter {
            let mut kept = BTreeMap::new();
            for (p, f) in files {
                let zone =
                    crate::stats::delta_file_zone(&types, &f.partition_values, f.stats.as_deref());
                if filter.prune(&zone) == rulake_types::Verdict::None {
                    pruned.push(Pruned {
                        key: self.object_meta(&p, &f, None)?.location.to_string(),
                        bytes: f.size,
                        file: true,
                    });
                } else {
                    kept.insert(p, f);
                }
            }
            files = kept;
        }
        let with_dv: Vec<(String, DvDescriptor)> = files
            .iter()
            .filter_map(|(p, f)| f.deletion_vector.clone().map(|d| (p.clone(), d)))
            .collect();
        let loaded: Vec<(String, Arc<FileDeletes>)> = futures::stream::iter(with_dv)
            .map(|(p, d)| async move {
                let v = self.load_vector(&p, &d).await?;
                Ok::<_, LakeError>((p, v))
            })
            .buffered(DV_CONCURRENCY)
            .try_collect()
            .await?;
        crate::deletes::check_total(
            &self.table_name(),
            loaded.iter().map(|(_, d)| d.positions.len()).sum(),
        )?;
        let by_rel: HashMap<String, Arc<FileDeletes>> = loaded.into_iter().collect();
        let mut by_object = HashMap::new();
        let mut objects = Vec::with_capacity(files.len());
        for (p, f) in &files {
            let d = by_rel.get(p).filter(|d| !d.is_empty());
            let meta = self.object_meta(p, f, d.map(|d| d.as_ref()))?;
            if let Some(d) = d {
                by_object.insert(meta.location.to_string(), d.clone());
            }
            objects.push(meta);
        }
        let live_ids: HashSet<String> = files
            .values()
            .filter_map(|f| f.deletion_vector.as_ref().map(DvDescriptor::unique_id))
            .collect();
        self.vectors.lock().retain(|k, _| live_ids.contains(k));
        let (units, row_groups) = self
            .files
            .units_of_objects_pruned(objects, filter, &pruned)
            .await?;
        pruned.extend(row_groups);
        self.deletes.publish(&units, &by_object);
        *self.partitions.lock() = partitions;
        Ok(Listing {
            generation: generation_of(target),
            units,
            pruned,
        })
    }
}

/// What the listing needs of the table schema.
struct Schema {
    /// Top-level column → its payload type (`None`: not one RuLake keeps).
    types: HashMap<String, Option<ColumnType>>,
    /// The partition columns, in the table's order.
    partition_columns: Vec<String>,
}

/// The payload type of a Delta column type.
fn payload_type(t: &DataType) -> Option<ColumnType> {
    Some(match t {
        DataType::Primitive(p) => match p {
            PrimitiveType::String => ColumnType::String,
            PrimitiveType::Long
            | PrimitiveType::Integer
            | PrimitiveType::Short
            | PrimitiveType::Byte => ColumnType::Int,
            PrimitiveType::Float | PrimitiveType::Double => ColumnType::Float,
            PrimitiveType::Boolean => ColumnType::Bool,
            PrimitiveType::Date => ColumnType::Date,
            PrimitiveType::Timestamp | PrimitiveType::TimestampNtz => ColumnType::Timestamp,
            _ => return None,
        },
        DataType::Array(a)
            if matches!(a.element_type(), DataType::Primitive(PrimitiveType::String)) =>
        {
            ColumnType::StringList
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_pointer_names_its_version() {
        let v = |s: &str| checkpoint_version(s.as_bytes());
        assert_eq!(v(r#"{"version":10,"size":13}"#), Some(10));
        assert_eq!(v(r#"{"size":13, "version" : 7 }"#), Some(7));
        assert_eq!(v(r#"{"size":13}"#), None);
        assert_eq!(v(r#"{"version":"x"}"#), None);
    }

    #[test]
    fn paths_are_decoded() {
        assert_eq!(decode_path("p%3D1/a%20b.parquet"), "p=1/a b.parquet");
    }
}
