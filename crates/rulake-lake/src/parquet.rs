//! Parquet files under an object-store prefix or glob, one unit per row group.
//!
//! The generation is a digest of the listing (path, size, e-tag or
//! modification time), so it changes whenever a file is added, removed or
//! rewritten, and checking it costs one LIST and no reads. Footers are read
//! when units are listed (row counts feed admission control) and cached per
//! object version, so reading a row group does not fetch its footer again.
//!
//! With a filter ([`Source::list_units_pruned`]), a row group whose footer
//! statistics show that none of its rows match is left out of the listing
//! (`stats`), so its pages are never fetched.
//!
//! A row group is read in slices of about [`READ_SLICE_BYTES`] of vectors
//! when its file has an offset index (the page index Parquet writers add by
//! default): the reader then fetches only the pages of the slice, so a load
//! holds one slice of compressed pages at a time instead of the whole
//! column chunk, which for a 100,000-row group of 384-dimensional floats
//! is 150 MB. Without an offset index the row group is fetched whole.

use crate::arrow_conv::{self, ID_TYPES, VECTOR_TYPES};
use crate::error::{LakeError, Location, Result};
use crate::payload_conv;
use crate::reader::{ObjectReader, ReadCounters};
use crate::source::{Listing, Pruned, RowBatch, RowStream, Source, Unit};
use crate::store::{open_store, to_url, StoreUrl};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::{path::Path, ObjectMeta, ObjectStoreExt};
use parking_lot::Mutex;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;
use rulake_types::Generation;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) mod glob;
pub use glob::{glob_match, Glob, MAX_GLOB_BYTES, MAX_GLOB_WILDCARDS};

/// Rows per batch when streaming a row group: bounds memory per reader.
pub const READ_BATCH_ROWS: usize = 4096;
/// Vector bytes fetched at a time from a row group whose file has an
/// offset index (at least [`READ_BATCH_ROWS`] rows a slice).
pub const READ_SLICE_BYTES: usize = 8 << 20;
/// Footers fetched concurrently while listing.
const FOOTER_CONCURRENCY: usize = 16;

/// How to find and read a Parquet source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetSourceConfig {
    /// `file://`, `s3://`, `gs://`, `az://` URL of a prefix, a file, or a
    /// glob (`s3://bucket/emb/*/part-*.parquet`); a plain path means a local file or directory.
    pub url: String,
    /// Id column: integer or string.
    pub id_column: String,
    /// Vector column: fixed-size or variable list of floats.
    pub vector_column: String,
    /// Store options overriding the environment (`aws_endpoint`, ...).
    pub options: Vec<(String, String)>,
}

impl ParquetSourceConfig {
    /// A config with no store options.
    pub fn new(url: impl Into<String>, id_column: &str, vector_column: &str) -> Self {
        ParquetSourceConfig {
            url: url.into(),
            id_column: id_column.to_owned(),
            vector_column: vector_column.to_owned(),
            options: Vec::new(),
        }
    }

    /// Add a store option (overrides the environment).
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A Parquet source.
#[derive(Debug)]
pub struct ParquetSource {
    config: ParquetSourceConfig,
    store: StoreUrl,
    /// Glob over the path relative to `store.path`, if the URL had one.
    glob: Option<Glob>,
    /// Footer metadata by (path, version), refreshed on every listing.
    footers: Mutex<HashMap<(String, String), ArrowReaderMetadata>>,
    counters: Arc<ReadCounters>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A URL as error messages show it: at most [`MAX_GLOB_BYTES`] bytes, so a
/// refused megabyte-long URL does not come back whole in the error.
fn shown_url(url: &str) -> String {
    if url.len() <= MAX_GLOB_BYTES {
        return url.to_owned();
    }
    let mut cut = MAX_GLOB_BYTES;
    while !url.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes)", &url[..cut], url.len())
}

impl ParquetSource {
    /// Open a source (no I/O yet besides building the store client).
    pub fn open(config: ParquetSourceConfig) -> Result<Self> {
        let (base, glob) = if has_glob(&config.url) {
            let first = config.url.find(['*', '?', '[']).unwrap_or(0);
            let cut = config.url[..first]
                .rfind('/')
                .ok_or_else(|| LakeError::InvalidUrl {
                    url: shown_url(&config.url),
                    reason: "a glob needs a directory before its first wildcard".into(),
                })?;
            let glob =
                Glob::new(&config.url[cut + 1..]).map_err(|reason| LakeError::InvalidUrl {
                    url: shown_url(&config.url),
                    reason,
                })?;
            (config.url[..cut].to_owned(), Some(glob))
        } else {
            (config.url.clone(), None)
        };
        let url = to_url(&base)?;
        let store = open_store(&url, &config.options, crate::io::LakeKind::Parquet)?;
        Ok(ParquetSource {
            config,
            store,
            glob,
            footers: Mutex::new(HashMap::new()),
            counters: Arc::default(),
        })
    }

