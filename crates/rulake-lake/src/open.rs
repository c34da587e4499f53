//! The one factory from a source description to an open source.
//!
//! The catalog, the coordinator, the shard role and `rulake query` all hold
//! a [`SourceKind`]; only this function knows which lake type reads each
//! kind and what it needs beyond the description (columns to read, options
//! passed to `object_store`). A kind this build does not read (a server
//! built without the `delta` or `iceberg` feature) is refused here, with
//! the feature named, instead of wherever a source happens to be opened.
//! It is also where the installed [`crate::policy`] admits a source and
//! adds the server's own options for its prefix, so no path opens a source
//! around the policy.

use crate::error::{LakeError, Result};
use crate::{ManagedSource, ParquetSource, ParquetSourceConfig, Source};
use rulake_types::SourceKind;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Open the source `kind` describes with object-store `options` (no I/O
/// beyond what the kind's `open` does: a Delta or Iceberg table reads its
/// metadata on first use). With a policy installed, the source must be
/// admitted by it ([`LakeError::Denied`] otherwise) and opens with the
/// options the policy gives.
pub fn open_source(
    kind: &SourceKind,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn Source>> {
    kind.validate()
        .map_err(|e| LakeError::Invalid(e.to_string()))?;
    let options: Vec<(String, String)> = match crate::policy::installed() {
        Some(policy) => policy.admit(kind, options)?.options,
        None => options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    match kind {
        SourceKind::Parquet {
            url,
            id_column,
            vector_column,
        } => Ok(Arc::new(ParquetSource::open(ParquetSourceConfig {
            url: url.clone(),
            id_column: id_column.clone(),
            vector_column: vector_column.clone(),
            options,
        })?)),
        #[cfg(feature = "delta")]
        SourceKind::Delta {
            url,
            id_column,
            vector_column,
            ..
        } => {
            columns(id_column, vector_column)?;
            let mut config = crate::DeltaSourceConfig::new(url, id_column, vector_column);
            config.options = options;
            Ok(Arc::new(crate::DeltaSource::open(config)?))
        }
        #[cfg(feature = "iceberg")]
        SourceKind::Iceberg {
            url,
            id_column,
            vector_column,
            sql_catalog,
            ..
        } => {
            columns(id_column, vector_column)?;
            let mut config = match sql_catalog {
                Some(c) => {
                    crate::IcebergSourceConfig::sql_catalog(c.clone(), id_column, vector_column)
                }
                None => crate::IcebergSourceConfig::new(url, id_column, vector_column),
            };
            config.options = options;
            Ok(Arc::new(crate::IcebergSource::open(config)?))
        }
        #[allow(unreachable_patterns)]
        SourceKind::Delta { .. } | SourceKind::Iceberg { .. } => {
            Err(LakeError::NotBuilt { kind: kind.name() })
        }
        SourceKind::Managed { prefix } => Ok(Arc::new(ManagedSource::open(prefix, &options)?)),
    }
}

/// Table formats carry their own schema, so their column names are only
/// checked for presence here; the table's schema checks the rest on read.
#[cfg(any(feature = "delta", feature = "iceberg"))]
fn columns(id: &str, vector: &str) -> Result<()> {
    if id.is_empty() || vector.is_empty() {
        return Err(LakeError::Invalid(
            "id_column and vector_column are required".into(),
        ));
    }
    Ok(())
}
