//! Lake access for RuLake: the only crate that talks to `object_store`,
//! `parquet` and `arrow`.
//!
//! Everything above this crate sees a lake as a [`Source`]: a generation, a
//! list of units, and a stream of `(id, vector)` rows per unit. Keeping the
//! Arrow and object-store types behind that trait means the cache, the
//! engine and the network layers never depend on a particular Arrow release,
//! and table formats (Delta, Iceberg) can be added as new sources without
//! touching them.
//!
//! # Layout
//! - [`source`] — the [`Source`] trait, [`Unit`], [`Listing`], [`RowBatch`].
//! - [`open`] — [`open_source`]: the one factory from a `SourceKind` to a source.
//! - [`parquet`] — Parquet files under an object-store prefix or glob.
//! - [`managed`] — files RuLake wrote itself, made visible by catalog commits.
//! - [`memory`] — an in-process mutable source.
//! - `delta` (feature `delta`) — Delta Lake tables: versions and file lists from
//!   `deltalake-core` → data files; `delta_store` lends it RuLake's store.
//! - `iceberg/` (feature `iceberg`) — Iceberg tables, one module per stage:
//!   `mod.rs` the source and its config; `metadata` the current metadata
//!   file and snapshot; `manifests` manifest lists and manifests (decoded by
//!   the `iceberg` crate) → data and delete files; `deletes` position and
//!   equality delete files; `sql_catalog` tables named through pyiceberg's
//!   SQL catalog in SQLite (the lookup with feature `iceberg-sql`, always
//!   off the async workers).
//! - `deletes` (either feature) — row-level deletes applied while units are read.
//! - `dv` (feature `delta`) — Delta deletion vectors: Z85, Roaring, the DV file layout.
//! - [`store`] — URL → object store, credentials from the environment.
//! - [`io`] — bytes, requests and errors per source kind, for metrics.
//! - `stats` — the lake's statistics (Parquet footers, Delta `add` stats and
//!   partition values, Iceberg bounds) as zone maps, for pruning by a filter.
//! - `payload_conv` — Arrow payload columns to [`rulake_types::Value`]s.
//! - [`writer`] — writing vectors as Parquet.
//! - [`error`] — [`LakeError`], which names file, row group and column.

mod arrow_conv;
#[cfg(any(feature = "delta", feature = "iceberg"))]
mod deletes;
#[cfg(feature = "delta")]
pub mod delta;
#[cfg(feature = "delta")]
mod delta_store;
#[cfg(any(feature = "delta", fuzzing))]
mod dv;
pub mod error;
pub mod fence;
#[cfg(feature = "iceberg")]
pub mod iceberg;
pub mod io;
pub mod managed;
pub mod memory;
pub mod open;
pub mod parquet;
mod payload_conv;
pub mod policy;
pub mod reader;
pub mod source;
mod stats;
pub mod store;
pub mod writer;

#[cfg(feature = "delta")]
pub use delta::{DeltaSource, DeltaSourceConfig};
pub use error::{LakeError, Location, Result};
#[cfg(feature = "iceberg")]
pub use iceberg::{IcebergSource, IcebergSourceConfig, SqlCatalogTable};
pub use managed::ManagedSource;
pub use memory::MemorySource;
pub use open::open_source;
pub use parquet::{ParquetSource, ParquetSourceConfig};
pub use policy::SourcePolicy;
pub use reader::ReadCounters;
pub use source::{Listing, Pruned, RowBatch, RowStream, Source, Unit};
pub use writer::{
    encode_parquet, encode_parquet_with, write_parquet_file, IdsRef, ID_COLUMN, VECTOR_COLUMN,
};

/// Read every row of every unit of a listing (for small sources, tools and
/// tests; the cache reads unit by unit instead).
pub async fn read_all(source: &dyn Source, listing: &Listing, dim: usize) -> Result<RowBatch> {
    use futures::TryStreamExt;
    let mut out = RowBatch::default();
    for unit in &listing.units {
        let mut s = source.read_unit(unit, dim);
        while let Some(b) = s.try_next().await? {
            out.ids.extend(b.ids);
            out.vectors.extend(b.vectors);
        }
    }
    Ok(out)
}

