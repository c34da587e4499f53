//! Row-level deletes of table formats (Iceberg delete files, Delta deletion
//! vectors), applied while a unit is read.
//!
//! Why at read time and per data file: a delete names rows of particular
//! data files, so only the units of those files change. The listing gives
//! such a unit a version that names its delete set (`+del-<digest>`), so the
//! partition cache rebuilds exactly the partitions whose files got a new
//! delete and leaves the others alone. The delete sets themselves are kept
//! for the newest two listings, so a build still reading the previous
//! listing finds its own deletes; a unit whose deletes are gone is an error,
//! never rows served without them.

use crate::error::{LakeError, Result};
use crate::source::{RowBatch, RowStream, Unit};
use futures::StreamExt;
use parking_lot::Mutex;
use rulake_types::VectorId;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Marker in an object version (and so a unit version) whose rows are
/// filtered by a delete set.
pub(crate) const DELETE_MARKER: &str = "+del-";

/// Most deleted rows (positions plus ids) one table may carry: deletes are
/// held in memory while a table is served, so a table past this is refused
/// with a clear error rather than exhausting the node.
pub(crate) const MAX_DELETED_ROWS: usize = 50_000_000;

/// The rows of one data file that a snapshot deletes.
#[derive(Debug, Default)]
pub(crate) struct FileDeletes {
    /// Deleted row positions in the file (0-based), sorted, no duplicates.
    pub positions: Vec<u64>,
    /// Deleted ids (equality deletes on the id column), shared between the
    /// data files a delete file applies to.
    pub ids: Vec<Arc<HashSet<VectorId>>>,
    /// Names what the deletes are (the delete files or vector ids), so a
    /// changed delete set gives the unit a new version.
    pub digest: String,
}

impl FileDeletes {
    /// A delete set from positions and ids; `what` identifies its sources
    /// (delete file paths, deletion-vector ids) for the digest.
    pub fn new(mut positions: Vec<u64>, ids: Vec<Arc<HashSet<VectorId>>>, what: &[String]) -> Self {
        positions.sort_unstable();
        positions.dedup();
        let mut h = Sha256::new();
        let mut what = what.to_vec();
        what.sort();
        for w in &what {
            h.update(w.as_bytes());
            h.update([0]);
        }
        let d = h.finalize();
        let digest = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        FileDeletes {
            positions,
            ids,
            digest,
        }
    }

    /// True when nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.ids.iter().all(|s| s.is_empty())
    }

    /// The e-tag of a data file with these deletes: `base` plus the marker.
    pub fn e_tag(&self, base: &str) -> String {
        format!("{base}{DELETE_MARKER}{}", self.digest)
    }

    fn deleted(&self, position: u64, id: &VectorId) -> bool {
        self.positions.binary_search(&position).is_ok() || self.ids.iter().any(|s| s.contains(id))
    }
}

/// Delete sets by (object path, object version) for the newest two
/// listings.
#[derive(Debug, Default)]
pub(crate) struct DeleteRegistry {
    /// (newest listing, the one before it).
    inner: Mutex<(DeleteSets, DeleteSets)>,
}

type DeleteSets = HashMap<String, Arc<FileDeletes>>;

fn key(object: &str, version: &str) -> String {
    format!("{object}\u{0}{version}")
}

impl DeleteRegistry {
    /// Publish the delete sets of a new listing, keyed by unit object and
    /// version; the previous listing's stay readable.
    pub fn publish(&self, units: &[Unit], by_object: &HashMap<String, Arc<FileDeletes>>) {
        let mut next = HashMap::new();
        for u in units {
            if let Some(d) = by_object.get(&u.object) {
                next.insert(key(&u.object, &u.version), d.clone());
            }
        }
        let mut g = self.inner.lock();
        let current = std::mem::take(&mut g.0);
        *g = (next, current);
    }

    /// Wrap the rows of `unit` so deleted rows are dropped. `first_row` is
    /// the position in the file of the unit's first row.
    pub fn apply(
        &self,
        unit: &Unit,
        first_row: Option<u64>,
        dim: usize,
        rows: RowStream,
    ) -> RowStream {
        if !unit.version.contains(DELETE_MARKER) {
            return rows;
        }
        let k = key(&unit.object, &unit.version);
        let found = {
            let g = self.inner.lock();
            g.0.get(&k).or_else(|| g.1.get(&k)).cloned()
        };
        let (deletes, first_row) = match (found, first_row) {
            (Some(d), Some(f)) => (d, f),
            _ => {
                let e = LakeError::Invalid(format!(
                    "{}: the deletes of this unit are no longer known (the table changed twice while it was read); refresh again",
                    unit.key
                ));
                return futures::stream::once(async move { Err(e) }).boxed();
            }
        };
        rows.scan(first_row, move |next, batch| {
            let out = batch.map(|b| {
                let base = *next;
                *next += b.ids.len() as u64;
                filter(b, &deletes, base, dim)
            });
            futures::future::ready(Some(out))
        })
        .boxed()
    }
}

fn filter(batch: RowBatch, deletes: &FileDeletes, base: u64, dim: usize) -> RowBatch {
    let mut out = RowBatch {
        ids: Vec::with_capacity(batch.ids.len()),
        vectors: Vec::with_capacity(batch.vectors.len()),
        payload: batch
            .payload
            .iter()
            .map(|c| rulake_types::Column {
                name: c.name.clone(),
                ty: c.ty,
                values: Vec::with_capacity(c.values.len()),
            })
            .collect(),
    };
    for (i, id) in batch.ids.into_iter().enumerate() {
        if deletes.deleted(base + i as u64, &id) {
            continue;
        }
        if let Some(v) = batch.vectors.get(i * dim..(i + 1) * dim) {
            out.vectors.extend_from_slice(v);
        }
        for (kept, c) in out.payload.iter_mut().zip(&batch.payload) {
            kept.values.push(
                c.values
                    .get(i)
                    .cloned()
                    .unwrap_or(rulake_types::Value::Null),
            );
        }
        out.ids.push(id);
    }
    out
}

/// Refuse a delete set larger than [`MAX_DELETED_ROWS`].
pub(crate) fn check_total(table: &str, total: usize) -> Result<()> {
    if total > MAX_DELETED_ROWS {
        return Err(LakeError::Unsupported {
            table: table.to_owned(),
            feature: "more than 50M deleted rows".into(),
            detail: format!(
                "the snapshot deletes {total} rows through delete files or deletion vectors; compact the table so the deletes are applied to its data files"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_positions_and_ids() {
        let d = FileDeletes::new(
            vec![5, 1, 5],
            vec![Arc::new([VectorId::U64(13)].into_iter().collect())],
            &["a".into()],
        );
        assert_eq!(d.positions, vec![1, 5]);
        let batch = RowBatch {
            ids: (10..15).map(VectorId::U64).collect(),
            vectors: (0..10).map(|x| x as f32).collect(),
            payload: Vec::new(),
        };
        // Positions 1..6 in the file: 1 and 5 are deleted, id 13 too.
        let out = filter(batch, &d, 1, 2);
        assert_eq!(out.ids, vec![VectorId::U64(11), VectorId::U64(12)]);
        assert_eq!(out.vectors, vec![2.0, 3.0, 4.0, 5.0]);
    }
}
