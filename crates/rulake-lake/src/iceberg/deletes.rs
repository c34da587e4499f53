//! Iceberg row-level deletes (format v2): position and equality delete
//! files, read with RuLake's Parquet reader and applied while units are
//! read (see the crate's `deletes.rs`).
//!
//! Why applied rather than refused: a v2 table that was ever updated or
//! merged into carries delete files, and refusing them would refuse most
//! such tables. The rules are the Iceberg spec's "Scan Planning" ones:
//! position deletes apply to data files whose data sequence number is at
//! most theirs, equality deletes on the id column to data files whose
//! number is strictly lower.
//!
//! Why cached by path and named in unit versions: delete files are
//! immutable, so each is read once; the affected data files' units get
//! versions naming their delete files, so only their partitions rebuild
//! when a delete arrives.
//!
//! Correctness comes before coverage: what RuLake does not apply (v3
//! deletion vectors in Puffin files, equality deletes on another column
//! or in a partitioned spec) is an [`LakeError::Unsupported`] naming the
//! table and the file, never deleted rows served.

use super::manifests::{DataFile, SnapshotFiles};
use super::IcebergSource;
use crate::deletes::FileDeletes;
use crate::error::{LakeError, Location, Result};
use crate::reader::ObjectReader;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use rulake_types::VectorId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Delete files read concurrently.
const DELETE_FILE_CONCURRENCY: usize = 4;
/// Rows per batch when reading a delete file.
const DELETE_BATCH_ROWS: usize = 8192;

