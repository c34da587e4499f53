//! Iceberg manifest lists and manifests: a snapshot's data and delete
//! files.
//!
//! Why decoded here into RuLake's own small structs: the `iceberg` crate
//! decodes the Avro, but its types stay in this module; what leaves it is
//! paths, sizes, content kinds, sequence numbers and field ids, the only
//! facts the listing and the delete rules need, and each data file's
//! bounds as zones (for pruning by a filter).
//!
//! Why cached by path: manifest lists and manifests are immutable once
//! written, and an append adds a manifest rather than rewriting one, so a
//! refresh after an append decodes only the new ones. Entries no longer
//! referenced by the newest snapshot are forgotten at each listing, which
//! bounds the caches over a long-lived table.

use super::avro::{self, AvroCheck, MAX_AVRO_INFLATED_BYTES};
use super::IcebergSource;
use crate::error::{LakeError, Result};
use ::iceberg::spec::{
    DataContentType, DataFileFormat, Datum, FormatVersion, Manifest, ManifestContentType,
    ManifestEntry, ManifestList, ManifestStatus,
};
use futures::{StreamExt, TryStreamExt};
use rulake_types::{ColumnType, ColumnZone, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Manifests fetched concurrently.
const MANIFEST_CONCURRENCY: usize = 8;

/// One data or delete file of a snapshot.
#[derive(Clone, Debug)]
pub(super) struct DataFile {
    pub location: String,
    pub size: u64,
    /// 0 data, 1 position deletes, 2 equality deletes.
    pub content: i64,
    /// Data sequence number (inherited from the manifest when null).
    pub seq: i64,
    /// `PARQUET`, `PUFFIN`, ...
    pub format: String,
    /// Field ids of an equality delete.
    pub equality_ids: Vec<i64>,
    /// True when the file's partition tuple has fields.
    pub partitioned: bool,
    /// Rows in the file (deletes not applied).
    pub rows: u64,
    /// Field id → what the manifest says of the column in this file.
    pub bounds: HashMap<i32, ColumnZone>,
}

/// A manifest list entry.
#[derive(Clone, Debug)]
pub(super) struct ManifestRef {
    pub path: String,
    /// 0 data, 1 deletes.
    pub content: i64,
    /// The manifest's sequence number (what null entry numbers inherit).
    pub sequence_number: i64,
}

/// The live data and delete files of one snapshot, borrowed from the
/// decoded manifests.
pub(super) struct SnapshotFiles<'a> {
    /// Data files, each once, in manifest order.
    pub data: Vec<&'a DataFile>,
    /// Position and equality delete files.
    pub deletes: Vec<&'a DataFile>,
}

/// A manifest entry as RuLake's [`DataFile`]; `inherited_seq` is the
/// manifest's sequence number.
fn data_file(entry: &ManifestEntry, inherited_seq: i64) -> DataFile {
    let df = entry.data_file();
    let content = match df.content_type() {
        DataContentType::Data => 0,
        DataContentType::PositionDeletes => 1,
        DataContentType::EqualityDeletes => 2,
    };
    let format = match df.file_format() {
        DataFileFormat::Parquet => "PARQUET",
        DataFileFormat::Puffin => "PUFFIN",
        DataFileFormat::Avro => "AVRO",
        DataFileFormat::Orc => "ORC",
    };
    DataFile {
        location: df.file_path().to_owned(),
        size: df.file_size_in_bytes(),
        content,
        // Null numbers inherit the manifest's (only added entries may have
        // them); v1 tables have none and read as 0.
        seq: entry.sequence_number().unwrap_or(inherited_seq),
        format: format.to_owned(),
        equality_ids: df
            .equality_ids()
            .unwrap_or_default()
            .into_iter()
            .map(i64::from)
            .collect(),
        partitioned: !df.partition().fields().is_empty(),
        rows: df.record_count(),
        bounds: bounds(df),
    }
}

/// A data file's lower and upper bounds and null counts as zones, by
/// field id. The spec promises bounds, not values (strings are
/// truncated), so none is exact; a bound of a type RuLake does not keep
/// is left out.
fn bounds(df: &::iceberg::spec::DataFile) -> HashMap<i32, ColumnZone> {
    let mut out: HashMap<i32, ColumnZone> = HashMap::new();
    for (&id, &n) in df.null_value_counts() {
        out.entry(id).or_default().nulls = Some(n);
    }
    for (&id, lower) in df.lower_bounds() {
        let (Some((ty, lo)), Some((_, hi))) = (
            datum_value(lower),
            df.upper_bounds().get(&id).and_then(datum_value),
        ) else {
            continue;
        };
        let z = out.entry(id).or_default();
        z.ty = Some(ty);
        z.min = Some(lo);
        z.max = Some(hi);
    }
    out
}

/// A bound as a payload value of its column's type (timestamps in
/// microseconds, as the Parquet reader reads the column).
fn datum_value(d: &Datum) -> Option<(ColumnType, Value)> {
    use ::iceberg::spec::{PrimitiveLiteral as L, PrimitiveType as T};
    Some(match (d.data_type(), d.literal()) {
        (T::Boolean, L::Boolean(b)) => (ColumnType::Bool, Value::Bool(*b)),
        (T::Int, L::Int(i)) => (ColumnType::Int, Value::Int(i64::from(*i))),
        (T::Long, L::Long(i)) => (ColumnType::Int, Value::Int(*i)),
        (T::Float, L::Float(f)) => (ColumnType::Float, Value::Float(f64::from(f.0))),
        (T::Double, L::Double(f)) => (ColumnType::Float, Value::Float(f.0)),
        (T::Date, L::Int(d)) => (ColumnType::Date, Value::Date(*d)),
        (T::Timestamp | T::Timestamptz, L::Long(t)) => {
            (ColumnType::Timestamp, Value::Timestamp(*t))
        }
        (T::TimestampNs | T::TimestamptzNs, L::Long(t)) => {
            (ColumnType::Timestamp, Value::Timestamp(*t / 1_000))
        }
        (T::String, L::String(s)) => (ColumnType::String, Value::String(s.clone())),
        _ => return None,
    })
}

