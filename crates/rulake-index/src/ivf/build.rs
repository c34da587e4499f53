//! Making and changing a partition: train the quantizer once, then append,
//! and hide rows instead of removing them.
//!
//! Why append-only: retraining k-means and re-encoding every row is the
//! expensive part of a build, and a lake adds rows far more often than it
//! reshapes its data. So [`PartitionIndex::add`] assigns new rows to the
//! existing lists, and the index counts how far those rows sit from their
//! centroids compared with the trained ones ([`Drift`]); the caller rebuilds
//! when that says the lists no longer fit. Deletes set a tombstone bit, which
//! keeps every row position (and so every code and list) where it was.

use super::codes::{last_word_mask, rotate_all, rotation_for, List, RowCode};
use super::{default_nlist, normalize, BuildParams, IdTable, PartitionIndex};
use crate::error::{IndexError, Result};
use crate::kmeans;
use rand::{seq::index::sample, SeedableRng};
use rayon::prelude::*;
use rulake_types::{Metric, VectorId};

/// Rows encoded at a time when appending (see `append`).
const ENCODE_CHUNK_ROWS: usize = 16_384;

/// How far incremental additions have moved a partition from the data its
/// quantizer was trained on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    /// Rows added since training, as a fraction of the rows trained on.
    pub added_fraction: f64,
    /// Mean squared residual of added rows over that of trained rows.
    pub residual_ratio: f64,
}

impl Drift {
    /// Retrain when the partition grew by half since training, or added
    /// rows sit 1.5× farther from their centroids than trained rows did:
    /// either means the lists no longer describe the data (lists grow
    /// unevenly, probes cover less of the neighbourhood).
    pub fn needs_retrain(&self) -> bool {
        self.added_fraction > 0.5 || self.residual_ratio > 1.5
    }
}

/// Train `nlist` centroids on a seeded sample of the `n` rows of `vectors`
/// (`sample_per_list` rows a list; all rows when there are fewer). An empty
/// partition gets one zero centroid.
fn train_centroids(vectors: &[f32], dim: usize, nlist: usize, params: &BuildParams) -> Vec<f32> {
    let n = vectors.len() / dim;
    if n == 0 {
        return vec![0.0; dim];
    }
    let sample_data: Vec<f32> = match training_rows(n, nlist * params.sample_per_list, params.seed)
    {
        None => vectors.to_vec(),
        Some(rows) => rows
            .iter()
            .flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied())
            .collect(),
    };
    kmeans::train(&sample_data, dim, nlist, params.train_iters, params.seed)
}

