//! One partition's index: an inverted file (IVF) over RaBitQ codes of the
//! residuals to the list centroids, with an 8-bit refinement and exact rerank.
//!
//! Why IVF and residuals: a flat scan of 1-bit codes must look at every
//! vector and its estimates are too coarse to rank a million vectors (recall
//! collapses unless hundreds of times `k` candidates are reranked). A coarse
//! quantizer restricts a query to the `nprobe` nearest lists, and coding the
//! residual `x − c` instead of `x` spends the bits on what distinguishes
//! vectors *within* a list, which is what the estimate has to rank. This is
//! the layout of the RaBitQ paper, FAISS's IVF-RaBitQ and LanceDB's IVF_RQ.
//!
//! Estimates only choose candidates; every distance returned is exact, so
//! answers from different partitions merge exactly.
//!
//! Metrics on the one L2 index:
//! - `l2`: the estimator, exact squared L2 on rerank.
//! - `cosine`: vectors and queries are normalised at the door; on unit
//!   vectors `‖q − x‖² = 2 (1 − cos)`, so L2 order is cosine order and the
//!   distance reported is `1 − cos`.
//! - `inner_product`: lists are the same L2 k-means lists; lists are probed
//!   in order of `⟨q, c⟩` and a candidate's score is estimated as
//!   `⟨q, c⟩ + ‖q‖‖x − c‖·coŝ(q, x − c)` from the code of the rotated query;
//!   rerank uses the exact `−⟨q, x⟩`.
//!
//! This file holds the index's state and its read-only accessors; each stage
//! that changes or reads that state has its own module:
//! - `params` — the tuned defaults and how a split collection shares them;
//! - `ids` — row position → caller's id;
//! - `codes` — what is stored per row (1-bit and 8-bit residual codes);
//! - `build` — training, appending, tombstones and drift;
//! - `calibrate` — the fewest probes that reach a declared recall;
//! - `query` — the query quantised to meet the codes;
//! - `candidates` — the pool the 1-bit estimate fills;
//! - `scan` — stage 1 of a search, the 1-bit estimate over probed lists;
//! - `search` — the search pipeline: coarse, refine, exact rerank;
//! - `parts` — the raw state `persist` writes and validates on load.

mod build;
mod calibrate;
mod candidates;
mod codes;
mod ids;
mod params;
mod parts;
mod query;
mod scan;
mod search;

pub use build::Drift;
pub use calibrate::{Tuning, CALIBRATION_K, DEFAULT_TARGET_RECALL};
pub(crate) use codes::List;
pub use ids::IdTable;
pub use params::{
    default_nlist, default_nprobe, split_search, BuildParams, DEFAULT_RERANK, MAX_RERANK,
    SAMPLE_PER_LIST, TRAIN_ITERS,
};
pub(crate) use parts::Parts;

use crate::simd::dot;
use rulake_types::Metric;
use ruvector_rabitq::{RandomRotation, RandomRotationKind};

/// A built partition index. Immutable for queries; extended by [`PartitionIndex::add`].
#[derive(Clone)]
pub struct PartitionIndex {
    dim: usize,
    metric: Metric,
    n_words: usize,
    last_mask: u64,
    seed: u64,
    rotation_kind: RandomRotationKind,
    rotation: RandomRotation,
    centroids: Vec<f32>,
    rot_centroids: Vec<f32>,
    lists: Vec<List>,
    vectors: Vec<f32>,
    ids: IdTable,
    tombstones: Vec<u64>,
    n_tombstones: usize,
    trained_rows: usize,
    trained_residual: f64,
    added_rows: usize,
    added_residual: f64,
    /// What calibration chose (`None`: never calibrated).
    tuning: Option<Tuning>,
}

impl std::fmt::Debug for PartitionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("rows", &self.len())
            .field("nlist", &self.lists.len())
            .finish()
    }
}

/// Scale `v` to unit length (a zero vector stays zero): how cosine rows and
/// queries enter the L2 index.
fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl PartitionIndex {
    #[inline]
    /// Whether the row at `pos` was hidden by [`PartitionIndex::tombstone`].
    pub fn is_tombstoned(&self, pos: u32) -> bool {
        self.tombstones[pos as usize / 64] & (1 << (pos % 64)) != 0
    }

    /// Rows held (including tombstoned ones).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the partition holds no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rows visible to searches.
    pub fn live_len(&self) -> usize {
        self.ids.len() - self.n_tombstones
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Number of IVF lists.
    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    /// The id table.
    pub fn ids(&self) -> &IdTable {
        &self.ids
    }

    /// Stored vectors, row-major (normalised for cosine).
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Which rotation the codes use (Hadamard for power-of-two dimensions).
    pub fn rotation_kind(&self) -> RandomRotationKind {
        self.rotation_kind
    }

    /// Bytes of the codes: the 1-bit codes the scan reads and the 8-bit
    /// codes the refinement reads.
    pub fn code_bytes(&self) -> usize {
        self.len() * (self.n_words * 8 + self.dim)
    }

    /// Heap bytes held: vectors, codes, norms, positions, ids, centroids,
    /// tombstones and the rotation.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.len() * 4
            + self.code_bytes()
            + self.len() * 24
            + self.ids.memory_bytes()
            + self.centroids.len() * 8
            + self.lists.len() * 72
            + self.tombstones.len() * 8
            + self.rotation.bytes()
    }

    /// Estimated heap bytes of a partition of `rows` rows of `dim`
    /// dimensions with ids of about `id_bytes` each: what admission control
    /// checks before anything is read.
    pub fn estimate_bytes(rows: usize, dim: usize, id_bytes: usize) -> usize {
        let nlist = default_nlist(rows);
        rows * (dim * 5 + dim.div_ceil(64) * 8 + 24 + id_bytes)
            + nlist * (dim * 8 + 72)
            + dim * dim * 4
    }
}
