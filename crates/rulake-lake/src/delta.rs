//! Delta Lake tables: the transaction log decides which Parquet files hold
//! the table, RuLake's own Parquet reader reads them.
//!
//! Why not `deltalake` (delta-rs): it pins its own arrow, parquet and
//! `object_store` releases, one behind the workspace's, so using it would
//! build a second Arrow stack and force conversions at a crate-version
//! boundary; RuLake needs only the log's file list (see
//! `docs/lake-formats.md`). The log is replayed here from the newest
//! classic checkpoint at or below the wanted version plus the JSON commits
//! after it, and the replay is kept, so a refresh reads only the commits
//! that are new. The generation is the table version, found by one LIST of
//! `_delta_log/` that starts after the last version seen.
//!
//! Deletion vectors are applied: a file's vector is read (inline, by UUID
//! under the table, or by absolute path), decoded into row positions and
//! dropped while the file's units are read (see `deletes.rs`). A new vector
//! changes the units of that file only, so only their partitions rebuild.
//!
//! Correctness comes before coverage: anything that would change which rows
//! a file contributes and that RuLake does not apply (column mapping,
//! unknown reader features) is an [`LakeError::Unsupported`] naming the
//! table and the feature, never rows served silently wrong.

use crate::deletes::{DeleteRegistry, FileDeletes};
use crate::dv::{self, DvDescriptor};
use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, RowStream, Source, Unit};
use crate::store::{open_store, to_url, StoreUrl};
use arrow_array::cast::AsArray;
use arrow_array::{Array, StructArray};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use rulake_types::Generation;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Commit files fetched concurrently while replaying the log.
const COMMIT_CONCURRENCY: usize = 8;
/// Reader features whose tables RuLake reads correctly (the ones that
/// change rows, deletion vectors and column mapping, are checked per use).
const READER_FEATURES: &[&str] = &[
    "deletionVectors",
    "columnMapping",
    "timestampNtz",
    "vacuumProtocolCheck",
    "v2Checkpoint",
    "typeWidening",
    "typeWidening-preview",
    // Variant columns: RuLake reads only the id and vector columns, whose
    // types are checked in every file.
    "variantType",
    "variantType-preview",
];
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

/// One live data file of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LiveFile {
    size: u64,
    modification_time: i64,
    deletion_vector: Option<DvDescriptor>,
}

/// The table as of one version.
#[derive(Clone, Debug, Default)]
struct Replay {
    version: u64,
    /// Live files by their (decoded) path relative to the table root, or
    /// their absolute URL.
    files: BTreeMap<String, LiveFile>,
    min_reader_version: i64,
    reader_features: BTreeSet<String>,
    column_mapping: Option<String>,
    partition_columns: Vec<String>,
    has_metadata: bool,
}

/// A Delta table source.
#[derive(Debug)]
pub struct DeltaSource {
    config: DeltaSourceConfig,
    store: StoreUrl,
    files: ParquetSource,
    /// Newest replay, reused by the next refresh.
    replay: tokio::sync::Mutex<Option<Replay>>,
    /// Decoded deletion vectors by unique id (immutable once written).
    vectors: parking_lot::Mutex<HashMap<String, Arc<FileDeletes>>>,
    /// Delete sets of the newest listings, applied when units are read.
    deletes: DeleteRegistry,
}

/// What a listing of `_delta_log/` shows.
#[derive(Debug, Default)]
struct LogListing {
    commits: BTreeSet<u64>,
    /// Checkpoint version → part paths (complete sets only count).
    checkpoints: BTreeMap<u64, (u32, Vec<Path>)>,
}

fn parse_log_name(name: &str) -> Option<(u64, LogEntry)> {
    let (num, rest) = name.split_once('.')?;
    if num.len() != 20 {
        return None;
    }
    let v: u64 = num.parse().ok()?;
    if rest == "json" {
        return Some((v, LogEntry::Commit));
    }
    if rest == "checkpoint.parquet" {
        return Some((v, LogEntry::Checkpoint { part: 1, of: 1 }));
    }
    // Multi-part: NNN.checkpoint.PPPPPPPPPP.TTTTTTTTTT.parquet
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.len() == 4 && parts[0] == "checkpoint" && parts[3] == "parquet" {
        let part = parts[1].parse().ok()?;
        let of = parts[2].parse().ok()?;
        return Some((v, LogEntry::Checkpoint { part, of }));
    }
    None
}