    /// A reader of data files named by a table format's own file list,
    /// in the store of the table (`url` is the table's, for messages only).
    pub(crate) fn for_table(store: StoreUrl, id_column: &str, vector_column: &str) -> Self {
        ParquetSource {
            config: ParquetSourceConfig::new(store.url.to_string(), id_column, vector_column),
            store,
            glob: None,
            footers: Mutex::new(HashMap::new()),
            counters: Arc::default(),
        }
    }

    /// The config this source was opened with.
    pub fn config(&self) -> &ParquetSourceConfig {
        &self.config
    }

    fn relative<'a>(&self, p: &'a str) -> &'a str {
        let base = self.store.path.as_ref();
        p.strip_prefix(base)
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(p)
    }

    fn keep(&self, meta: &ObjectMeta) -> bool {
        let rel = self.relative(meta.location.as_ref());
        if rel
            .split('/')
            .any(|s| s.starts_with('.') || s.starts_with('_'))
        {
            return false; // _SUCCESS, _delta_log, .crc and other side files
        }
        match &self.glob {
            Some(g) => g.matches(rel),
            None => rel.to_ascii_lowercase().ends_with(".parquet") || rel.is_empty(),
        }
    }

    /// List the objects of the current generation, sorted by path.
    pub async fn list_objects(&self) -> Result<Vec<ObjectMeta>> {
        let prefix = &self.store.path;
        let at = self.store.url.to_string();
        let mut objects: Vec<ObjectMeta> = self
            .store
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| LakeError::store(&at, e))?;
        if objects.is_empty() && self.glob.is_none() && !prefix.as_ref().is_empty() {
            // The URL may name a single object rather than a prefix.
            match self.store.store.head(prefix).await {
                Ok(meta) => objects.push(meta),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::store(&at, e)),
            }
        }
        objects.retain(|m| self.keep(m));
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    fn object_version(meta: &ObjectMeta) -> String {
        match &meta.e_tag {
            Some(e) => format!("{}:{e}", meta.size),
            None => format!("{}:{}", meta.size, meta.last_modified.timestamp_micros()),
        }
    }

    fn digest(objects: &[ObjectMeta]) -> Generation {
        let mut h = Sha256::new();
        for m in objects {
            h.update(m.location.as_ref().as_bytes());
            h.update([0]);
            h.update(Self::object_version(m).as_bytes());
            h.update([b'\n']);
        }
        let d = h.finalize();
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        Generation(format!("pq-{hex}"))
    }

    async fn footer(&self, object: &str, size: u64, version: &str) -> Result<ArrowReaderMetadata> {
        let key = (object.to_owned(), version.to_owned());
        if let Some(m) = self.footers.lock().get(&key) {
            return Ok(m.clone());
        }
        if size == 0 {
            return Err(LakeError::EmptyFile {
                path: object.to_owned(),
            });
        }
        let mut reader = self.object_reader(object, size);
        // The offset index only (page locations, a few bytes a page): it
        // lets a row group be read in slices. The column chunks' statistics
        // come with the footer itself; a filter prunes row groups by them.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let md = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(|e| map_parquet(e, object, None))?;
        self.check_schema(&md, object)?;
        self.footers.lock().insert(key, md.clone());
        Ok(md)
    }

    fn check_schema(&self, md: &ArrowReaderMetadata, path: &str) -> Result<()> {
        let schema = md.schema();
        let at = Location {
            object: path.to_owned(),
            row_group: None,
        };
        let available = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (column, ok, expected) in [
            (
                &self.config.id_column,
                arrow_conv::id_type_ok as fn(&arrow_schema::DataType) -> bool,
                ID_TYPES,
            ),
            (
                &self.config.vector_column,
                arrow_conv::vector_type_ok,
                VECTOR_TYPES,
            ),
        ] {
            let field = schema
                .field_with_name(column)
                .map_err(|_| LakeError::MissingColumn {
                    at: at.clone(),
                    column: column.clone(),
                    available: available(),
                })?;
            if !ok(field.data_type()) {
                return Err(LakeError::ColumnType {
                    at: at.clone(),
                    column: column.clone(),
                    found: field.data_type().to_string(),
                    expected,
                });
            }
        }
        Ok(())
    }

    /// The vector dimension, read from the schema of the first file
    /// (fixed-size lists) or from its first row (variable lists).
    pub async fn probe_dimension(&self) -> Result<usize> {
        let listing = self.list_units().await?;
        let Some(unit) = listing.units.first() else {
            return Err(LakeError::Invalid(format!(
                "{}: no Parquet rows found, cannot infer the vector dimension",
                self.describe()
            )));
        };
        let md = self
            .footer(&unit.object, unit.object_size, &unit.version)
            .await?;
        let field = md
            .schema()
            .field_with_name(&self.config.vector_column)
            .map_err(|e| LakeError::Invalid(e.to_string()))?
            .clone();
        if let Some(d) = arrow_conv::declared_dim(field.data_type()) {
            return Ok(d);
        }
        // Variable lists: the first row decides; every row is checked later.
        let reader = self.reader(unit, md, &[])?;
        let mut stream = reader
            .with_batch_size(1)
            .build()
            .map_err(|e| map_parquet(e, &unit.object, Some(unit.row_group)))?;
        let batch = stream
            .try_next()
            .await
            .map_err(|e| map_parquet(e, &unit.object, Some(unit.row_group)))?
            .ok_or_else(|| LakeError::Invalid("empty row group".into()))?;
        let col = batch
            .column_by_name(&self.config.vector_column)
            .expect("projected column");
        use arrow_array::cast::AsArray;
        Ok(match col.data_type() {
            arrow_schema::DataType::List(_) => col.as_list::<i32>().value_length(0) as usize,
            _ => col.as_list::<i64>().value_length(0) as usize,
        })
    }

    fn object_reader(&self, object: &str, size: u64) -> ObjectReader {
        ObjectReader {
            store: self.store.store.clone(),
            // Listed paths are already encoded: parse them rather than encode twice.
            path: Path::parse(object).unwrap_or_else(|_| Path::from(object)),
            size,
            counters: self.counters.clone(),
        }
    }

    /// Bytes and requests this source has cost so far.
    pub fn counters(&self) -> &ReadCounters {
        &self.counters
    }

    /// A reader of `unit`'s id, vector and `payload` columns. A payload
    /// column the file lacks, or of a type RuLake cannot keep, is refused
    /// here, naming the file and the column.
    fn reader(
        &self,
        unit: &Unit,
        md: ArrowReaderMetadata,
        payload: &[String],
    ) -> Result<ParquetRecordBatchStreamBuilder<ObjectReader>> {
        let obj = self.object_reader(&unit.object, unit.object_size);
        let schema = md.schema().clone();
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(obj, md);
        let idx = |c: &str| schema.index_of(c).expect("checked by check_schema");
        let mut roots = vec![idx(&self.config.id_column), idx(&self.config.vector_column)];
        check_payload_columns(&schema, &unit.object, payload)?;
        roots.extend(payload.iter().map(|c| idx(c)));
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        Ok(builder
            .with_row_groups(vec![unit.row_group])
            .with_projection(mask))
    }
}

