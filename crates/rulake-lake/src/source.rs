//! The contract between RuLake and any place vectors live.
//!
//! A source is described by three questions: what version are you
//! ([`Source::generation`], cheap, asked before `fresh` queries), what are
//! your units ([`Source::list_units`], may read file footers), and what rows
//! does one unit hold ([`Source::read_unit`], streamed in bounded batches).
//! A *unit* is the smallest piece a source can hand over independently: a
//! Parquet row group, a bucket of the memory source. Units are placed on
//! partitions by a stable hash of their key, so a node reads only its share.

use crate::error::Result;
use async_trait::async_trait;
use futures::stream::BoxStream;
use rulake_types::{Generation, VectorId};

/// One independently readable piece of a source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    /// Stable key, unique within the source (`path#row_group`).
    pub key: String,
    /// Object path, for errors and reading.
    pub object: String,
    /// Row group inside the object (0 for sources without row groups).
    pub row_group: usize,
    /// Number of rows the unit holds, used for admission control.
    pub rows: u64,
    /// Size in bytes of the object holding the unit (0 when not an object).
    pub object_size: u64,
    /// Changes when the unit's content changes (e-tag, size, bucket version).
    pub version: String,
}

/// A consistent view of a source at one generation.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// The generation this listing describes.
    pub generation: Generation,
    /// The units, sorted by key.
    pub units: Vec<Unit>,
    /// What a filter's pruning left out of `units`
    /// ([`Source::list_units_pruned`]); empty otherwise.
    pub pruned: Vec<Pruned>,
}

/// A file or row group left out of a listing because its statistics show
/// that no row of it matches the filter: it is never read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pruned {
    /// The unit key it would have had (`path#row_group`), or the file's
    /// path when the whole file was left out before its footer was read.
    pub key: String,
    /// Bytes not read: the file's size, or the row group's compressed size.
    pub bytes: u64,
    /// True for a whole file (pruned by table metadata: Delta `add`
    /// statistics and partition values, Iceberg manifest bounds), false
    /// for a row group (pruned by its footer statistics).
    pub file: bool,
}

impl Listing {
    /// Total rows over all units.
    pub fn rows(&self) -> u64 {
        self.units.iter().map(|u| u.rows).sum()
    }
}

/// A bounded batch of rows read from one unit.
#[derive(Clone, Debug, Default)]
pub struct RowBatch {
    /// Row ids, one per vector.
    pub ids: Vec<VectorId>,
    /// Row-major vectors, `ids.len() * dim` values, all finite.
    pub vectors: Vec<f32>,
    /// The payload columns asked for ([`Source::read_unit_columns`]), in
    /// the order asked, one value per row each.
    pub payload: Vec<rulake_types::Column>,
}

impl RowBatch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// True when the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Stream of row batches of one unit.
pub type RowStream = BoxStream<'static, Result<RowBatch>>;

/// Anything RuLake can load vectors from.
#[async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Source kind (`parquet`, `memory`, ...), for metrics and errors.
    fn kind(&self) -> &'static str;

    /// Human-readable address (URL) of the source.
    fn describe(&self) -> String;

    /// The current generation. Cheap: no file contents are read.
    async fn generation(&self) -> Result<Generation>;

    /// The units of the current generation, with their row counts.
    async fn list_units(&self) -> Result<Listing>;

    /// The units of the current generation that rows matching `filter`
    /// may lie in: files and row groups whose statistics show that none
    /// of their rows match are left out ([`Listing::pruned`]) and never
    /// read. Pruning never leaves out a matching row; the rows of the
    /// units kept still have to be filtered. Sources without statistics
    /// list every unit.
    async fn list_units_pruned(&self, filter: &rulake_types::Filter) -> Result<Listing> {
        let _ = filter;
        self.list_units().await
    }

    /// Check that the source's schema has every one of `columns`, each of
    /// a type RuLake keeps as payload ([`crate::LakeError::MissingColumn`],
    /// [`crate::LakeError::ColumnType`] naming it otherwise), reading as
    /// little as the format allows: the footer of one Parquet file, a
    /// Delta table's schema, an Iceberg table's current schema. A source
    /// with no data yet passes. Sources without a schema (memory,
    /// managed) pass too: they refuse payload columns when read.
    async fn check_columns(&self, columns: &[String]) -> Result<()> {
        let _ = columns;
        Ok(())
    }

    /// Stream the `(id, vector)` rows of one unit, checking every vector
    /// against `dim`, in batches of bounded size.
    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream;

    /// [`Source::read_unit`] with the `payload` columns of every row
    /// ([`RowBatch::payload`]). Sources that hold no payload columns
    /// (the memory and managed sources) refuse any.
    fn read_unit_columns(&self, unit: &Unit, dim: usize, payload: &[String]) -> RowStream {
        if payload.is_empty() {
            return self.read_unit(unit, dim);
        }
        let e = crate::LakeError::Unsupported {
            table: self.describe(),
            feature: "payload columns".into(),
            detail: format!(
                "{} sources hold only ids and vectors (asked for {})",
                self.kind(),
                payload.join(", ")
            ),
        };
        futures::StreamExt::boxed(futures::stream::once(async move { Err(e) }))
    }

    /// The same source frozen at one version (time travel): a Delta table
    /// version, an Iceberg snapshot id. Sources without versions refuse.
    fn pinned(&self, version: &str) -> Result<std::sync::Arc<dyn Source>> {
        Err(crate::LakeError::Unsupported {
            table: self.describe(),
            feature: "pinning a version".into(),
            detail: format!(
                "{} sources have no versions to pin (asked for {version:?})",
                self.kind()
            ),
        })
    }
}
