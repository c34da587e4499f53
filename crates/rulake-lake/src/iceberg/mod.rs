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
//! one Arrow serves every query.
//!
//! A listing runs the stages of the format, one module each: `metadata`
//! (which metadata file is current, which snapshot to serve; the
//! generation is the snapshot id), `manifests` (the snapshot's data and
//! delete files), `deletes` (delete files read and matched to data files),
//! and `sql_catalog` (tables named through pyiceberg's SQL catalog,
//! feature `iceberg-sql`). This module holds the source type, its config
//! and the [`Source`] contract that strings the stages together.
//!
//! With a filter ([`Source::list_units_pruned`]), a data file whose
//! manifest bounds show that none of its rows match is left out before
//! its footer or delete files are read, then row groups by their footers.
//!
//! What a table names is read with bounds, because a table's files are as
//! untrusted as a request: every metadata file, manifest list and manifest
//! is at most [`MAX_METADATA_FILE_BYTES`], and an Avro file's blocks are
//! inflated (and counted) by `avro` before the `iceberg` crate decodes it,
//! so a deflate bomb is refused rather than allocated.

mod avro;
mod deletes;
mod manifests;
mod metadata;
mod sql_catalog;

pub use sql_catalog::SqlCatalogTable;

use crate::deletes::DeleteRegistry;
use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, Pruned, RowStream, Source, Unit};
use crate::store::{open_store, path_in_store, to_url, StoreUrl};
use ::iceberg::spec::TableMetadata;
use async_trait::async_trait;
use deletes::DeleteRows;
use futures::TryStreamExt;
use manifests::{DataFile, ManifestRef};
use metadata::{generation_of, id_field_id};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parking_lot::Mutex;
use rulake_types::Generation;
use std::collections::HashMap;
use std::sync::Arc;
use url::Url;

/// Largest metadata file, manifest list or manifest read, in bytes (as
/// stored; see [`MAX_AVRO_INFLATED_BYTES`] for what an Avro file may
/// inflate to). Real ones are kilobytes to a few MiB.
pub const MAX_METADATA_FILE_BYTES: u64 = 64 << 20;
pub use avro::MAX_AVRO_INFLATED_BYTES;

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

/// The table location a metadata file URL lies in: its grandparent
/// (`<table>/metadata/<file>`).
fn table_of_metadata_file(url: &Url, loc: &str) -> Result<Url> {
    let mut u = url.clone();
    u.path_segments_mut()
        .map_err(|_| LakeError::InvalidUrl {
            url: loc.to_owned(),
            reason: "cannot address a metadata file in this URL".into(),
        })?
        .pop()
        .pop();
    Ok(u)
}

impl IcebergSource {
    /// Open a table (no I/O yet besides building the store client). A
    /// table named through a SQL catalog is looked up once here, to find
    /// the store its metadata is in: a blocking read of the catalog, which
    /// on a multi-threaded runtime first hands this worker's other tasks
    /// to another thread. Async code should prefer [`Self::open_async`].
    pub fn open(config: IcebergSourceConfig) -> Result<Self> {
        let from_catalog = match &config.catalog {
            Some(c) => Some(sql_catalog::lookup_sync(c, &sql_catalog::table_name(c))?),
            None => None,
        };
        Self::open_at(config, from_catalog)
    }

    /// [`Self::open`] for async callers: a SQL catalog is read on a
    /// blocking thread, so no async worker waits on SQLite.
    pub async fn open_async(config: IcebergSourceConfig) -> Result<Self> {
        let from_catalog = match &config.catalog {
            Some(c) => Some(sql_catalog::lookup(c, sql_catalog::table_name(c)).await?),
            None => None,
        };
        Self::open_at(config, from_catalog)
    }

