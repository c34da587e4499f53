//! The raw state of a partition, as `persist` writes and reads it.
//!
//! Why here and not in `persist`: the file format is `persist`'s business,
//! but what makes a state valid (tables of matching lengths, positions in
//! range) and what is derived rather than stored (the rotation and rotated
//! centroids, a pure function of dimension and seed; the tombstone count)
//! are the index's. A loaded file is checked here before it becomes an
//! index, so a damaged one is rejected instead of panicking in a search.

use super::codes::{last_word_mask, rotate_all, rotation_for, List};
use super::{IdTable, PartitionIndex};
use crate::error::{IndexError, Result};
use rulake_types::Metric;

/// Internals the persistence module reads and writes.
pub(crate) struct Parts {
    pub dim: usize,
    pub metric: Metric,
    pub seed: u64,
    pub centroids: Vec<f32>,
    pub lists: Vec<List>,
    pub vectors: Vec<f32>,
    pub ids: IdTable,
    pub tombstones: Vec<u64>,
    pub trained_rows: usize,
    pub trained_residual: f64,
    pub added_rows: usize,
    pub added_residual: f64,
    pub tuning: Option<super::Tuning>,
}

/// Whether every list's tables have one entry per row (`n_words` code
/// words and `dim` fine bytes a row), and positions below `n`.
fn lists_agree(lists: &[List], n: usize, n_words: usize, dim: usize) -> bool {
    let listed: usize = lists.iter().map(|l| l.pos.len()).sum();
    listed == n
        && lists.iter().all(|l| {
            l.norm_sq.len() == l.pos.len()
                && l.scale.len() == l.pos.len()
                && l.ones.len() == l.pos.len()
                && l.codes.len() == l.pos.len() * n_words
                && l.fine.len() == l.pos.len() * dim
                && l.fine_grid.len() == l.pos.len()
                && l.pos.iter().all(|&x| (x as usize) < n)
        })
}

impl PartitionIndex {
    /// The stored state `persist` writes besides what the accessors give:
    /// centroids, lists, tombstones, seed and the drift counters
    /// `[trained rows, trained residual, added rows, added residual]`.
    pub(crate) fn parts(&self) -> (&[f32], &[List], &[u64], u64, [f64; 4]) {
        (
            &self.centroids,
            &self.lists,
            &self.tombstones,
            self.seed,
            [
                self.trained_rows as f64,
                self.trained_residual,
                self.added_rows as f64,
                self.added_residual,
            ],
        )
    }

    /// Rebuild an index from loaded state, or [`IndexError::Corrupt`] when
    /// its tables disagree.
    pub(crate) fn from_parts(p: Parts) -> Result<Self> {
        let dim = p.dim;
        let n = p.ids.len();
        let corrupt = |m: &str| Err(IndexError::Corrupt(m.to_owned()));
        if dim == 0 || p.centroids.len() % dim != 0 || p.centroids.is_empty() {
            return corrupt("bad centroid table");
        }
        if p.vectors.len() != n * dim || p.tombstones.len() != n.div_ceil(64) {
            return corrupt("row tables disagree");
        }
        let n_words = dim.div_ceil(64);
        if !lists_agree(&p.lists, n, n_words, dim) {
            return corrupt("inverted lists disagree with the row tables");
        }
        let (rotation_kind, rotation) = rotation_for(dim, p.seed);
        let rot_centroids = rotate_all(&rotation, &p.centroids, dim);
        let n_tombstones = p.tombstones.iter().map(|w| w.count_ones() as usize).sum();
        Ok(PartitionIndex {
            dim,
            metric: p.metric,
            n_words,
            last_mask: last_word_mask(dim),
            seed: p.seed,
            rotation_kind,
            rotation,
            centroids: p.centroids,
            rot_centroids,
            lists: p.lists,
            vectors: p.vectors,
            ids: p.ids,
            tombstones: p.tombstones,
            n_tombstones,
            trained_rows: p.trained_rows,
            trained_residual: p.trained_residual,
            added_rows: p.added_rows,
            added_residual: p.added_residual,
            tuning: p.tuning,
        })
    }
}