/// Refuse a column of `columns` that `schema` (of `object`) lacks or holds
/// in a type RuLake cannot keep as payload, naming it.
pub(crate) fn check_payload_columns(
    schema: &arrow_schema::Schema,
    object: &str,
    columns: &[String],
) -> Result<()> {
    let at = Location {
        object: object.to_owned(),
        row_group: None,
    };
    for c in columns {
        let field = schema
            .field_with_name(c)
            .map_err(|_| LakeError::MissingColumn {
                at: at.clone(),
                column: c.clone(),
                available: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        payload_conv::check_type(field.data_type(), &at, c)?;
    }
    Ok(())
}

/// True when a Parquet read failed because the object is gone (the
/// store's `NotFound`, passed up through the reader).
pub(crate) fn is_vanished(e: &parquet::errors::ParquetError) -> bool {
    matches!(e, parquet::errors::ParquetError::External(inner)
        if matches!(inner.downcast_ref::<object_store::Error>(), Some(object_store::Error::NotFound { .. })))
}

/// A footer refused for its size ([`crate::reader::MAX_FOOTER_BYTES`]),
/// as [`LakeError::TooLarge`] naming `object`.
pub(crate) fn footer_too_large(
    e: &parquet::errors::ParquetError,
    object: &str,
) -> Option<LakeError> {
    let parquet::errors::ParquetError::External(inner) = e else {
        return None;
    };
    let t = inner.downcast_ref::<crate::reader::FooterTooLarge>()?;
    Some(LakeError::TooLarge {
        path: object.to_owned(),
        what: "Parquet footer",
        size: t.claimed,
        limit: crate::reader::MAX_FOOTER_BYTES,
    })
}

/// Map a Parquet error, recognising a vanished object, a refused footer or
/// a failed read underneath it.
///
/// A read the store failed (a 503 its retries did not outlast, a dropped
/// connection) comes up through the decoder too, but it is the lake's
/// trouble, not the file's: it is a [`LakeError::Store`] naming the object
/// and row group, never "not a readable Parquet file", which would send an
/// operator looking for a corrupt file that is fine.
fn map_parquet(
    e: parquet::errors::ParquetError,
    object: &str,
    row_group: Option<usize>,
) -> LakeError {
    if is_vanished(&e) {
        return LakeError::Vanished {
            path: object.to_owned(),
        };
    }
    if let Some(too_large) = footer_too_large(&e, object) {
        return too_large;
    }
    let at = Location {
        object: object.to_owned(),
        row_group,
    };
    let e = match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<object_store::Error>() {
                Ok(store) => return LakeError::store(at.to_string(), *store),
                Err(inner) => parquet::errors::ParquetError::External(inner),
            }
        }
        e => e,
    };
    LakeError::Parquet { at, source: e }
}

