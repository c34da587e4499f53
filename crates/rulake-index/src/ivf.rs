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
//! The codes are produced and scanned with `ruvector-rabitq`: its random
//! rotation (randomised Hadamard for power-of-two dimensions, a dense Haar
//! rotation otherwise), its bit packing (bit `i` of a code is the sign of
//! rotated component `i`, most significant bit first) and its runtime-
//! dispatched XNOR-popcount scan. The query is rotated once per search;
//! centroids are stored pre-rotated, so a list's rotated query residual is
//! one subtraction.
//!
//! Estimates only choose candidates, in three stages of rising cost:
//! 1. every row of the probed lists gets a 1-bit estimate; the `k × rerank`
//!    best are kept (a linear-time selection, not a heap);
//! 2. those are re-scored from an 8-bit code of the same rotated residual
//!    (one cache line or two a row, next to the list), which also gives a
//!    *deterministic* bound on the remaining error: each component is
//!    rounded by at most half a grid step;
//! 3. candidates are taken in order of `score − bound` and re-scored
//!    exactly against the stored vectors until the next bound cannot beat
//!    the `k`-th exact distance.
//!
//! Stage 3 returns exactly what reranking all `k × rerank` candidates would,
//! but touches a handful of full vectors instead of hundreds (usually little
//! more than `k`), where a random read of a 512-byte vector is the most
//! expensive thing the search does. Every distance
//! returned is exact, so answers from different partitions merge exactly.
//! The 1-bit stage sets recall (how wide a pool holds the true
//! neighbours); the later stages make a wide pool cheap.
//!
//! Metrics on the one L2 index:
//! - `l2`: the estimator above, exact squared L2 on rerank.
//! - `cosine`: vectors and queries are normalised at the door; on unit
//!   vectors `‖q − x‖² = 2 (1 − cos)`, so L2 order is cosine order and the
//!   distance reported is `1 − cos`.
//! - `inner_product`: lists are the same L2 k-means lists; lists are probed
//!   in order of `⟨q, c⟩` and a candidate's score is estimated as
//!   `⟨q, c⟩ + ‖q‖‖x − c‖·coŝ(q, x − c)` from the code of the rotated query;
//!   rerank uses the exact `−⟨q, x⟩`.

use crate::bound::SharedKth;
use crate::error::{IndexError, Result};
use crate::exact::OrdF32;
use crate::kmeans;
use crate::simd::{self, dot, fine_dot, l2_sq};
use rand::{seq::index::sample, SeedableRng};
use rayon::prelude::*;
use rulake_types::{Metric, VectorId};
use ruvector_rabitq::{scan::scan, RandomRotation, RandomRotationKind};
use std::collections::BinaryHeap;

/// Rows of the k-means training sample per list.
pub const SAMPLE_PER_LIST: usize = 64;
/// Lloyd iterations of the coarse quantizer.
pub const TRAIN_ITERS: usize = 10;
/// Default candidates kept from the 1-bit estimate, as a multiple of `k`.
/// Each is re-scored from its 8-bit code; only those whose error bound can
/// still beat the `k`-th exact distance load their full vector, so a wide
/// pool costs little (see `search`).
pub const DEFAULT_RERANK: usize = 40;

/// How to build a partition index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildParams {
    /// Number of IVF lists; `None` picks [`default_nlist`].
    pub nlist: Option<usize>,
    /// Lloyd iterations.
    pub train_iters: usize,
    /// Training rows per list.
    pub sample_per_list: usize,
    /// Seed for sampling, k-means and the rotation.
    pub seed: u64,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            nlist: None,
            train_iters: TRAIN_ITERS,
            sample_per_list: SAMPLE_PER_LIST,
            seed: 0x5275_4c61_6b65, // "RuLake"
        }
    }
}

/// Lists for `n` rows: about `√n`, so a list holds about `√n` rows and the
/// coarse and fine scans cost the same order of work.
pub fn default_nlist(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize)
        .clamp(1, 4096)
        .min(n.max(1))
}

/// Lists probed by default for `nlist` lists: an eightieth of the lists, at
/// least 8 (all of them for tiny partitions). Chosen on the clustered
/// benchmark to reach recall@10 ≥ 0.95 with [`DEFAULT_RERANK`] (see
/// docs/BENCHMARKS.md); the floor keeps small partitions of a split
/// collection from probing too few lists.
pub fn default_nprobe(nlist: usize) -> usize {
    (nlist / 80).max(8).min(nlist)
}

