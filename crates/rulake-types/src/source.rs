//! One description of a source, used by every layer that names one.
//!
//! The catalog stores it, the API converts the wire form into it, the lake
//! opens it: with one type (and one [`SourceKind::validate`]) the layers
//! cannot disagree on what a well-formed source is. The serde form is the
//! catalog's storage form (Raft log and snapshots), so it only ever gains
//! optional fields.

use serde::{Deserialize, Serialize};

/// Where a collection's vectors come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// Parquet files under an object-store prefix or glob.
    Parquet {
        /// `file://`, `s3://`, `gs://`, `az://` URL, prefix or glob.
        url: String,
        /// Id column.
        id_column: String,
        /// Vector column.
        vector_column: String,
    },
    /// A Delta Lake table.
    Delta {
        /// Table URL.
        url: String,
        /// Id column.
        #[serde(default)]
        id_column: String,
        /// Vector column.
        #[serde(default)]
        vector_column: String,
        /// Pinned table version (time travel); `None` follows the latest.
        #[serde(default)]
        version: Option<i64>,
    },
    /// An Iceberg table.
    Iceberg {
        /// URL of a table metadata file or table location (empty when the
        /// table is named through `sql_catalog`).
        url: String,
        /// Id column.
        #[serde(default)]
        id_column: String,
        /// Vector column.
        #[serde(default)]
        vector_column: String,
        /// Pinned snapshot; `None` follows the current snapshot.
        #[serde(default)]
        snapshot_id: Option<i64>,
        /// The table through a SQL catalog instead of `url`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sql_catalog: Option<IcebergSqlCatalog>,
    },
    /// RuLake's own write path: immutable Parquet files under a prefix it owns,
    /// made visible by commits in this catalog.
    Managed {
        /// Prefix the files are written under.
        prefix: String,
    },
}

/// An Iceberg table named through a SQL catalog (pyiceberg's `SqlCatalog`
/// over SQLite): servers read its current metadata location from the
/// catalog's `iceberg_tables` on every generation check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergSqlCatalog {
    /// `sqlite:///path/catalog.db` (SQLAlchemy form) or a file path.
    pub uri: String,
    /// Catalog name (the `catalog_name` column).
    pub catalog: String,
    /// Namespace, dot-separated.
    pub namespace: String,
    /// Table name.
    pub table: String,
}

/// Why a source description is malformed: the field at fault and what is
/// wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The field, as the API names it (`url`, `id_column`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for SourceError {}

fn required(field: &'static str, value: &str) -> Result<(), SourceError> {
    if value.trim().is_empty() {
        return Err(SourceError {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

impl SourceKind {
    /// The checks every layer relies on: where the source is, and, for
    /// Parquet, which columns hold ids and vectors. (Delta and Iceberg
    /// columns are checked when the table is opened, against its schema.)
    pub fn validate(&self) -> Result<(), SourceError> {
        match self {
            SourceKind::Parquet {
                url,
                id_column,
                vector_column,
            } => {
                required("url", url)?;
                required("id_column", id_column)?;
                required("vector_column", vector_column)?;
                if id_column == vector_column {
                    return Err(SourceError {
                        field: "vector_column",
                        reason: "must differ from id_column".into(),
                    });
                }
            }
            SourceKind::Delta { url, .. }
            | SourceKind::Iceberg {
                url,
                sql_catalog: None,
                ..
            } => required("url", url)?,
            SourceKind::Iceberg {
                sql_catalog: Some(c),
                ..
            } => {
                required("sql_catalog.uri", &c.uri)?;
                required("sql_catalog.catalog", &c.catalog)?;
                required("sql_catalog.namespace", &c.namespace)?;
                required("sql_catalog.table", &c.table)?;
            }
            SourceKind::Managed { prefix } => required("prefix", prefix)?,
        }
        Ok(())
    }

    /// The kind's name as the API and metrics spell it.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Parquet { .. } => "parquet",
            SourceKind::Delta { .. } => "delta",
            SourceKind::Iceberg { .. } => "iceberg",
            SourceKind::Managed { .. } => "managed",
        }
    }

    /// The version a collection over this source is pinned to (a Delta
    /// version, an Iceberg snapshot), if any.
    pub fn pinned(&self) -> Option<String> {
        match self {
            SourceKind::Delta {
                version: Some(v), ..
            } => Some(v.to_string()),
            SourceKind::Iceberg {
                snapshot_id: Some(s),
                ..
            } => Some(s.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field_at_fault() {
        let parquet = |url: &str, id: &str, v: &str| SourceKind::Parquet {
            url: url.into(),
            id_column: id.into(),
            vector_column: v.into(),
        };
        assert!(parquet("s3://b/p/", "id", "emb").validate().is_ok());
        assert_eq!(
            parquet(" ", "id", "emb").validate().unwrap_err().field,
            "url"
        );
        assert_eq!(
            parquet("s3://b/", "", "emb").validate().unwrap_err().field,
            "id_column"
        );
        assert_eq!(
            parquet("s3://b/", "x", "x").validate().unwrap_err().field,
            "vector_column"
        );
        let sql = SourceKind::Iceberg {
            url: String::new(),
            id_column: "id".into(),
            vector_column: "v".into(),
            snapshot_id: Some(7),
            sql_catalog: Some(IcebergSqlCatalog {
                uri: "sqlite:///c.db".into(),
                catalog: "c".into(),
                namespace: "ns".into(),
                table: String::new(),
            }),
        };
        assert_eq!(sql.validate().unwrap_err().field, "sql_catalog.table");
        assert_eq!(
            (sql.name(), sql.pinned().as_deref()),
            ("iceberg", Some("7"))
        );
    }

    #[test]
    fn the_storage_form_is_tagged_by_kind() {
        let m = SourceKind::Managed {
            prefix: "file:///m/".into(),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"kind":"managed","prefix":"file:///m/"}"#);
        assert_eq!(serde_json::from_str::<SourceKind>(&json).unwrap(), m);
    }
}