#[async_trait]
impl Source for ParquetSource {
    fn kind(&self) -> &'static str {
        "parquet"
    }

    fn describe(&self) -> String {
        self.config.url.clone()
    }

    async fn generation(&self) -> Result<Generation> {
        Ok(Self::digest(&self.list_objects().await?))
    }

    async fn list_units(&self) -> Result<Listing> {
        let objects = self.list_objects().await?;
        let generation = Self::digest(&objects);
        let units = self.units_of_objects(objects).await?;
        Ok(Listing {
            generation,
            units,
            pruned: Vec::new(),
        })
    }

    async fn list_units_pruned(&self, filter: &rulake_types::Filter) -> Result<Listing> {
        let objects = self.list_objects().await?;
        let generation = Self::digest(&objects);
        let (units, pruned) = self
            .units_of_objects_pruned(objects, Some(filter), &[])
            .await?;
        Ok(Listing {
            generation,
            units,
            pruned,
        })
    }

    async fn check_columns(&self, columns: &[String]) -> Result<()> {
        let objects = self.list_objects().await?;
        let Some(first) = objects.first() else {
            return Ok(());
        };
        let md = self
            .footer(
                first.location.as_ref(),
                first.size,
                &Self::object_version(first),
            )
            .await?;
        check_payload_columns(md.schema(), first.location.as_ref(), columns)
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.read_object_unit(unit, dim, &[])
    }

    fn read_unit_columns(&self, unit: &Unit, dim: usize, payload: &[String]) -> RowStream {
        self.read_object_unit(unit, dim, payload)
    }
}