enum LogEntry {
    Commit,
    Checkpoint { part: u32, of: u32 },
}

impl DeltaSource {
    /// Open a table (no I/O yet besides building the store client).
    pub fn open(config: DeltaSourceConfig) -> Result<Self> {
        let url = to_url(config.url.trim_end_matches('/'))?;
        let store = open_store(&url, &config.options, crate::io::LakeKind::Delta)?;
        let files =
            ParquetSource::for_table(store.clone(), &config.id_column, &config.vector_column);
        Ok(DeltaSource {
            config,
            store,
            files,
            replay: tokio::sync::Mutex::new(None),
            vectors: parking_lot::Mutex::new(HashMap::new()),
            deletes: DeleteRegistry::default(),
        })
    }

    /// The config this source was opened with.
    pub fn config(&self) -> &DeltaSourceConfig {
        &self.config
    }

    /// Fuzzing entry: replay one commit file's actions and check the result.
    #[doc(hidden)]
    pub fn fuzz_commit(&self, name: &str, body: &[u8]) -> Result<()> {
        let _ = parse_log_name(name);
        let mut st = Replay::default();
        self.apply_commit(name, body, &mut st)?;
        self.check(&st)
    }

    fn table(&self) -> String {
        self.config.url.clone()
    }

    fn log_dir(&self) -> Path {
        self.store.path.clone().join("_delta_log")
    }