    /// Open on the metadata location the catalog gave (`from_catalog`),
    /// or else on `config.location`.
    fn open_at(config: IcebergSourceConfig, from_catalog: Option<String>) -> Result<Self> {
        let loc = from_catalog
            .as_deref()
            .unwrap_or(&config.location)
            .trim_end_matches('/');
        let url = to_url(loc)?;
        let is_file = loc.ends_with(".metadata.json");
        // The store is opened on the table location: the metadata file's
        // grandparent when a file is given.
        let table_url = if is_file {
            table_of_metadata_file(&url, loc)?
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

    /// How errors name the table.
    fn table(&self) -> String {
        match &self.config.catalog {
            Some(c) => sql_catalog::table_name(c),
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

    /// A whole object of the table's store, `what` (for the error) being
    /// its kind: at most [`MAX_METADATA_FILE_BYTES`], refused from the
    /// size the store reports before any byte is read, and again while
    /// reading should the store send more than it said.
    async fn get(&self, path: &Path, what: &'static str) -> Result<bytes::Bytes> {
        let read_err = |e| LakeError::read(path.to_string(), e);
        let r = self.store.store.get(path).await.map_err(read_err)?;
        let too_large = |size: u64| LakeError::TooLarge {
            path: path.to_string(),
            what,
            size,
            limit: MAX_METADATA_FILE_BYTES,
        };
        if r.meta.size > MAX_METADATA_FILE_BYTES {
            return Err(too_large(r.meta.size));
        }
        let mut body = Vec::with_capacity(usize::try_from(r.meta.size).unwrap_or(0));
        let mut chunks = r.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(read_err)? {
            let size = (body.len() + chunk.len()) as u64;
            if size > MAX_METADATA_FILE_BYTES {
                return Err(too_large(size));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    /// The path in the table's store of a location the table names
    /// (`context` says where, for the error).
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
        Ok(generation_of(self.snapshot(&path, &md)?))
    }

    async fn list_units(&self) -> Result<Listing> {
        self.list(None).await
    }

    async fn list_units_pruned(&self, filter: &rulake_types::Filter) -> Result<Listing> {
        self.list(Some(filter)).await
    }

    /// By the table's current schema: no data file is read.
    async fn check_columns(&self, columns: &[String]) -> Result<()> {
        let path = self.current_metadata_path().await?;
        let md = self.load_metadata(&path).await?;
        let schema = md.current_schema();
        let at = crate::error::Location {
            object: path.to_string(),
            row_group: None,
        };
        for c in columns {
            let field = schema
                .field_by_name(c)
                .ok_or_else(|| LakeError::MissingColumn {
                    at: at.clone(),
                    column: c.clone(),
                    available: schema
                        .as_struct()
                        .fields()
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if metadata::payload_type(&field.field_type).is_none() {
                return Err(LakeError::ColumnType {
                    at: at.clone(),
                    column: c.clone(),
                    found: field.field_type.to_string(),
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
        let rows = self.files.read_object_unit(unit, dim, payload);
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
    /// The units of the current snapshot, left out what `filter`'s pruning
    /// shows no row of matches: whole data files by their manifest
    /// bounds (before their footers or delete files are read), then row
    /// groups by their footers.
    async fn list(&self, filter: Option<&rulake_types::Filter>) -> Result<Listing> {
        let path = self.current_metadata_path().await?;
        let md = self.load_metadata(&path).await?;
        let snap = self.snapshot(&path, &md)?;
        let generation = generation_of(snap);
        let Some(snap) = snap else {
            return Ok(Listing {
                generation,
                ..Listing::default()
            });
        };
        let list_loc = snap.manifest_list().to_owned();
        let manifests = self
            .manifest_list(&list_loc, path.as_ref(), md.format_version())
            .await?;
        let per_manifest = self.manifests(&manifests, &list_loc).await?;
        let mut files = self.snapshot_files(&per_manifest, &list_loc)?;
        let mut pruned = Vec::new();
        if let Some(filter) = filter {
            let fields: Vec<(String, i32)> = filter
                .columns()
                .into_iter()
                .filter_map(|c| {
                    // Top-level primitive columns only: a list's counts
                    // are its elements'.
                    let field = md.current_schema().field_by_name(c)?;
                    field
                        .field_type
                        .is_primitive()
                        .then(|| (c.to_owned(), field.id))
                })
                .collect();
            let mut kept = Vec::with_capacity(files.data.len());
            for f in files.data {
                let zone = rulake_types::ZoneMap {
                    rows: Some(f.rows),
                    columns: fields
                        .iter()
                        .filter_map(|(c, id)| Some((c.clone(), f.bounds.get(id)?.clone())))
                        .collect(),
                };
                if filter.prune(&zone) == rulake_types::Verdict::None {
                    pruned.push(Pruned {
                        key: self.resolve(&f.location, "a manifest")?.to_string(),
                        bytes: f.size,
                        file: true,
                    });
                } else {
                    kept.push(f);
                }
            }
            files.data = kept;
        }
        let id_field = id_field_id(&md, &self.config.id_column);
        let rows = self.delete_rows_of(&files, id_field).await?;
        let data = self.data_objects(&files, &rows)?;
        self.trim_caches(&[list_loc.as_str()], &manifests);
        self.trim_delete_files(&files.deletes);
        let (units, row_groups) = self
            .files
            .units_of_objects_pruned(data.objects, filter, &pruned)
            .await?;
        pruned.extend(row_groups);
        self.deletes.publish(&units, &data.deletes);
        Ok(Listing {
            generation,
            units,
            pruned,
        })
    }
}