impl ParquetSource {
    /// The row-group units of `objects`, reading (or reusing) their footers.
    /// Footers of objects not in `objects` are forgotten.
    pub(crate) async fn units_of_objects(&self, objects: Vec<ObjectMeta>) -> Result<Vec<Unit>> {
        Ok(self.units_of_objects_pruned(objects, None, &[]).await?.0)
    }

    /// [`Self::units_of_objects`], leaving out the row groups whose footer
    /// statistics show that no row matches `filter` (returned as pruned).
    /// `pruned_files` were left out of `objects` by a table's metadata:
    /// their footers, if read before, are kept for readers of another
    /// listing (another collection's, without that filter).
    pub(crate) async fn units_of_objects_pruned(
        &self,
        objects: Vec<ObjectMeta>,
        filter: Option<&rulake_types::Filter>,
        pruned_files: &[Pruned],
    ) -> Result<(Vec<Unit>, Vec<Pruned>)> {
        let footers: Vec<(ObjectMeta, ArrowReaderMetadata)> = futures::stream::iter(objects)
            .map(|m| async move {
                let md = self
                    .footer(m.location.as_ref(), m.size, &Self::object_version(&m))
                    .await?;
                Ok::<_, LakeError>((m, md))
            })
            .buffered(FOOTER_CONCURRENCY)
            .try_collect()
            .await?;
        let mut units = Vec::new();
        let mut pruned = Vec::new();
        let mut live = std::collections::HashSet::new();
        for (meta, md) in footers {
            let version = Self::object_version(&meta);
            let object = meta.location.to_string();
            live.insert((object.clone(), version.clone()));
            for (rg, g) in md.metadata().row_groups().iter().enumerate() {
                if g.num_rows() == 0 {
                    continue;
                }
                let key = format!("{object}#{rg}");
                if filter.is_some_and(|f| {
                    f.prune(&crate::stats::row_group_zone(&md, rg)) == rulake_types::Verdict::None
                }) {
                    pruned.push(Pruned {
                        key,
                        bytes: g.compressed_size().max(0) as u64,
                        file: false,
                    });
                    continue;
                }
                units.push(Unit {
                    key,
                    object: object.clone(),
                    row_group: rg,
                    rows: g.num_rows() as u64,
                    object_size: meta.size,
                    version: version.clone(),
                });
            }
        }
        let still_there: std::collections::HashSet<&str> =
            pruned_files.iter().map(|p| p.key.as_str()).collect();
        self.footers
            .lock()
            .retain(|k, _| live.contains(k) || still_there.contains(k.0.as_str()));
        units.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((units, pruned))
    }

    /// Position in its file of the first row of `unit` (a listed unit).
    #[cfg(any(feature = "delta", feature = "iceberg"))]
    pub(crate) fn first_row_of(&self, unit: &Unit) -> Option<u64> {
        let footers = self.footers.lock();
        let md = footers.get(&(unit.object.clone(), unit.version.clone()))?;
        let groups = md.metadata().row_groups();
        let before = groups.get(..unit.row_group)?;
        Some(before.iter().map(|g| g.num_rows().max(0) as u64).sum())
    }