    fn meta_err(&self, file: &str, reason: impl Into<String>) -> LakeError {
        LakeError::TableMetadata {
            table: self.table(),
            file: file.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, feature: &str, detail: impl Into<String>) -> LakeError {
        LakeError::Unsupported {
            table: self.table(),
            feature: feature.to_owned(),
            detail: detail.into(),
        }
    }

    /// List `_delta_log/`, from `after` on when a version is known already.
    async fn list_log(&self, after: Option<u64>) -> Result<LogListing> {
        let dir = self.log_dir();
        let store = &self.store.store;
        let objects: Vec<ObjectMeta> = match after {
            Some(v) => {
                let offset = dir.clone().join(format!("{v:020}.json"));
                store
                    .list_with_offset(Some(&dir), &offset)
                    .try_collect()
                    .await
            }
            None => store.list(Some(&dir)).try_collect().await,
        }
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => LakeError::TableNotFound {
                table: self.table(),
                reason: format!("no transaction log at {dir}"),
            },
            e => LakeError::store(dir.to_string(), e),
        })?;
        let mut out = LogListing::default();
        for m in objects {
            let Some(name) = m.location.filename() else {
                continue;
            };
            match parse_log_name(name) {
                Some((v, LogEntry::Commit)) => {
                    out.commits.insert(v);
                }
                Some((v, LogEntry::Checkpoint { part, of })) if part >= 1 && part <= of => {
                    let e = out.checkpoints.entry(v).or_insert((of, Vec::new()));
                    if e.0 == of {
                        e.1.push(m.location.clone());
                    }
                }
                _ => {}
            }
        }
        out.checkpoints
            .retain(|_, (of, parts)| parts.len() == *of as usize);
        Ok(out)
    }

    /// The version to serve: the pinned one, or the latest in the log.
    async fn target_version(&self, known: Option<u64>) -> Result<(u64, Option<LogListing>)> {
        if let Some(v) = self.config.version {
            return Ok((v, None));
        }
        let listing = self.list_log(known).await?;
        let latest = listing
            .commits
            .iter()
            .next_back()
            .copied()
            .or(known)
            .or_else(|| listing.checkpoints.keys().next_back().copied());
        match latest {
            Some(v) => Ok((v, Some(listing))),
            None => Err(LakeError::TableNotFound {
                table: self.table(),
                reason: format!("no commits in {}", self.log_dir()),
            }),
        }
    }

    async fn get(&self, path: &Path) -> Result<bytes::Bytes> {
        let r = self.store.store.get(path).await;
        let r = match r {
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

    /// Replay the log up to `target`, continuing from `base` when it is
    /// older.
    async fn replay(&self, base: Option<Replay>, target: u64) -> Result<Replay> {
        let base = base.filter(|b| b.version <= target);
        let (mut state, from) = match base {
            Some(b) => {
                let from = b.version + 1;
                (b, from)
            }
            None => {
                let listing = self.list_log(None).await?;
                if self.config.version.is_some()
                    && !listing.commits.contains(&target)
                    && !listing.checkpoints.contains_key(&target)
                {
                    if listing.commits.is_empty() && listing.checkpoints.is_empty() {
                        return Err(LakeError::TableNotFound {
                            table: self.table(),
                            reason: format!("no commits in {}", self.log_dir()),
                        });
                    }
                    return Err(LakeError::VersionNotFound {
                        table: self.table(),
                        what: format!("version {target}"),
                    });
                }
                match listing.checkpoints.range(..=target).next_back() {
                    Some((&v, (_, parts))) => {
                        let mut st = Replay::default();
                        let mut parts = parts.clone();
                        parts.sort();
                        for p in &parts {
                            self.read_checkpoint(p, &mut st).await?;
                        }
                        st.version = v;
                        (st, v + 1)
                    }
                    None => (Replay::default(), 0),
                }
            }
        };
        let commits: Vec<u64> = (from..=target).collect();
        let bodies: Vec<(u64, bytes::Bytes)> = futures::stream::iter(commits)
            .map(|v| async move {
                let p = self.log_dir().join(format!("{v:020}.json"));
                match self.get(&p).await {
                    Ok(b) => Ok((v, b)),
                    Err(LakeError::Vanished { .. }) if v == 0 || self.config.version.is_some() => {
                        Err(if v == target {
                            LakeError::VersionNotFound {
                                table: self.table(),
                                what: format!("version {target}"),
                            }
                        } else {
                            self.meta_err(
                                p.as_ref(),
                                "commit missing from the log and no checkpoint covers it",
                            )
                        })
                    }
                    Err(LakeError::Vanished { .. }) => Err(self.meta_err(
                        p.as_ref(),
                        "commit missing from the log (cleaned up while being read?)",
                    )),
                    Err(e) => Err(e),
                }
            })
            .buffered(COMMIT_CONCURRENCY)
            .try_collect()
            .await?;
        for (v, body) in bodies {
            let file = self.log_dir().join(format!("{v:020}.json")).to_string();
            self.apply_commit(&file, &body, &mut state)?;
            state.version = v;
        }
        state.version = target;
        if !state.has_metadata {
            return Err(self.meta_err(
                self.log_dir().as_ref(),
                format!("no metaData action up to version {target}"),
            ));
        }
        Ok(state)
    }

    fn apply_commit(&self, file: &str, body: &[u8], st: &mut Replay) -> Result<()> {
        let text =
            std::str::from_utf8(body).map_err(|_| self.meta_err(file, "commit is not UTF-8"))?;
        // Removes before adds: a commit that gives a file a new deletion
        // vector removes (path, old vector) and adds (path, new vector), in
        // either order.
        let mut adds = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let action: Json = serde_json::from_str(line)
                .map_err(|e| self.meta_err(file, format!("line {}: not JSON: {e}", i + 1)))?;
            let Some(obj) = action.as_object() else {
                return Err(self.meta_err(file, format!("line {}: not a JSON object", i + 1)));
            };
            let bad = |what: &str| self.meta_err(file, format!("line {}: {what}", i + 1));
            if let Some(add) = obj.get("add") {
                let path = add["path"]
                    .as_str()
                    .ok_or_else(|| bad("add without path"))?;
                let size = add["size"]
                    .as_u64()
                    .ok_or_else(|| bad("add without size"))?;
                let modification_time = add["modificationTime"].as_i64().unwrap_or(0);
                let dv = match add.get("deletionVector") {
                    None | Some(Json::Null) => None,
                    Some(d) => Some(json_dv(d).ok_or_else(|| {
                        bad("deletionVector without storageType, pathOrInlineDv, sizeInBytes or cardinality")
                    })?),
                };
                adds.push((
                    decode_path(path),
                    LiveFile {
                        size,
                        modification_time,
                        deletion_vector: dv,
                    },
                ));
            } else if let Some(rm) = obj.get("remove") {
                let path = rm["path"]
                    .as_str()
                    .ok_or_else(|| bad("remove without path"))?;
                st.files.remove(&decode_path(path));
            } else if let Some(md) = obj.get("metaData") {
                st.has_metadata = true;
                st.partition_columns = json_strings(&md["partitionColumns"]);
                st.column_mapping = md["configuration"]["delta.columnMapping.mode"]
                    .as_str()
                    .map(str::to_owned);
            } else if let Some(p) = obj.get("protocol") {
                st.min_reader_version = p["minReaderVersion"]
                    .as_i64()
                    .ok_or_else(|| bad("protocol without minReaderVersion"))?;
                st.reader_features = json_strings(&p["readerFeatures"]);
            }
        }
        st.files.extend(adds);
        Ok(())
    }

    /// Read one classic checkpoint part (Parquet) into `st`.
    async fn read_checkpoint(&self, path: &Path, st: &mut Replay) -> Result<()> {
        let file = path.to_string();
        let meta = self
            .store
            .store
            .head(path)
            .await
            .map_err(|e| LakeError::store(file.clone(), e))?;
        let reader = crate::reader::ObjectReader {
            store: self.store.store.clone(),
            path: path.clone(),
            size: meta.size,
            counters: Arc::default(),
        };
        let corrupt = |e: parquet::errors::ParquetError| self.meta_err(&file, e.to_string());
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(corrupt)?
            .build()
            .map_err(corrupt)?;
        let batches: Vec<_> = stream.try_collect().await.map_err(corrupt)?;
        for batch in batches {
            if let Some(add) = batch.column_by_name("add") {
                let add = add.as_struct();
                let path_col = field_strings(add, "path").ok_or_else(|| {
                    self.meta_err(&file, "checkpoint add.path missing or not a string")
                })?;
                let size = add
                    .column_by_name("size")
                    .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>());
                let mtime = add
                    .column_by_name("modificationTime")
                    .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>());
                let dv = add.column_by_name("deletionVector").map(|c| c.as_struct());
                for (row, p) in path_col.iter().enumerate() {
                    let Some(p) = p.as_ref().filter(|_| add.is_valid(row)) else {
                        continue;
                    };
                    let size = size
                        .filter(|s| s.is_valid(row))
                        .map(|s| s.value(row))
                        .ok_or_else(|| self.meta_err(&file, "checkpoint add without size"))?;
                    st.files.insert(
                        decode_path(p),
                        LiveFile {
                            size: size.max(0) as u64,
                            modification_time: mtime
                                .filter(|m| m.is_valid(row))
                                .map(|m| m.value(row))
                                .unwrap_or(0),
                            deletion_vector: match dv.filter(|d| d.is_valid(row)) {
                                None => None,
                                Some(d) => Some(struct_dv(d, row).ok_or_else(|| {
                                    self.meta_err(&file, "checkpoint deletionVector incomplete")
                                })?),
                            },
                        },
                    );
                }
            }
            if let Some(md) = batch.column_by_name("metaData") {
                let md = md.as_struct();
                for row in 0..md.len() {
                    if md.is_null(row) {
                        continue;
                    }
                    st.has_metadata = true;
                    st.partition_columns = md
                        .column_by_name("partitionColumns")
                        .map(|c| list_strings(c.as_ref(), row))
                        .unwrap_or_default();
                    st.column_mapping = md
                        .column_by_name("configuration")
                        .and_then(|c| map_lookup(c.as_ref(), row, "delta.columnMapping.mode"));
                }
            }
            if let Some(p) = batch.column_by_name("protocol") {
                let p = p.as_struct();
                for row in 0..p.len() {
                    if p.is_null(row) {
                        continue;
                    }
                    st.min_reader_version = p
                        .column_by_name("minReaderVersion")
                        .and_then(|c| {
                            let c = c.as_primitive_opt::<arrow_array::types::Int32Type>()?;
                            c.is_valid(row).then(|| i64::from(c.value(row)))
                        })
                        .ok_or_else(|| {
                            self.meta_err(&file, "checkpoint protocol without minReaderVersion")
                        })?;
                    st.reader_features = p
                        .column_by_name("readerFeatures")
                        .map(|c| list_strings(c.as_ref(), row).into_iter().collect())
                        .unwrap_or_default();
                }
            }
        }
        Ok(())
    }

    /// Refuse what would make rows wrong.
    fn check(&self, st: &Replay) -> Result<()> {
        if st.min_reader_version > 3 {
            return Err(self.unsupported(
                "reader protocol",
                format!(
                    "minReaderVersion {} (RuLake reads up to 3)",
                    st.min_reader_version
                ),
            ));
        }
        if let Some(f) = st
            .reader_features
            .iter()
            .find(|f| !READER_FEATURES.contains(&f.as_str()))
        {
            return Err(self.unsupported(
                &format!("reader feature {f:?}"),
                format!("version {} needs it to be read correctly", st.version),
            ));
        }
        if let Some(mode) = st.column_mapping.as_deref().filter(|m| *m != "none") {
            return Err(self.unsupported(
                "column mapping",
                format!(
                    "delta.columnMapping.mode = {mode:?} at version {}: physical column names differ from the logical ones",
                    st.version
                ),
            ));
        }
        for col in [&self.config.id_column, &self.config.vector_column] {
            if st.partition_columns.contains(col) {
                return Err(self.unsupported(
                    "partition column as id or vector",
                    format!("column {col:?} is a partition column, not stored in the data files"),
                ));
            }
        }
        if let Some((path, _)) = st
            .files
            .iter()
            .find(|(_, f)| f.deletion_vector.is_some())
            .filter(|_| !st.reader_features.contains("deletionVectors"))
        {
            return Err(self.meta_err(
                self.log_dir().as_ref(),
                format!(
                    "data file {path} has a deletion vector at version {} but the protocol does not list the deletionVectors reader feature",
                    st.version
                ),
            ));
        }
        Ok(())
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
            Path::from_iter(
                self.store
                    .path
                    .parts()
                    .chain(rel.split('/').filter(|s| !s.is_empty()).map(PathPart::from)),
            )
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
                let path = if d.storage_type == "u" {
                    let rel = dv::relative_path(&d.path_or_inline_dv).map_err(bad)?;
                    Path::from_iter(
                        self.store
                            .path
                            .parts()
                            .chain(rel.split('/').map(PathPart::from)),
                    )
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
                let bytes =
                    self.store
                        .store
                        .get_range(&path, range)
                        .await
                        .map_err(|e| match e {
                            object_store::Error::NotFound { .. } => LakeError::Vanished {
                                path: path.to_string(),
                            },
                            e => LakeError::store(path.to_string(), e),
                        })?;
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

    /// The version currently served (after the last listing).
    pub async fn version(&self) -> Option<u64> {
        self.replay.lock().await.as_ref().map(|r| r.version)
    }
}

fn generation_of(version: u64) -> Generation {
    Generation(format!("delta-v{version}"))
}

/// Paths in the log are URL-encoded relative URIs.
/// The strings of a JSON array (empty when it is missing or not an array).
fn json_strings<C: FromIterator<String> + Default>(v: &serde_json::Value) -> C {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A deletion vector descriptor from a JSON commit.
fn json_dv(d: &Json) -> Option<DvDescriptor> {
    Some(DvDescriptor {
        storage_type: d["storageType"].as_str()?.to_owned(),
        path_or_inline_dv: d["pathOrInlineDv"].as_str()?.to_owned(),
        offset: d["offset"].as_i64(),
        size_in_bytes: d["sizeInBytes"].as_i64()?,
        cardinality: d["cardinality"].as_i64()?,
    })
}

/// A deletion vector descriptor from a checkpoint's `add.deletionVector`.
fn struct_dv(d: &StructArray, row: usize) -> Option<DvDescriptor> {
    let s = |name: &str| field_strings(d, name)?.get(row)?.clone();
    let int = |name: &str| -> Option<i64> {
        let c = d.column_by_name(name)?;
        if c.is_null(row) {
            return None;
        }
        if let Some(a) = c.as_primitive_opt::<arrow_array::types::Int64Type>() {
            return Some(a.value(row));
        }
        c.as_primitive_opt::<arrow_array::types::Int32Type>()
            .map(|a| i64::from(a.value(row)))
    };
    Some(DvDescriptor {
        storage_type: s("storageType")?,
        path_or_inline_dv: s("pathOrInlineDv")?,
        offset: int("offset"),
        size_in_bytes: int("sizeInBytes")?,
        cardinality: int("cardinality")?,
    })
}

fn decode_path(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}

fn field_strings(s: &StructArray, name: &str) -> Option<Vec<Option<String>>> {
    let c = s.column_by_name(name)?;
    strings(c.as_ref())
}

fn strings(c: &dyn Array) -> Option<Vec<Option<String>>> {
    let get = |i: usize| c.is_valid(i);
    if let Some(a) = c.as_string_opt::<i32>() {
        return Some(
            (0..a.len())
                .map(|i| get(i).then(|| a.value(i).to_owned()))
                .collect(),
        );
    }
    if let Some(a) = c.as_string_opt::<i64>() {
        return Some(
            (0..a.len())
                .map(|i| get(i).then(|| a.value(i).to_owned()))
                .collect(),
        );
    }
    if let Some(a) = c.as_string_view_opt() {
        return Some(
            (0..a.len())
                .map(|i| get(i).then(|| a.value(i).to_owned()))
                .collect(),
        );
    }
    None
}

fn list_strings(c: &dyn Array, row: usize) -> Vec<String> {
    let Some(l) = c.as_list_opt::<i32>() else {
        return Vec::new();
    };
    if l.is_null(row) {
        return Vec::new();
    }
    strings(l.value(row).as_ref())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

fn map_lookup(c: &dyn Array, row: usize, key: &str) -> Option<String> {
    let m = c.as_map_opt()?;
    if m.is_null(row) {
        return None;
    }
    let entries = m.value(row);
    let keys = strings(entries.column(0).as_ref())?;
    let values = strings(entries.column(1).as_ref())?;
    keys.iter()
        .position(|k| k.as_deref() == Some(key))
        .and_then(|i| values[i].clone())
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

    async fn generation(&self) -> Result<Generation> {
        let known = self.replay.lock().await.as_ref().map(|r| r.version);
        let (v, _) = self.target_version(known).await?;
        Ok(generation_of(v))
    }

    async fn list_units(&self) -> Result<Listing> {
        let mut cached = self.replay.lock().await;
        let known = cached.as_ref().map(|r| r.version);
        let (target, _) = self.target_version(known).await?;
        let state = match cached.as_ref() {
            Some(r) if r.version == target => r.clone(),
            _ => self.replay(cached.clone(), target).await?,
        };
        self.check(&state)?;
        let with_dv: Vec<(String, DvDescriptor)> = state
            .files
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
            &self.table(),
            loaded.iter().map(|(_, d)| d.positions.len()).sum(),
        )?;
        let by_rel: HashMap<String, Arc<FileDeletes>> = loaded.into_iter().collect();
        let mut by_object = HashMap::new();
        let mut objects = Vec::with_capacity(state.files.len());
        for (p, f) in &state.files {
            let d = by_rel.get(p).filter(|d| !d.is_empty());
            let meta = self.object_meta(p, f, d.map(|d| d.as_ref()))?;
            if let Some(d) = d {
                by_object.insert(meta.location.to_string(), d.clone());
            }
            objects.push(meta);
        }
        let live_ids: HashSet<String> = state
            .files
            .values()
            .filter_map(|f| f.deletion_vector.as_ref().map(DvDescriptor::unique_id))
            .collect();
        self.vectors.lock().retain(|k, _| live_ids.contains(k));
        let units = self.files.units_of_objects(objects).await?;
        self.deletes.publish(&units, &by_object);
        *cached = Some(state);
        Ok(Listing {
            generation: generation_of(target),
            units,
        })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        let rows = self.files.read_object_unit(unit, dim);
        self.deletes
            .apply(unit, self.files.first_row_of(unit), dim, rows)
    }

    /// `12`, `v12` or the generation string `delta-v12`.
    fn pinned(&self, version: &str) -> Result<Arc<dyn Source>> {
        let digits = version.trim_start_matches("delta-").trim_start_matches('v');
        let v = digits.parse().map_err(|_| {
            LakeError::Invalid(format!(
                "{}: {version:?} is not a Delta table version (a number, v12 or delta-v12)",
                self.table()
            ))
        })?;
        Ok(Arc::new(DeltaSource::open(
            self.config.clone().at_version(v),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names() {
        assert!(matches!(
            parse_log_name("00000000000000000007.json"),
            Some((7, LogEntry::Commit))
        ));
        assert!(matches!(
            parse_log_name("00000000000000000010.checkpoint.parquet"),
            Some((10, LogEntry::Checkpoint { part: 1, of: 1 }))
        ));
        assert!(matches!(
            parse_log_name("00000000000000000010.checkpoint.0000000002.0000000003.parquet"),
            Some((10, LogEntry::Checkpoint { part: 2, of: 3 }))
        ));
        assert!(parse_log_name("00000000000000000010.crc").is_none());
        assert!(parse_log_name("_last_checkpoint").is_none());
        assert!(parse_log_name("7.json").is_none());
    }

    #[test]
    fn paths_are_decoded() {
        assert_eq!(decode_path("p%3D1/a%20b.parquet"), "p=1/a b.parquet");
    }
}
