//! What a served generation is made of: the source, its version and the
//! lake objects (with sizes and versions) whose rows the partitions hold,
//! so an answer's generation can be traced back to files in the lake.
//!
//! Read from the listing the generation was loaded from, never from the
//! lake again: the lake may have moved on, and the question is what was
//! loaded, not what is there now.

use crate::{EngineError, Result, RuLake};
use rulake_lake::Unit;
use rulake_types::Generation;
use std::time::SystemTime;

/// The makeup of the generation a collection serves.
#[derive(Clone, Debug)]
pub struct Lineage {
    /// The collection.
    pub collection: String,
    /// The generation served.
    pub generation: Generation,
    /// The source's kind (`parquet`, `delta`, `iceberg`, `managed`, ...).
    pub source_kind: String,
    /// The source's address.
    pub source: String,
    /// The version the collection is pinned to (time travel), if any.
    pub pinned: Option<String>,
    /// The units loaded, sorted by key: object, row group, rows, object
    /// size and version (e-tag, or the file's deletion-vector tag).
    pub units: Vec<Unit>,
    /// When the generation was swapped in.
    pub loaded_at: SystemTime,
}

impl RuLake {
    /// The makeup of the generation `name` serves; `FAILED_PRECONDITION`
    /// before the first generation is loaded.
    pub fn lineage(&self, name: &str) -> Result<Lineage> {
        let c = self.collection(name)?;
        let serving = c.serving.read().clone();
        let Some(s) = serving else {
            return Err(EngineError::FailedPrecondition(format!(
                "collection {name:?} serves no generation yet"
            )));
        };
        Ok(Lineage {
            collection: name.to_owned(),
            generation: s.listing.generation,
            source_kind: c.source.kind().to_owned(),
            source: c.source.describe(),
            pinned: c.spec.pin.clone(),
            units: s.listing.units,
            loaded_at: s.loaded_at,
        })
    }
}