/// One partition's share of a search over a collection split into
/// partitions: `nprobe` and `rerank` describe the collection as if it were
/// one index of `total_rows` rows, and each partition gets its proportional
/// part. It probes the same *fraction* of its lists, and keeps a candidate
/// pool in proportion to its rows (a partition holding a quarter of the
/// rows holds, in expectation, a quarter of any query's true neighbours, and
/// ranks each of them four times higher locally). So a collection split in
/// `P` does the same total work as one partition, spread over `P` threads,
/// instead of `P` times the work. With one partition this is the identity.
pub fn split_search(
    total_rows: usize,
    part_rows: usize,
    part_nlist: usize,
    nprobe: Option<usize>,
    rerank: usize,
) -> (usize, usize) {
    let part_nlist = part_nlist.max(1);
    if part_rows >= total_rows {
        return (nprobe.unwrap_or_else(|| default_nprobe(part_nlist)), rerank);
    }
    let whole_nlist = default_nlist(total_rows).max(1);
    let nprobe = nprobe.unwrap_or_else(|| default_nprobe(whole_nlist));
    let fraction = nprobe as f64 / whole_nlist as f64;
    let share = part_rows as f64 / total_rows.max(1) as f64;
    let part_nprobe = ((fraction * part_nlist as f64).ceil() as usize).clamp(1, part_nlist);
    let part_rerank = ((rerank as f64 * share).ceil() as usize).max(1);
    (part_nprobe, part_rerank)
}

/// Row ids of a partition, by u32 position; never truncated.
#[derive(Clone, Debug, PartialEq)]
pub enum IdTable {
    /// All ids are integers.
    U64(Vec<u64>),
    /// All ids are strings.
    Str(Vec<String>),
    /// Both kinds (possible with the memory source).
    Mixed(Vec<VectorId>),
}

impl IdTable {
    /// Pack ids into the most compact table that holds them.
    pub fn from_ids(ids: Vec<VectorId>) -> Self {
        if ids.iter().all(|i| matches!(i, VectorId::U64(_))) {
            IdTable::U64(
                ids.into_iter()
                    .map(|i| match i {
                        VectorId::U64(v) => v,
                        VectorId::Str(_) => unreachable!(),
                    })
                    .collect(),
            )
        } else if ids.iter().all(|i| matches!(i, VectorId::Str(_))) {
            IdTable::Str(
                ids.into_iter()
                    .map(|i| match i {
                        VectorId::Str(s) => s,
                        VectorId::U64(_) => unreachable!(),
                    })
                    .collect(),
            )
        } else {
            IdTable::Mixed(ids)
        }
    }