/// The rows (ascending) of `n` that train the quantizer when it samples
/// `sample_n` of them with `seed`; `None` when every row trains it.
/// Calibration (`calibrate`) asks which rows these were: rows the
/// centroids were fitted to sit closer to them than unseen queries do, so
/// they would overstate recall.
pub(super) fn training_rows(n: usize, sample_n: usize, seed: u64) -> Option<Vec<usize>> {
    if sample_n >= n {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = sample(&mut rng, n, sample_n).into_vec();
    rows.sort_unstable();
    Some(rows)
}

impl PartitionIndex {
    /// Build an index over `ids` and row-major `vectors`. Ids must be unique
    /// (the shard layer checks and names the offending units).
    pub fn build(
        dim: usize,
        metric: Metric,
        ids: Vec<VectorId>,
        mut vectors: Vec<f32>,
        params: BuildParams,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(IndexError::Invalid("dimension must be positive".into()));
        }
        if vectors.len() != ids.len() * dim {
            return Err(IndexError::Invalid(format!(
                "{} ids but {} values for dimension {dim}",
                ids.len(),
                vectors.len()
            )));
        }
        let n = ids.len();
        if n > u32::MAX as usize {
            return Err(IndexError::TooManyRows(n));
        }
        if metric == Metric::Cosine {
            vectors.par_chunks_mut(dim).for_each(normalize);
        }
        let nlist = params
            .nlist
            .unwrap_or_else(|| default_nlist(n))
            .clamp(1, n.max(1));
        let centroids = train_centroids(&vectors, dim, nlist, &params);
        let nlist = centroids.len() / dim;
        let (rotation_kind, rotation) = rotation_for(dim, params.seed);
        let rot_centroids = rotate_all(&rotation, &centroids, dim);
        let mut index = PartitionIndex {
            dim,
            metric,
            n_words: dim.div_ceil(64),
            last_mask: last_word_mask(dim),
            seed: params.seed,
            rotation_kind,
            rotation,
            centroids,
            rot_centroids,
            lists: vec![List::default(); nlist],
            vectors: Vec::new(),
            ids: IdTable::U64(Vec::new()),
            tombstones: Vec::new(),
            n_tombstones: 0,
            trained_rows: n,
            trained_residual: 0.0,
            added_rows: 0,
            added_residual: 0.0,
            tuning: None,
        };
        let residual = index.append(ids, vectors);
        index.trained_residual = residual / n.max(1) as f64;
        Ok(index)
    }

    /// Assign, encode and append rows (already normalised for cosine);
    /// returns the sum of squared residual norms.
    fn append(&mut self, ids: Vec<VectorId>, vectors: Vec<f32>) -> f64 {
        let dim = self.dim;
        let assignment = kmeans::assign(&vectors, dim, &self.centroids);
        let n_words = self.n_words;
        let base = self.ids.len() as u32;
        let mut residual = 0.0f64;
        // A chunk at a time: only one chunk's per-row codes are held beside
        // the lists they are copied into, not those of the whole load.
        for start in (0..assignment.len()).step_by(ENCODE_CHUNK_ROWS) {
            let end = (start + ENCODE_CHUNK_ROWS).min(assignment.len());
            let encoded: Vec<RowCode> = vectors[start * dim..end * dim]
                .par_chunks(dim)
                .zip(assignment[start..end].par_iter())
                .map_init(
                    || vec![0.0f32; dim],
                    |rot, (x, &a)| {
                        self.rotation.apply_into(x, rot);
                        let rc = &self.rot_centroids[a as usize * dim..(a as usize + 1) * dim];
                        rot.iter_mut().zip(rc).for_each(|(r, c)| *r -= c);
                        RowCode::encode(rot, n_words)
                    },
                )
                .collect();
            for (i, (code, &a)) in encoded.into_iter().zip(&assignment[start..end]).enumerate() {
                residual += code.norm_sq() as f64;
                self.lists[a as usize].push(base + (start + i) as u32, code);
            }
        }
        if self.vectors.is_empty() {
            // A first build takes the caller's buffer: copying it would
            // hold the floats twice at the peak of a load.
            self.vectors = vectors;
        } else {
            self.vectors.extend_from_slice(&vectors);
        }
        self.ids.extend(ids);
        self.tombstones.resize(self.ids.len().div_ceil(64), 0);
        residual
    }

    /// Add rows incrementally: they join the existing lists (no retraining).
    /// Check [`PartitionIndex::drift`] to decide when to rebuild.
    pub fn add(&mut self, ids: Vec<VectorId>, mut vectors: Vec<f32>) -> Result<()> {
        if vectors.len() != ids.len() * self.dim {
            return Err(IndexError::Dimension {
                expected: self.dim,
                actual: vectors.len() / ids.len().max(1),
            });
        }
        if self.ids.len() + ids.len() > u32::MAX as usize {
            return Err(IndexError::TooManyRows(self.ids.len() + ids.len()));
        }
        if self.metric == Metric::Cosine {
            vectors.par_chunks_mut(self.dim).for_each(normalize);
        }
        let n = ids.len();
        self.added_residual += self.append(ids, vectors);
        self.added_rows += n;
        Ok(())
    }

    /// How far additions have drifted from the trained quantizer.
    pub fn drift(&self) -> Drift {
        let added_mean = if self.added_rows == 0 {
            0.0
        } else {
            self.added_residual / self.added_rows as f64
        };
        Drift {
            added_fraction: self.added_rows as f64 / self.trained_rows.max(1) as f64,
            residual_ratio: if self.trained_residual > 0.0 {
                added_mean / self.trained_residual
            } else {
                0.0
            },
        }
    }

    /// Hide rows from every later search (logical delete). Returns how many
    /// of the given ids were found and newly hidden.
    pub fn tombstone(&mut self, ids: &std::collections::HashSet<VectorId>) -> usize {
        let mut hidden = 0;
        for pos in 0..self.ids.len() as u32 {
            if !self.is_tombstoned(pos) && ids.contains(&self.ids.get(pos)) {
                self.tombstones[pos as usize / 64] |= 1 << (pos % 64);
                hidden += 1;
            }
        }
        self.n_tombstones += hidden;
        hidden
    }
}