impl IcebergSource {
    /// The bytes of a manifest list or manifest (`what`) named by
    /// `context`, checked to inflate to at most [`MAX_AVRO_INFLATED_BYTES`].
    async fn metadata_file(
        &self,
        location: &str,
        context: &str,
        what: &'static str,
    ) -> Result<bytes::Bytes> {
        let path = self.resolve(location, context)?;
        let body = self.get(&path, what).await.map_err(|e| match e {
            LakeError::Vanished { path } => {
                self.meta_err(&path, format!("named by {context} but missing"))
            }
            e => e,
        })?;
        match avro::inflated_size(&body, MAX_AVRO_INFLATED_BYTES) {
            Ok(_) => Ok(body),
            Err(AvroCheck::TooLarge(size)) => Err(LakeError::TooLarge {
                path: location.to_owned(),
                what: "inflated Avro file",
                size,
                limit: MAX_AVRO_INFLATED_BYTES,
            }),
            Err(AvroCheck::Invalid(reason)) => Err(self.meta_err(location, reason)),
        }
    }

    /// The manifests a manifest list names (cached by location); `metadata`
    /// is the metadata file that named the list.
    pub(super) async fn manifest_list(
        &self,
        location: &str,
        metadata: &str,
        version: FormatVersion,
    ) -> Result<Arc<Vec<ManifestRef>>> {
        if let Some(l) = self.manifest_lists.lock().get(location) {
            return Ok(l.clone());
        }
        let body = self
            .metadata_file(location, metadata, "Iceberg manifest list")
            .await?;
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

    /// The files a manifest lists, without those it marks deleted (cached
    /// by location); `list` is the manifest list that named it.
    async fn manifest(&self, m: &ManifestRef, list: &str) -> Result<Arc<Vec<DataFile>>> {
        if let Some(f) = self.manifests.lock().get(&m.path) {
            return Ok(f.clone());
        }
        let body = self
            .metadata_file(&m.path, list, "Iceberg manifest")
            .await?;
        let manifest = Manifest::parse_avro(&body)
            .map_err(|e| self.meta_err(&m.path, format!("manifest: {e}")))?;
        let mut out = Vec::new();
        for entry in manifest.entries() {
            // DELETED: the file left the table in this snapshot.
            if entry.status() == ManifestStatus::Deleted {
                continue;
            }
            let f = data_file(entry, m.sequence_number);
            if m.content != 0 && f.content == 0 {
                return Err(self.meta_err(&m.path, "a data file in a delete manifest"));
            }
            out.push(f);
        }
        let out = Arc::new(out);
        self.manifests.lock().insert(m.path.clone(), out.clone());
        Ok(out)
    }

    /// Every manifest of a snapshot, fetched concurrently, in list order.
    pub(super) async fn manifests(
        &self,
        manifests: &[ManifestRef],
        list: &str,
    ) -> Result<Vec<Arc<Vec<DataFile>>>> {
        // Owned items: a closure taking a borrowed item would make the
        // listing future not `Send` (a higher-ranked lifetime in the
        // closure), which `Source` requires.
        futures::stream::iter(manifests.to_vec())
            .map(|m| async move { self.manifest(&m, list).await })
            .buffered(MANIFEST_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Split the files of a snapshot's manifests into data files (each
    /// once; Parquet only) and delete files. `list` is the manifest list.
    pub(super) fn snapshot_files<'a>(
        &self,
        per_manifest: &'a [Arc<Vec<DataFile>>],
        list: &str,
    ) -> Result<SnapshotFiles<'a>> {
        let mut data = Vec::new();
        let mut deletes = Vec::new();
        let mut seen = HashSet::new();
        for f in per_manifest.iter().flat_map(|files| files.iter()) {
            match f.content {
                0 => {
                    if f.format != "PARQUET" {
                        return Err(LakeError::Unsupported {
                            table: self.table(),
                            feature: format!("{} data files", f.format),
                            detail: format!("{}: RuLake reads Parquet data files only", f.location),
                        });
                    }
                    if seen.insert(f.location.clone()) {
                        data.push(f);
                    }
                }
                1 | 2 => deletes.push(f),
                other => {
                    return Err(self.meta_err(
                        list,
                        format!("{}: unknown content type {other}", f.location),
                    ))
                }
            }
        }
        Ok(SnapshotFiles { data, deletes })
    }

    /// Forget cached manifests no longer referenced (bounded memory over a
    /// long-lived table).
    pub(super) fn trim_caches(&self, keep_lists: &[&str], keep: &[ManifestRef]) {
        self.manifest_lists
            .lock()
            .retain(|k, _| keep_lists.contains(&k.as_str()));
        let live: HashSet<&str> = keep.iter().map(|m| m.path.as_str()).collect();
        self.manifests
            .lock()
            .retain(|k, _| live.contains(k.as_str()));
        let mut md = self.metadata.lock();
        if md.len() > 4 {
            md.clear();
        }
    }
}