    /// The id at a row position.
    pub fn get(&self, pos: u32) -> VectorId {
        match self {
            IdTable::U64(v) => VectorId::U64(v[pos as usize]),
            IdTable::Str(v) => VectorId::Str(v[pos as usize].clone()),
            IdTable::Mixed(v) => v[pos as usize].clone(),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            IdTable::U64(v) => v.len(),
            IdTable::Str(v) => v.len(),
            IdTable::Mixed(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn extend(&mut self, ids: Vec<VectorId>) {
        let mut all: Vec<VectorId> = match std::mem::replace(self, IdTable::U64(Vec::new())) {
            IdTable::U64(v) if ids.iter().all(|i| matches!(i, VectorId::U64(_))) => {
                let mut v = v;
                v.extend(ids.into_iter().map(|i| match i {
                    VectorId::U64(x) => x,
                    VectorId::Str(_) => unreachable!(),
                }));
                *self = IdTable::U64(v);
                return;
            }
            IdTable::Str(v) if ids.iter().all(|i| matches!(i, VectorId::Str(_))) => {
                let mut v = v;
                v.extend(ids.into_iter().map(|i| match i {
                    VectorId::Str(x) => x,
                    VectorId::U64(_) => unreachable!(),
                }));
                *self = IdTable::Str(v);
                return;
            }
            IdTable::U64(v) => v.into_iter().map(VectorId::U64).collect(),
            IdTable::Str(v) => v.into_iter().map(VectorId::Str).collect(),
            IdTable::Mixed(v) => v,
        };
        all.extend(ids);
        *self = IdTable::from_ids(all);
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        match self {
            IdTable::U64(v) => v.len() * 8,
            IdTable::Str(v) => v.iter().map(|s| s.len() + 24).sum(),
            IdTable::Mixed(v) => v
                .iter()
                .map(|i| match i {
                    VectorId::U64(_) => 32,
                    VectorId::Str(s) => 32 + s.len(),
                })
                .sum(),
        }
    }
}

/// One inverted list: row positions, packed codes and per-row factors.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct List {
    pub pos: Vec<u32>,
    /// `‖r‖²` of each row's residual `r`.
    pub norm_sq: Vec<f32>,
    /// `‖r‖² / Σ|rᵢ|` (= `‖r‖ / (⟨x̄, r̂⟩ √D)`): turns `√D ⟨x̄, q⟩` into an estimate of `⟨r, q⟩`.
    pub scale: Vec<f32>,
    /// Set bits of each code.
    pub ones: Vec<f32>,
    pub codes: Vec<u64>,
    /// 8-bit codes of the rotated residual (`dim` bytes a row): the
    /// refinement stage between the 1-bit estimate and the exact rerank.
    pub fine: Vec<u8>,
    /// Per row `(lo, Δ)` of the 8-bit grid: component `i` ≈ `lo + Δ·uᵢ`.
    pub fine_grid: Vec<[f32; 2]>,
}

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

fn last_word_mask(dim: usize) -> u64 {
    let valid = dim - 64 * (dim.div_ceil(64) - 1);
    if valid == 64 {
        !0
    } else {
        !0u64 << (64 - valid)
    }
}

fn rotation_for(dim: usize, seed: u64) -> (RandomRotationKind, RandomRotation) {
    if dim.is_power_of_two() {
        (
            RandomRotationKind::HadamardSigned,
            RandomRotation::hadamard(dim, seed),
        )
    } else {
        (
            RandomRotationKind::HaarDense,
            RandomRotation::random(dim, seed),
        )
    }
}

/// Pack the signs of `v` as the crate packs codes (bit `i` at `63 - i % 64`).
#[inline]
fn pack_signs(v: &[f32], words: &mut [u64]) {
    words.iter_mut().for_each(|w| *w = 0);
    for (i, &x) in v.iter().enumerate() {
        if x >= 0.0 {
            words[i / 64] |= 1u64 << (63 - (i % 64));
        }
    }
}

/// 8-bit uniform code of a rotated residual on its own `[min, max]` grid.
/// Rounding moves each component by at most `Δ/2`, which is what makes the
/// refinement bound in [`PartitionIndex::search`] deterministic.
fn encode_fine(r: &[f32]) -> (Vec<u8>, [f32; 2]) {
    let (lo, hi) = r
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if hi <= lo || !hi.is_finite() {
        return (
            vec![0; r.len()],
            [if lo.is_finite() { lo } else { 0.0 }, 0.0],
        );
    }
    let delta = (hi - lo) / 255.0;
    let codes = r
        .iter()
        .map(|&x| (((x - lo) / delta) + 0.5).clamp(0.0, 255.0) as u8)
        .collect();
    (codes, [lo, delta])
}

/// A probed list's query in 16-bit fixed point for [`fine_dot`]:
/// `qᵢ ≈ scale · q̂ᵢ` with `|q̂ᵢ| ≤ 32767`.
fn fixed_query(q: &[f32], out: &mut Vec<i16>) -> f32 {
    let max = q.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
    out.extend(q.iter().map(|&x| (x / scale).round() as i16));
    scale
}

fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Bits per query component in the estimator.
const QUERY_BITS: usize = 4;

/// A query vector quantised to [`QUERY_BITS`] bits per component, as bit planes.
struct QueryPlanes {
    n_words: usize,
    words: Vec<u64>,
    ones: [f32; QUERY_BITS],
    /// Σⱼ 2ʲ ones[j].
    weighted_ones: f32,
    lo: f32,
    delta: f32,
    sum_u: f32,
}

impl QueryPlanes {
    fn new(n_words: usize) -> Self {
        QueryPlanes {
            n_words,
            words: vec![0; n_words * QUERY_BITS],
            ones: [0.0; QUERY_BITS],
            weighted_ones: 0.0,
            lo: 0.0,
            delta: 0.0,
            sum_u: 0.0,
        }
    }

    fn quantize(&mut self, q: &[f32]) {
        let (lo, hi) = q
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let delta = if hi > lo { (hi - lo) / levels } else { 1.0 };
        let inv = 1.0 / delta;
        let mut sum_u = 0u32;
        for (w, chunk) in q.chunks(64).enumerate() {
            let mut planes = [0u64; QUERY_BITS];
            for (b, &x) in chunk.iter().enumerate() {
                // x ≥ lo, so adding ½ and truncating rounds to nearest.
                let u = (((x - lo) * inv + 0.5) as u32).min(levels as u32);
                sum_u += u;
                let bit = 63 - b as u32;
                for (j, p) in planes.iter_mut().enumerate() {
                    *p |= (((u >> j) & 1) as u64) << bit;
                }
            }
            for (j, p) in planes.iter().enumerate() {
                self.words[j * self.n_words + w] = *p;
            }
        }
        for j in 0..QUERY_BITS {
            self.ones[j] = self.words[j * self.n_words..(j + 1) * self.n_words]
                .iter()
                .map(|w| w.count_ones())
                .sum::<u32>() as f32;
        }
        self.weighted_ones = (0..QUERY_BITS)
            .map(|j| (1u32 << j) as f32 * self.ones[j])
            .sum();
        self.lo = lo;
        self.delta = delta;
        self.sum_u = sum_u as f32;
    }
}

/// A candidate from the 1-bit estimate pass.
#[derive(Clone, Copy, Debug)]
struct Cand {
    score: f32,
    pos: u32,
    /// Index into the probed lists and row within that list: where the
    /// candidate's 8-bit code lives.
    probe: u32,
    row: u32,
}

/// A probed list and the query terms its candidates are refined with.
struct Probe {
    list: u32,
    /// `qᵢ ≈ qscale · q̂ᵢ` for the 16-bit query of this probe.
    qscale: f32,
    q_sq: f32,
    base: f32,
    sum: f32,
    l1: f32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(self.pos.cmp(&o.pos))
    }
}

/// Bounded candidate set keeping the `cap` smallest scores.
///
/// Candidates below the current threshold are appended to a buffer; when
/// it holds `2 × cap` a linear-time selection keeps the best `cap` and
/// tightens the threshold. Amortised O(1) a candidate, where a binary heap
/// pays a sift on every admission (most admissions happen early, while the
/// threshold is still loose).
struct Candidates {
    cap: usize,
    buf: Vec<Cand>,
    worst: f32,
}

impl Candidates {
    fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Candidates {
            cap,
            buf: Vec::with_capacity(2 * cap),
            worst: f32::INFINITY,
        }
    }
    #[inline]
    fn push(&mut self, c: Cand) {
        self.buf.push(c);
        if self.buf.len() == 2 * self.cap {
            self.trim();
        }
    }
    fn trim(&mut self) {
        if self.buf.len() > self.cap {
            self.buf.select_nth_unstable(self.cap - 1);
            self.buf.truncate(self.cap);
            self.worst = self
                .buf
                .iter()
                .map(|c| c.score)
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    /// The best `cap` candidates, in no particular order.
    fn into_vec(mut self) -> Vec<Cand> {
        self.trim();
        self.buf
    }
}

/// Start loading the candidates' 8-bit codes, grids and norms, all of
/// them before the refinement loop reads the first: the loop is bound by
/// memory latency (the scan never touched these lines), and loads issued
/// together overlap where loads issued one at a time inside it would not.
fn touch_fine(lists: &[List], probes: &[Probe], cands: &[Cand], dim: usize) {
    for c in cands {
        let list = &lists[probes[c.probe as usize].list as usize];
        let row = c.row as usize;
        simd::prefetch(&list.fine[row * dim..(row + 1) * dim]);
        simd::prefetch(&list.fine_grid[row..row + 1]);
        simd::prefetch(&list.norm_sq[row..row + 1]);
    }
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
        let centroids = if n == 0 {
            vec![0.0; dim]
        } else {
            let sample_n = (nlist * params.sample_per_list).min(n);
            let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
            let sample_data: Vec<f32> = if sample_n == n {
                vectors.clone()
            } else {
                let mut rows = sample(&mut rng, n, sample_n).into_vec();
                rows.sort_unstable();
                rows.iter()
                    .flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied())
                    .collect()
            };
            kmeans::train(&sample_data, dim, nlist, params.train_iters, params.seed)
        };
        let nlist = centroids.len() / dim;
        let (rotation_kind, rotation) = rotation_for(dim, params.seed);
        let rot_centroids: Vec<f32> = centroids
            .chunks_exact(dim)
            .flat_map(|c| rotation.apply(c))
            .collect();
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
        #[allow(clippy::type_complexity)]
        let encoded: Vec<(Vec<u64>, f32, f32, Vec<u8>, [f32; 2])> = vectors
            .par_chunks(dim)
            .zip(assignment.par_iter())
            .map_init(
                || vec![0.0f32; dim],
                |rot, (x, &a)| {
                    self.rotation.apply_into(x, rot);
                    let rc = &self.rot_centroids[a as usize * dim..(a as usize + 1) * dim];
                    rot.iter_mut().zip(rc).for_each(|(r, c)| *r -= c);
                    let mut words = vec![0u64; n_words];
                    pack_signs(rot, &mut words);
                    let r2 = dot(rot, rot);
                    // ⟨x̄, r̂⟩ = Σ|rᵢ| / (√D ‖r‖); scale = ‖r‖ / (⟨x̄, r̂⟩ √D) = ‖r‖² / Σ|rᵢ|.
                    let l1: f32 = rot.iter().map(|v| v.abs()).sum();
                    let scale = if l1 > 0.0 { r2 / l1 } else { 0.0 };
                    let (fine, grid) = encode_fine(rot);
                    (words, r2, scale, fine, grid)
                },
            )
            .collect();
        let base = self.ids.len() as u32;
        let mut residual = 0.0f64;
        for (i, ((words, r2, scale, fine, grid), a)) in
            encoded.into_iter().zip(assignment).enumerate()
        {
            let list = &mut self.lists[a as usize];
            list.pos.push(base + i as u32);
            list.norm_sq.push(r2);
            list.scale.push(scale);
            list.ones
                .push(words.iter().map(|w| w.count_ones()).sum::<u32>() as f32);
            list.codes.extend_from_slice(&words);
            list.fine.extend_from_slice(&fine);
            list.fine_grid.push(grid);
            residual += r2 as f64;
        }
        self.vectors.extend_from_slice(&vectors);
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

    fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        if query.len() != self.dim {
            return Err(IndexError::Dimension {
                expected: self.dim,
                actual: query.len(),
            });
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return Err(IndexError::NonFiniteQuery(i));
        }
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            normalize(&mut q);
        }
        Ok(q)
    }

    #[inline]
    fn exact(&self, q: &[f32], pos: u32) -> f32 {
        let x = &self.vectors[pos as usize * self.dim..(pos as usize + 1) * self.dim];
        match self.metric {
            Metric::L2 => l2_sq(q, x),
            Metric::InnerProduct => -dot(q, x),
            // Both sides are unit vectors (or zero): 1 − ⟨q, x⟩.
            Metric::Cosine => 1.0 - dot(q, x),
        }
    }

    /// The `nprobe` non-empty lists with the smallest coarse scores, nearest
    /// first: scanning the nearest list first fills the candidate pool with
    /// good rows early, so its admission threshold is tight for the rest.
    ///
    /// Selection runs over the scores alone; the lists' own headers (one
    /// cache line each, a thousand of them at 1M rows) are read only for
    /// the lists chosen, to drop empty ones, which builds rarely leave.
    fn nearest_lists(&self, centroid_scores: &[f32], nprobe: usize) -> Vec<(f32, u32)> {
        let by_score = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let mut all: Vec<(f32, u32)> = centroid_scores
            .iter()
            .enumerate()
            .map(|(l, &s)| (s, l as u32))
            .collect();
        let filled = |&(_, l): &(f32, u32)| !self.lists[l as usize].pos.is_empty();
        let mut want = nprobe.min(all.len());
        loop {
            if want == 0 {
                return Vec::new();
            }
            if want < all.len() {
                all.select_nth_unstable_by(want - 1, by_score);
            }
            let filled_count = all[..want].iter().filter(|c| filled(c)).count();
            if filled_count >= nprobe || want == all.len() {
                let mut chosen: Vec<(f32, u32)> =
                    all[..want].iter().copied().filter(filled).collect();
                chosen.sort_unstable_by(by_score);
                chosen.truncate(nprobe);
                return chosen;
            }
            // Some chosen lists were empty: widen the selection by as many.
            want = (want + nprobe - filled_count).min(all.len());
        }
    }

    /// The `k` nearest live rows as `(position, exact distance)`, probing
    /// `nprobe` lists and reranking `k × rerank` candidates.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        nprobe: Option<usize>,
        rerank: Option<usize>,
    ) -> Result<Vec<(u32, f32)>> {
        self.search_excluding(query, k, nprobe, rerank, &[])
    }

    /// [`PartitionIndex::search`] that also skips the positions set in `exclude`
    /// (a bitset, bit `p % 64` of word `p / 64`; shorter than the index
    /// means "not excluded"). Deletes committed after a partition was
    /// built arrive this way: the partition is shared by concurrent
    /// searches and costs far more to copy than a bitset to pass.
    pub fn search_excluding(
        &self,
        query: &[f32],
        k: usize,
        nprobe: Option<usize>,
        rerank: Option<usize>,
        exclude: &[u64],
    ) -> Result<Vec<(u32, f32)>> {
        self.search_shared(query, k, nprobe, rerank, exclude, None)
    }

    /// [`PartitionIndex::search_excluding`] as one of several partitions
    /// answering the same query: the exact rerank also stops at `shared`'s
    /// distance (the `k`-th best any sibling found) and offers it its own.
    /// The rows returned may then be fewer than `k`, but every row of the
    /// merged top `k` that lives here is among them (see [`crate::bound`]).
    pub fn search_shared(
        &self,
        query: &[f32],
        k: usize,
        nprobe: Option<usize>,
        rerank: Option<usize>,
        exclude: &[u64],
        shared: Option<&SharedKth>,
    ) -> Result<Vec<(u32, f32)>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = self.prepare_query(query)?;
        let live = self.live_len();
        if live == 0 {
            return Ok(Vec::new());
        }
        let dim = self.dim;
        let nlist = self.lists.len();
        let nprobe = nprobe
            .unwrap_or_else(|| default_nprobe(nlist))
            .clamp(1, nlist);
        let rerank = rerank.unwrap_or(DEFAULT_RERANK).max(1);
        let cap = k.saturating_mul(rerank).min(live);

        // Coarse: choose lists.
        let ip = self.metric == Metric::InnerProduct;
        let mut centroid_scores = Vec::with_capacity(self.lists.len());
        simd::coarse_scores(&q, &self.centroids, ip, &mut centroid_scores);
        let coarse = self.nearest_lists(&centroid_scores, nprobe);

        // Fine: estimate ⟨r, q⟩ from the 1-bit codes and a 4-bit query, keep
        // `cap` candidates. With x̄ = (2b − 1)/√D and the query quantised as
        // qᵢ ≈ lo + Δ·uᵢ (uᵢ in 0..16, bit planes U₀..U₃):
        //   √D ⟨x̄, q⟩ ≈ lo (2|b| − D) + Δ (2 Σⱼ 2ʲ |b ∧ Uⱼ| − Σuᵢ)
        // and |b ∧ Uⱼ| comes from the crate's XNOR-popcount scan:
        //   |b ∧ Uⱼ| = (|b| + |Uⱼ| − (D − agreeⱼ)) / 2.
        let mut rq = vec![0.0f32; dim];
        self.rotation.apply_into(&q, &mut rq);
        let mut qr = vec![0.0f32; dim];
        let max_len = coarse
            .iter()
            .map(|&(_, l)| self.lists[l as usize].pos.len())
            .max()
            .unwrap_or(0);
        let mut agree = vec![0u32; max_len * QUERY_BITS];
        let mut scores = vec![0.0f32; max_len];
        let mut below: Vec<u64> = Vec::with_capacity(max_len.div_ceil(64));
        let mut plane = QueryPlanes::new(self.n_words);
        if ip {
            plane.quantize(&rq);
        }
        let mut cand = Candidates::new(cap);
        let check_tomb = self.n_tombstones > 0 || exclude.iter().any(|&w| w != 0);
        let hidden = |pos: u32| {
            self.is_tombstoned(pos)
                || exclude
                    .get(pos as usize / 64)
                    .is_some_and(|w| w & (1 << (pos % 64)) != 0)
        };
        let d = dim as f32;
        // Per probed list, what the refinement stage needs: the rotated
        // query (residual for l2/cosine), its Σqᵢ and ‖q‖₁, ‖q‖² and the
        // inner-product base ⟨q, c⟩.
        let mut probes: Vec<Probe> = Vec::with_capacity(coarse.len());
        let mut probe_q: Vec<f32> = Vec::with_capacity(coarse.len() * dim);
        let mut probe_fixed: Vec<i16> = Vec::with_capacity(coarse.len() * dim);
        for (pi, &(coarse_score, l)) in coarse.iter().enumerate() {
            let list = &self.lists[l as usize];
            let len = list.pos.len();
            let (q_sq, base) = if ip {
                probe_q.extend_from_slice(&rq);
                (0.0, -coarse_score)
            } else {
                let rc = &self.rot_centroids[l as usize * dim..(l as usize + 1) * dim];
                for ((o, a), c) in qr.iter_mut().zip(&rq).zip(rc) {
                    *o = a - c;
                }
                plane.quantize(&qr);
                probe_q.extend_from_slice(&qr);
                (dot(&qr, &qr), 0.0)
            };
            let pq = &probe_q[pi * dim..];
            let qscale = fixed_query(pq, &mut probe_fixed);
            probes.push(Probe {
                list: l,
                qscale,
                q_sq,
                base,
                sum: pq.iter().sum(),
                l1: pq.iter().map(|x| x.abs()).sum(),
            });
            for j in 0..QUERY_BITS {
                scan(
                    &list.codes,
                    self.n_words,
                    len,
                    &plane.words[j * self.n_words..(j + 1) * self.n_words],
                    self.last_mask,
                    &mut agree[j * max_len..j * max_len + len],
                );
            }
            // Folding the planes: with A = Σⱼ 2ʲ agreeⱼ and P = Σⱼ 2ʲ |Uⱼ|,
            //   √D ⟨x̄, q⟩ ≈ c0 + c1 |b| + Δ A
            // where c0 = Δ (P − 15 D − Σu) − lo D and c1 = 2 lo + 15 Δ.
            let levels = ((1 << QUERY_BITS) - 1) as f32;
            let c0 = plane.delta * (plane.weighted_ones - levels * d - plane.sum_u) - plane.lo * d;
            let c1 = 2.0 * plane.lo + levels * plane.delta;
            let (a0, rest) = agree.split_at(max_len);
            let (a1, rest) = rest.split_at(max_len);
            let (a2, a3) = rest.split_at(max_len);
            // Scores first, in a branch-free loop the compiler vectorises;
            // then the few below the threshold become candidates.
            let (sign, add) = if ip { (-1.0, -base) } else { (-2.0, q_sq) };
            let out = &mut scores[..len];
            simd::fold(
                &simd::Fold {
                    c0,
                    c1,
                    delta: plane.delta,
                    add,
                    norm_w: if ip { 0.0 } else { 1.0 },
                    sign,
                },
                &simd::Rows {
                    agree: [a0, a1, a2, a3],
                    ones: &list.ones,
                    scale: &list.scale,
                    norm_sq: &list.norm_sq,
                },
                out,
            );
            simd::below(out, cand.worst, &mut below);
            for (chunk, &bits) in below.iter().enumerate() {
                let mut bits = bits;
                while bits != 0 {
                    let i = chunk * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let score = out[i];
                    // The threshold tightens as the pool fills.
                    if score >= cand.worst {
                        continue;
                    }
                    let pos = list.pos[i];
                    if check_tomb && hidden(pos) {
                        continue;
                    }
                    cand.push(Cand {
                        score,
                        pos,
                        probe: pi as u32,
                        row: i as u32,
                    });
                }
            }
        }

        // Refine: re-score the candidates from their 8-bit codes. The score
        // is then off by at most `Δ/2 · ‖q‖₁` in ⟨r, q⟩ (each component is
        // rounded by at most Δ/2), a bound that holds for every row, so
        // visiting candidates by `score − bound` and stopping once a bound
        // passes the k-th exact distance found gives exactly the answer of
        // reranking every candidate, while most never load their vector.
        let cands = cand.into_vec();
        touch_fine(&self.lists, &probes, &cands, dim);
        let refined: Vec<std::cmp::Reverse<(OrdF32, u32)>> = cands
            .iter()
            .map(|c| {
                let p = &probes[c.probe as usize];
                let list = &self.lists[p.list as usize];
                let row = c.row as usize;
                let [lo, delta] = list.fine_grid[row];
                let pq = &probe_fixed[c.probe as usize * dim..(c.probe as usize + 1) * dim];
                let code = &list.fine[row * dim..(row + 1) * dim];
                let est = lo * p.sum + delta * p.qscale * fine_dot(code, pq) as f32;
                // The code's rounding (Δ/2 a component against ‖q‖₁), the
                // query's (qscale/2 a component against Σuᵢ ≤ 255 D), and
                // slack for float rounding in the sums themselves.
                // The rotation is orthogonal only up to float rounding, so
                // the slack scales with the magnitudes involved.
                let norm_sq = list.norm_sq[row];
                let err = 0.5 * delta * (p.l1 + 255.0 * d * p.qscale) * (1.0 + 1e-4)
                    + 1e-5 * (p.q_sq + norm_sq + 2.0 * est.abs() + p.base.abs())
                    + 1e-7;
                let lower = match self.metric {
                    Metric::InnerProduct => -(p.base + est) - err,
                    Metric::L2 => p.q_sq + norm_sq - 2.0 * est - 2.0 * err,
                    // On unit vectors 1 − cos = ‖q − x‖² / 2.
                    Metric::Cosine => 0.5 * (p.q_sq + norm_sq - 2.0 * est) - err,
                };
                std::cmp::Reverse((OrdF32(lower), c.pos))
            })
            .collect();
        // A heap, not a sort: the loop below usually stops after a few
        // more than `k` candidates.
        let mut refined = BinaryHeap::from(refined);

        // Rerank exactly, in order of the lower bound.
        let mut best: BinaryHeap<(OrdF32, u32)> = BinaryHeap::with_capacity(k + 1);
        while let Some(std::cmp::Reverse((OrdF32(lower), pos))) = refined.pop() {
            if best.len() == k && best.peek().is_some_and(|w| lower > w.0 .0) {
                break;
            }
            if shared.is_some_and(|s| lower > s.get()) {
                break;
            }
            let e = (OrdF32(self.exact(&q, pos)), pos);
            let kept = if best.len() < k {
                best.push(e);
                true
            } else if let Some(mut w) = best.peek_mut() {
                let better = e < *w;
                if better {
                    *w = e;
                }
                better
            } else {
                false
            };
            if kept {
                if let Some(s) = shared {
                    s.offer(e.0 .0);
                }
            }
        }
        let mut exact: Vec<(u32, f32)> = best.into_iter().map(|(d, p)| (p, d.0)).collect();
        exact.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        Ok(exact)
    }

    /// Exact top-`k` over every live row (ground truth, and the answer when
    /// a caller asks for exhaustive search).
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<(u32, f32)>> {
        self.exact_search_excluding(query, k, &[])
    }

    /// [`PartitionIndex::exact_search`] skipping the positions set in
    /// `exclude` (the bitset [`PartitionIndex::search_excluding`] takes).
    pub fn exact_search_excluding(
        &self,
        query: &[f32],
        k: usize,
        exclude: &[u64],
    ) -> Result<Vec<(u32, f32)>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = self.prepare_query(query)?;
        let excluded = |p: u32| {
            exclude
                .get(p as usize / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        };
        let mut all: Vec<(u32, f32)> = (0..self.len() as u32)
            .filter(|&p| !self.is_tombstoned(p) && !excluded(p))
            .map(|p| (p, self.exact(&q, p)))
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        all.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        Ok(all)
    }
}

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
}

impl PartitionIndex {
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
        let listed: usize = p.lists.iter().map(|l| l.pos.len()).sum();
        if listed != n
            || p.lists.iter().any(|l| {
                l.norm_sq.len() != l.pos.len()
                    || l.scale.len() != l.pos.len()
                    || l.ones.len() != l.pos.len()
                    || l.codes.len() != l.pos.len() * n_words
                    || l.fine.len() != l.pos.len() * dim
                    || l.fine_grid.len() != l.pos.len()
                    || l.pos.iter().any(|&x| x as usize >= n)
            })
        {
            return corrupt("inverted lists disagree with the row tables");
        }
        let (rotation_kind, rotation) = rotation_for(dim, p.seed);
        let rot_centroids = p
            .centroids
            .chunks_exact(dim)
            .flat_map(|c| rotation.apply(c))
            .collect();
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
        })
    }

    /// Which rotation the codes use (Hadamard for power-of-two dimensions).
    pub fn rotation_kind(&self) -> RandomRotationKind {
        self.rotation_kind
    }
}
