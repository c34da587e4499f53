//! Iceberg table metadata: which metadata file is current, its parsed
//! contents, and the snapshot to serve.
//!
//! Why three ways to find the current file: a metadata file URL
//! (`…/metadata/00002-….metadata.json`) is a static table and never moves;
//! a table location is followed through `metadata/version-hint.text` or,
//! failing that, the highest numbered `*.metadata.json` (what file-system
//! catalogs and pyiceberg's SQL catalog write); a table in a SQL catalog
//! is followed through the catalog row (see `sql_catalog.rs`), because
//! there the catalog, not the file names, is the source of truth.
//!
//! Metadata files are immutable once written, so parsed files are cached
//! by path. The generation is the snapshot id: a new snapshot is exactly
//! a change of the table's rows.

use super::{sql_catalog, IcebergSource};
use crate::error::{LakeError, Result};
use ::iceberg::spec::{SnapshotRef, TableMetadata};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;
use rulake_types::Generation;
use std::sync::Arc;

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

/// The generation of a snapshot (`None`: the table has none yet).
pub(super) fn generation_of(snapshot: Option<&SnapshotRef>) -> Generation {
    match snapshot {
        Some(s) => Generation(format!("iceberg-{}", s.snapshot_id())),
        None => Generation("iceberg-empty".into()),
    }
}

/// The field id of column `name` in the table's current schema.
pub(super) fn id_field_id(md: &TableMetadata, name: &str) -> Option<i64> {
    md.current_schema()
        .field_by_name(name)
        .map(|f| i64::from(f.id))
}

/// The payload type of an Iceberg column type (`None`: not one RuLake
/// keeps).
pub(super) fn payload_type(t: &::iceberg::spec::Type) -> Option<rulake_types::ColumnType> {
    use ::iceberg::spec::{PrimitiveType as P, Type};
    use rulake_types::ColumnType;
    Some(match t {
        Type::Primitive(p) => match p {
            P::Boolean => ColumnType::Bool,
            P::Int | P::Long => ColumnType::Int,
            P::Float | P::Double => ColumnType::Float,
            P::String => ColumnType::String,
            P::Date => ColumnType::Date,
            P::Timestamp | P::Timestamptz | P::TimestampNs | P::TimestamptzNs => {
                ColumnType::Timestamp
            }
            _ => return None,
        },
        Type::List(l) if matches!(*l.element_field.field_type, Type::Primitive(P::String)) => {
            ColumnType::StringList
        }
        _ => return None,
    })
}

impl IcebergSource {
    /// The newest metadata file of the table.
    pub(super) async fn current_metadata_path(&self) -> Result<Path> {
        if let Some(p) = &self.static_metadata {
            return Ok(p.clone());
        }
        if let Some(c) = &self.config.catalog {
            let loc = sql_catalog::lookup(c, self.table()).await?;
            return self.resolve(&loc, "the SQL catalog");
        }
        let dir = self.store.path.clone().join("metadata");
        match self.version_hint(&dir).await? {
            Some(p) => Ok(p),
            None => self.newest_metadata_file(&dir).await,
        }
    }

    /// The metadata file `metadata/version-hint.text` names, or `None`
    /// when the table has no hint.
    async fn version_hint(&self, dir: &Path) -> Result<Option<Path>> {
        let hint_path = dir.clone().join("version-hint.text");
        match self.get(&hint_path, "Iceberg version hint").await {
            Ok(hint) => {
                let v = String::from_utf8_lossy(&hint).trim().to_owned();
                if v.parse::<u64>().is_ok() {
                    return Ok(Some(dir.clone().join(format!("v{v}.metadata.json"))));
                }
                Err(self.meta_err(hint_path.as_ref(), format!("not a version number: {v:?}")))
            }
            Err(LakeError::Vanished { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The highest numbered `*.metadata.json` under `dir`.
    async fn newest_metadata_file(&self, dir: &Path) -> Result<Path> {
        let objects: Vec<ObjectMeta> = self
            .store
            .store
            .list(Some(dir))
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

    /// Parse a metadata file (cached by path).
    pub(super) async fn load_metadata(&self, path: &Path) -> Result<Arc<TableMetadata>> {
        if let Some(m) = self.metadata.lock().get(path) {
            return Ok(m.clone());
        }
        let body = self
            .get(path, "Iceberg metadata file")
            .await
            .map_err(|e| match e {
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
    pub(super) fn snapshot<'a>(
        &self,
        file: &Path,
        md: &'a TableMetadata,
    ) -> Result<Option<&'a SnapshotRef>> {
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