    /// Stream the rows of a unit listed by [`Self::units_of_objects`],
    /// with its `payload` columns, slice by slice when its file has an
    /// offset index.
    pub(crate) fn read_object_unit(
        &self,
        unit: &Unit,
        dim: usize,
        payload: &[String],
    ) -> RowStream {
        let unit = unit.clone();
        let cached = self
            .footers
            .lock()
            .get(&(unit.object.clone(), unit.version.clone()))
            .cloned();
        let opened: Result<Vec<_>> = (|| {
            let md = cached.ok_or_else(|| {
                LakeError::Invalid(format!(
                    "{}: unit read before its source was listed",
                    unit.key
                ))
            })?;
            slices(&md, unit.row_group, dim)
                .into_iter()
                .map(|selection| {
                    let mut b = self.reader(&unit, md.clone(), payload)?;
                    if let Some(selection) = selection {
                        b = b.with_row_selection(selection);
                    }
                    b.with_batch_size(READ_BATCH_ROWS)
                        .build()
                        .map_err(|e| map_parquet(e, &unit.object, Some(unit.row_group)))
                })
                .collect()
        })();
        let streams = match opened {
            Ok(s) => s,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let id_col = self.config.id_column.clone();
        let vec_col = self.config.vector_column.clone();
        let payload = payload.to_vec();
        let at = Location {
            object: unit.object.clone(),
            row_group: Some(unit.row_group),
        };
        // One slice's stream after another: each fetches its pages only
        // when the one before it is done.
        futures::stream::iter(streams)
            .flatten()
            .map_err({
                let at = at.clone();
                move |e| map_parquet(e, &at.object, at.row_group)
            })
            .scan(0usize, move |row_base, batch| {
                let out = batch.and_then(|batch| {
                    let ids = batch.column_by_name(&id_col).expect("projected");
                    let vecs = batch.column_by_name(&vec_col).expect("projected");
                    let ids = arrow_conv::ids_from_array(ids, &at, &id_col, *row_base)?;
                    let mut vectors = Vec::with_capacity(batch.num_rows() * dim);
                    arrow_conv::vectors_from_array(
                        vecs,
                        dim,
                        &at,
                        &vec_col,
                        *row_base,
                        &mut vectors,
                    )?;
                    let payload = payload
                        .iter()
                        .map(|c| {
                            let array = batch.column_by_name(c).expect("projected");
                            payload_conv::column_from_array(array, &at, c, *row_base)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    *row_base += batch.num_rows();
                    Ok(RowBatch {
                        ids,
                        vectors,
                        payload,
                    })
                });
                futures::future::ready(Some(out))
            })
            .boxed()
    }
}

/// How to read row group `rg` of `md`: one selection per slice of about
/// [`READ_SLICE_BYTES`] of `dim`-dimensional vectors when every column
/// chunk of the group has an offset index (so a slice fetches only its
/// pages), else `[None]`: the whole group in one read.
fn slices(md: &ArrowReaderMetadata, rg: usize, dim: usize) -> Vec<Option<RowSelection>> {
    let meta = md.metadata();
    let Some(group) = meta.row_groups().get(rg) else {
        return vec![None];
    };
    let rows = group.num_rows().max(0) as usize;
    let per_slice = (READ_SLICE_BYTES / (dim.max(1) * 4)).max(READ_BATCH_ROWS);
    let index = meta.page_index_for_row_group(rg);
    let indexed = (0..group.num_columns()).all(|c| index.offset_index(c).is_some());
    if !indexed || rows <= per_slice {
        return vec![None];
    }
    (0..rows)
        .step_by(per_slice)
        .map(|start| {
            let len = per_slice.min(rows - start);
            let mut s = Vec::with_capacity(3);
            if start > 0 {
                s.push(RowSelector::skip(start));
            }
            s.push(RowSelector::select(len));
            if start + len < rows {
                s.push(RowSelector::skip(rows - start - len));
            }
            Some(RowSelection::from(s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{write_parquet_file, IdsRef};

    /// Read every row of the one unit of the Parquet file at `path`,
    /// returning the ids, the vectors, the slices planned and the bytes
    /// fetched for the rows.
    async fn read_all(path: &std::path::Path, dim: usize) -> (Vec<u64>, Vec<f32>, usize, u64) {
        let src = ParquetSource::open(ParquetSourceConfig::new(
            path.to_str().unwrap(),
            "id",
            "vector",
        ))
        .unwrap();
        let listing = src.list_units().await.unwrap();
        assert_eq!(listing.units.len(), 1);
        let unit = &listing.units[0];
        let md = src.footers.lock().values().next().unwrap().clone();
        let planned = slices(&md, unit.row_group, dim).len();
        let before = src
            .counters()
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        let batches: Vec<RowBatch> = src.read_unit(unit, dim).try_collect().await.unwrap();
        let fetched = src
            .counters()
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            - before;
        let mut ids = Vec::new();
        let mut vectors = Vec::new();
        for b in batches {
            assert!(b.ids.len() <= READ_BATCH_ROWS);
            ids.extend(b.ids.iter().map(|id| match id {
                rulake_types::VectorId::U64(v) => *v,
                other => panic!("{other:?}"),
            }));
            vectors.extend(b.vectors);
        }
        (ids, vectors, planned, fetched)
    }

    #[tokio::test]
    async fn a_row_group_with_an_offset_index_is_read_in_slices_each_page_once() {
        let dim = 256;
        let n = 20_000; // 8 MiB slices of 1 KiB rows: 8,192 rows, so 3 slices
        let vectors: Vec<f32> = (0..n * dim).map(|i| (i % 9973) as f32 * 0.5).collect();
        let ids: Vec<u64> = (0..n as u64).map(|i| i * 3).collect();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("one-group.parquet");
        write_parquet_file(&path, IdsRef::U64(&ids), &vectors, dim, n).unwrap();
        let (got_ids, got_vectors, planned, fetched) = read_all(&path, dim).await;
        assert_eq!(planned, 3);
        assert_eq!(got_ids, ids);
        assert!(got_vectors == vectors, "vectors differ");
        // Slices fetch their own pages: the rows cost about the file once,
        // plus the pages straddling a slice boundary and the small gaps the
        // store coalesces between ranges (measured: 1.25x here).
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            fetched <= size * 3 / 2,
            "fetched {fetched} of a {size}-byte file"
        );
        assert!(
            fetched * 10 >= size * 9,
            "fetched {fetched} of a {size}-byte file"
        );
    }

    #[tokio::test]
    async fn a_row_group_without_an_offset_index_is_read_whole() {
        use arrow_array::{builder::FixedSizeListBuilder, builder::Float32Builder};
        use parquet::file::properties::{EnabledStatistics, WriterProperties};
        let dim = 256;
        let n = 10_000;
        let ids: Vec<u64> = (0..n as u64).collect();
        let mut vb = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32).with_field(
            arrow_schema::Field::new("item", arrow_schema::DataType::Float32, false),
        );
        for i in 0..n {
            vb.values().append_slice(&vec![i as f32; dim]);
            vb.append(true);
        }
        let batch = arrow_array::RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(arrow_array::UInt64Array::from(ids.clone())) as arrow_array::ArrayRef,
            ),
            ("vector", Arc::new(vb.finish()) as arrow_array::ArrayRef),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("no-index.parquet");
        let f = std::fs::File::create(&path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (got_ids, got_vectors, planned, _) = read_all(&path, dim).await;
        assert_eq!(planned, 1);
        assert_eq!(got_ids, ids);
        assert_eq!(got_vectors.len(), n * dim);
        assert_eq!(got_vectors[dim * 7], 7.0);
    }

    #[test]
    fn a_failed_read_is_the_stores_error_not_the_files() {
        let unavailable = object_store::Error::Generic {
            store: "S3",
            source: "503 Service Unavailable: SlowDown".into(),
        };
        let e = parquet::errors::ParquetError::External(Box::new(unavailable));
        let e = map_parquet(e, "emb/part-5.parquet", Some(2));
        assert!(matches!(e, LakeError::Store { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("emb/part-5.parquet (row group 2)") && msg.contains("SlowDown"),
            "{msg}"
        );
        // A decoder's own complaint stays the file's.
        let e = parquet::errors::ParquetError::General("bad page header".into());
        let e = map_parquet(e, "emb/part-5.parquet", None);
        assert!(matches!(e, LakeError::Parquet { .. }), "{e:?}");
    }
}
