//! Lineage: from an answer's generation back to the lake objects it was
//! loaded from ([`Coordinator::describe_generation`]).
//!
//! The makeup comes from whoever loaded the generation (this process's
//! engine, or a shard node serving the collection), because only they know
//! what they read; the catalog adds what it alone knows, the tombstones.
//! Only the generation being served is described: older ones are gone from
//! every cache, and re-listing the lake would describe what is there now,
//! not what was answered from.

use crate::{Coordinator, CoordinatorError, Result};
use rulake_engine::Lineage;
use rulake_proto::v1 as pb;
use std::time::UNIX_EPOCH;

/// A lineage as the public API sends it, units grouped by object in key
/// order (tombstones 0: the catalog's count is the coordinator's to add).
pub fn lineage_message(l: &Lineage) -> pb::DescribeGenerationResponse {
    let mut objects: Vec<pb::LakeObject> = Vec::new();
    for u in &l.units {
        match objects.iter_mut().find(|o| o.path == u.object) {
            Some(o) => {
                o.rows += u.rows;
                o.row_groups.push(u.row_group as u32);
            }
            None => objects.push(pb::LakeObject {
                path: u.object.clone(),
                size_bytes: u.object_size,
                version: u.version.clone(),
                rows: u.rows,
                row_groups: vec![u.row_group as u32],
            }),
        }
    }
    pb::DescribeGenerationResponse {
        collection: l.collection.clone(),
        generation: l.generation.0.clone(),
        source_kind: l.source_kind.clone(),
        source: l.source.clone(),
        pinned_version: l.pinned.clone().unwrap_or_default(),
        rows: l.units.iter().map(|u| u.rows).sum(),
        objects,
        tombstones: 0,
        loaded_at_unix_ms: l
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    }
}

impl Coordinator {
    /// The makeup of the generation collection (or alias) `name` serves;
    /// `generation` non-empty must name that one, else `NOT_FOUND` naming
    /// the one served.
    pub async fn describe_generation(
        &self,
        name: &str,
        generation: &str,
    ) -> Result<pb::DescribeGenerationResponse> {
        let target = self.resolve(name)?;
        let mut r = match &self.inner.remote {
            Some(router) => router.lineage(&self.record(&target)?, generation).await?,
            None => lineage_message(&self.inner.engine.lineage(&target)?),
        };
        if !generation.is_empty() && r.generation != generation {
            return Err(CoordinatorError::GenerationNotServed {
                collection: target,
                asked: generation.to_owned(),
                served: r.generation,
            });
        }
        r.tombstones = self
            .catalog()
            .tombstones
            .get(&target)
            .map_or(0, |t| t.len() as u64);
        Ok(r)
    }
}