/// Entry points for the fuzz targets in `fuzz/` and the workspace's
/// `fuzz_replay` test: the decoders RuLake wrote itself. cargo-fuzz builds
/// with `--cfg fuzzing`, which compiles the deletion-vector decoder in
/// without the Delta library.
#[doc(hidden)]
pub mod fuzz {
    /// Decode a Delta deletion vector the ways a data file's vector is
    /// decoded: the first byte picks inline (Z85), stored in a file (half
    /// of those with a valid checksum, so the bitmap decoder is reached),
    /// or the relative path of a stored vector.
    #[cfg(any(feature = "delta", fuzzing))]
    pub fn delta_dv(data: &[u8]) {
        const LIMIT: usize = 1 << 16;
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        match mode % 3 {
            0 => {
                if let Ok(bytes) = std::str::from_utf8(rest)
                    .map_err(|e| e.to_string())
                    .and_then(crate::dv::z85_decode)
                {
                    let _ = crate::dv::decode(&bytes, LIMIT);
                }
            }
            1 => {
                let mut bytes = rest.to_vec();
                let len = bytes.len().saturating_sub(8);
                if mode & 0x80 != 0 && bytes.len() >= 8 {
                    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
                    let sum = crate::dv::crc32(&bytes[4..4 + len]);
                    bytes[4 + len..].copy_from_slice(&sum.to_be_bytes());
                }
                if let Ok(bitmap) = crate::dv::from_file_range(&bytes, len) {
                    let _ = crate::dv::decode(bitmap, LIMIT);
                }
            }
            _ => {
                if let Ok(s) = std::str::from_utf8(rest) {
                    let _ = crate::dv::relative_path(s);
                }
            }
        }
    }

    /// A source URL a caller names, as the source policy admits it (the
    /// first byte picks Parquet with its glob, Delta, an Iceberg SQL
    /// catalog, or a glob matched against a name): whatever the input, no
    /// panic and no recursion, and a URL the policy admits means, to the
    /// object store that opens it, a place under an allowed prefix and
    /// outside the fenced directory.
    pub fn source_url(data: &[u8]) {
        use rulake_types::{IcebergSqlCatalog, SourceKind};
        use std::sync::OnceLock;
        static POLICY: OnceLock<crate::SourcePolicy> = OnceLock::new();
        let policy = POLICY.get_or_init(|| {
            crate::SourcePolicy::new()
                .allow("file:///lake/", Default::default())
                .and_then(|p| p.allow("s3://bucket/t/", Default::default()))
                .and_then(|p| p.fence("file:///lake/secret/"))
                .expect("the fuzzing policy is valid")
        });
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let (id_column, vector_column) = (String::from("id"), String::from("v"));
        let url = text.to_owned();
        let kind = match mode % 4 {
            0 => SourceKind::Parquet {
                url,
                id_column,
                vector_column,
            },
            1 => SourceKind::Delta {
                url,
                id_column,
                vector_column,
                version: None,
            },
            2 => SourceKind::Iceberg {
                url: String::new(),
                id_column,
                vector_column,
                snapshot_id: None,
                sql_catalog: Some(IcebergSqlCatalog {
                    uri: url,
                    catalog: "c".into(),
                    namespace: "n".into(),
                    table: "t".into(),
                }),
            },
            _ => {
                let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
                if let Ok(glob) = crate::parquet::glob::Glob::new(pattern) {
                    let _ = glob.matches(name);
                }
                return;
            }
        };
        if policy.admit(&kind, &Default::default()).is_err() || mode % 4 == 2 {
            return;
        }
        let url = crate::store::to_url(text).expect("an admitted URL parses");
        let Ok(path) = object_store::path::Path::from_url_path(url.path()) else {
            return;
        };
        let p = path.as_ref();
        let under = |dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
        let inside = match url.scheme() {
            "file" => under("lake") && !under("lake/secret"),
            "s3" | "s3a" => {
                url.host_str()
                    .is_some_and(|h| h.eq_ignore_ascii_case("bucket"))
                    && under("t")
            }
            _ => false,
        };
        assert!(inside, "{text:?} was admitted, but opens {p:?}");
    }
}