/// What a delete file deletes, read once per file.
#[derive(Debug)]
pub(super) enum DeleteRows {
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

/// The data files of a snapshot as objects to list, and the delete set of
/// each object that has one.
pub(super) struct DataObjects {
    pub objects: Vec<ObjectMeta>,
    pub deletes: HashMap<String, Arc<FileDeletes>>,
}

/// The value at row `i` of a string column of any width, `None` when
/// null or not a string column.
fn string_at(col: &ArrayRef, i: usize) -> Option<&str> {
    if col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_string_opt::<i32>() {
        return Some(a.value(i));
    }
    if let Some(a) = col.as_string_opt::<i64>() {
        return Some(a.value(i));
    }
    col.as_string_view_opt().map(|a| a.value(i))
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

    /// Check and read every delete file of a snapshot (in the order of
    /// `files.deletes`); `id_field` is the id column's field id.
    pub(super) async fn delete_rows_of(
        &self,
        files: &SnapshotFiles<'_>,
        id_field: Option<i64>,
    ) -> Result<Vec<Arc<DeleteRows>>> {
        for d in &files.deletes {
            self.check_delete_file(d, id_field)?;
        }
        let live: HashSet<&str> = files.data.iter().map(|f| f.location.as_str()).collect();
        let live = &live;
        // Owned items, as for manifests: the listing future must be `Send`.
        let owned: Vec<DataFile> = files.deletes.iter().map(|d| (*d).clone()).collect();
        let rows: Vec<Arc<DeleteRows>> = futures::stream::iter(owned)
            .map(|d| async move { self.delete_rows(&d, live).await })
            .buffered(DELETE_FILE_CONCURRENCY)
            .try_collect()
            .await?;
        crate::deletes::check_total(&self.table(), rows.iter().map(|r| r.len()).sum())?;
        Ok(rows)
    }

    /// Read a delete file (cached by location): the positions it deletes
    /// in the live data files, or the ids.
    async fn delete_rows(&self, d: &DataFile, live: &HashSet<&str>) -> Result<Arc<DeleteRows>> {
        if let Some(r) = self.delete_files.lock().get(&d.location) {
            return Ok(r.clone());
        }
        let mut stream = self.open_delete_file(d).await?;
        let mut positions: HashMap<String, Vec<u64>> = HashMap::new();
        let mut ids = HashSet::new();
        let mut count = 0usize;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(|e| self.delete_file_err(&d.location, e))?
        {
            count += batch.num_rows();
            crate::deletes::check_total(&self.table(), count)?;
            if d.content == 2 {
                self.read_ids(d, &batch, count - batch.num_rows(), &mut ids)?;
            } else {
                self.read_positions(&d.location, &batch, live, &mut positions)?;
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

    /// A delete file's batches: `file_path` and `pos` of a position
    /// delete, the id column of an equality delete.
    async fn open_delete_file(
        &self,
        d: &DataFile,
    ) -> Result<ParquetRecordBatchStream<ObjectReader>> {
        let file = d.location.as_str();
        let reader = ObjectReader {
            store: self.store.store.clone(),
            path: self.resolve(file, "a delete manifest")?,
            size: d.size,
            counters: Arc::default(),
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| self.delete_file_err(file, e))?;
        let schema = builder.schema().clone();
        let columns: Vec<&str> = if d.content == 1 {
            vec!["file_path", "pos"]
        } else {
            vec![self.config.id_column.as_str()]
        };
        let mut idx = Vec::new();
        for c in &columns {
            idx.push(
                schema
                    .index_of(c)
                    .map_err(|_| self.meta_err(file, format!("delete file has no column {c:?}")))?,
            );
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
        builder
            .with_projection(mask)
            .with_batch_size(DELETE_BATCH_ROWS)
            .build()
            .map_err(|e| self.delete_file_err(file, e))
    }

    /// A delete file that cannot be read: vanished, or not what its
    /// manifest says.
    fn delete_file_err(&self, file: &str, e: ParquetError) -> LakeError {
        if crate::parquet::is_vanished(&e) {
            LakeError::Vanished {
                path: file.to_owned(),
            }
        } else if let Some(too_large) = crate::parquet::footer_too_large(&e, file) {
            too_large
        } else {
            self.meta_err(file, format!("delete file: {e}"))
        }
    }

    /// Add the ids of one equality delete batch; `row_base` is the row of
    /// the file the batch starts at.
    fn read_ids(
        &self,
        d: &DataFile,
        batch: &RecordBatch,
        row_base: usize,
        ids: &mut HashSet<VectorId>,
    ) -> Result<()> {
        let column = &self.config.id_column;
        let at = Location {
            object: d.location.clone(),
            row_group: None,
        };
        let col = batch
            .column_by_name(column)
            .ok_or_else(|| self.meta_err(&d.location, "id column missing from a batch"))?;
        ids.extend(crate::arrow_conv::ids_from_array(
            col, &at, column, row_base,
        )?);
        Ok(())
    }

    /// Add the positions of one position delete batch that fall in live
    /// data files (deletes of files no longer in the table are dropped).
    fn read_positions(
        &self,
        file: &str,
        batch: &RecordBatch,
        live: &HashSet<&str>,
        positions: &mut HashMap<String, Vec<u64>>,
    ) -> Result<()> {
        let (Some(paths), Some(pos)) = (
            batch.column_by_name("file_path"),
            batch.column_by_name("pos"),
        ) else {
            return Err(self.meta_err(file, "position delete batch without file_path/pos"));
        };
        let pos = pos
            .as_primitive_opt::<arrow_array::types::Int64Type>()
            .ok_or_else(|| self.meta_err(file, "pos is not a long column"))?;
        for i in 0..batch.num_rows() {
            let p = string_at(paths, i).ok_or_else(|| {
                self.meta_err(file, format!("row {i}: file_path null or not a string"))
            })?;
            if pos.is_null(i) || pos.value(i) < 0 {
                return Err(self.meta_err(file, format!("row {i}: pos null or negative")));
            }
            if live.contains(p) {
                positions
                    .entry(p.to_owned())
                    .or_default()
                    .push(pos.value(i) as u64);
            }
        }
        Ok(())
    }

    /// The data files as objects to list: immutable, so the path names the
    /// content and the e-tag names the delete files that apply.
    pub(super) fn data_objects(
        &self,
        files: &SnapshotFiles<'_>,
        rows: &[Arc<DeleteRows>],
    ) -> Result<DataObjects> {
        let mut objects = Vec::with_capacity(files.data.len());
        let mut by_object = HashMap::new();
        for f in &files.data {
            let location = self.resolve(&f.location, "a manifest")?;
            let deletes = deletes_of(f, &files.deletes, rows);
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
        Ok(DataObjects {
            objects,
            deletes: by_object,
        })
    }

    /// Forget decoded delete files the newest snapshot no longer has.
    pub(super) fn trim_delete_files(&self, keep: &[&DataFile]) {
        let live: HashSet<&str> = keep.iter().map(|d| d.location.as_str()).collect();
        self.delete_files
            .lock()
            .retain(|k, _| live.contains(k.as_str()));
    }
}
