//! A search, end to end: choose lists, then narrow the candidates in three
//! stages of rising cost, so the expensive step runs on as few rows as
//! possible.
//!
//! 1. every row of the probed lists gets a 1-bit estimate; the `k × rerank`
//!    best are kept (`scan`, `candidates`);
//! 2. those are re-scored from an 8-bit code of the same rotated residual
//!    (one cache line or two a row, next to the list), which also gives a
//!    *deterministic* bound on the remaining error: each component is
//!    rounded by at most half a grid step;
//! 3. candidates are taken in order of `score − bound` and re-scored
//!    exactly against the stored vectors until the next bound cannot beat
//!    the `k`-th exact distance.
//!
//! Why stop by a bound instead of reranking a fixed number: stage 3 returns
//! exactly what reranking all `k × rerank` candidates would, but touches a
//! handful of full vectors instead of hundreds (usually little more than
//! `k`), where a random read of a 512-byte vector is the most expensive
//! thing the search does. The 1-bit stage sets recall (how wide a pool holds
//! the true neighbours); the later stages make a wide pool cheap.
//!
//! Exhaustive search ([`PartitionIndex::exact_search`]) lives here too, so
//! both searches share the query preparation and exact distance.

use super::candidates::Cand;
use super::codes::List;
use super::scan::{bit_set, Pool, Probe};
use super::{normalize, PartitionIndex, DEFAULT_RERANK, MAX_RERANK};
use crate::bound::SharedKth;
use crate::deadline::{Deadline, CHECK_EVERY_RERANKED};
use crate::error::{IndexError, Result};
use crate::exact::OrdF32;
use crate::simd::{self, dot, fine_dot, l2_sq};
use rulake_types::Metric;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Candidates after refinement, smallest lower bound first: `(bound, position)`.
type Refined = BinaryHeap<Reverse<(OrdF32, u32)>>;

/// Results order: by distance, ties by position.
fn by_distance(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    a.1.total_cmp(&b.1).then(a.0.cmp(&b.0))
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
        self.search_within(query, k, nprobe, rerank, exclude, shared, Deadline::NONE)
    }

    /// [`PartitionIndex::search_shared`] that gives up once `deadline`
    /// passes: the clock is read before the search starts, between probed
    /// lists and between stages (see [`crate::deadline`]), and a search
    /// past it ends with [`IndexError::DeadlineExceeded`].
    ///
    /// `nprobe` is clamped to the lists that exist and `rerank` to
    /// `1..=`[`MAX_RERANK`]; the pool (`k × rerank`) never exceeds the live
    /// rows. A search therefore costs at most one exhaustive pass.
    #[allow(clippy::too_many_arguments)]
    pub fn search_within(
        &self,
        query: &[f32],
        k: usize,
        nprobe: Option<usize>,
        rerank: Option<usize>,
        exclude: &[u64],
        shared: Option<&SharedKth>,
        deadline: Deadline,
    ) -> Result<Vec<(u32, f32)>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = self.prepare_query(query)?;
        let live = self.live_len();
        if live == 0 {
            return Ok(Vec::new());
        }
        deadline.check()?;
        let nlist = self.lists.len();
        let nprobe = nprobe
            .unwrap_or_else(|| self.default_probes_for(k, 1.0))
            .clamp(1, nlist);
        let rerank = rerank.unwrap_or(DEFAULT_RERANK).clamp(1, MAX_RERANK);
        let cap = k.saturating_mul(rerank).min(live);

        // Coarse: choose lists.
        let ip = self.metric == Metric::InnerProduct;
        let mut centroid_scores = Vec::with_capacity(self.lists.len());
        simd::coarse_scores(&q, &self.centroids, ip, &mut centroid_scores);
        let coarse = self.nearest_lists(&centroid_scores, nprobe);

        let pool = self.estimate(&q, &coarse, cap, exclude, deadline)?;
        deadline.check()?;
        let refined = self.refine(&pool);
        deadline.check()?;
        self.rerank(&q, refined, k, shared, deadline)
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

    /// Stage 2: re-score the candidates from their 8-bit codes. The score
    /// is then off by at most `Δ/2 · ‖q‖₁` in ⟨r, q⟩ (each component is
    /// rounded by at most Δ/2), a bound that holds for every row, so
    /// visiting candidates by `score − bound` and stopping once a bound
    /// passes the k-th exact distance found gives exactly the answer of
    /// reranking every candidate, while most never load their vector.
    fn refine(&self, pool: &Pool) -> Refined {
        touch_fine(&self.lists, &pool.probes, &pool.cands, self.dim);
        let refined: Vec<Reverse<(OrdF32, u32)>> = pool
            .cands
            .iter()
            .map(|c| Reverse((OrdF32(self.lower_bound(c, pool)), c.pos)))
            .collect();
        // A heap, not a sort: the rerank usually stops after a few more
        // than `k` candidates.
        BinaryHeap::from(refined)
    }

    /// A lower bound on candidate `c`'s exact distance, from its 8-bit code.
    #[inline]
    fn lower_bound(&self, c: &Cand, pool: &Pool) -> f32 {
        let dim = self.dim;
        let d = dim as f32;
        let p = &pool.probes[c.probe as usize];
        let list = &self.lists[p.list as usize];
        let row = c.row as usize;
        let [lo, delta] = list.fine_grid[row];
        let pq = &pool.fixed[c.probe as usize * dim..(c.probe as usize + 1) * dim];
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
        match self.metric {
            Metric::InnerProduct => -(p.base + est) - err,
            Metric::L2 => p.q_sq + norm_sq - 2.0 * est - 2.0 * err,
            // On unit vectors 1 − cos = ‖q − x‖² / 2.
            Metric::Cosine => 0.5 * (p.q_sq + norm_sq - 2.0 * est) - err,
        }
    }

    /// Stage 3: rerank exactly, in order of the lower bound, until the next
    /// bound cannot beat the `k`-th exact distance here or `shared`'s.
    fn rerank(
        &self,
        q: &[f32],
        mut refined: Refined,
        k: usize,
        shared: Option<&SharedKth>,
        deadline: Deadline,
    ) -> Result<Vec<(u32, f32)>> {
        let mut best: BinaryHeap<(OrdF32, u32)> = BinaryHeap::with_capacity(k + 1);
        let mut reranked = 0usize;
        while let Some(Reverse((OrdF32(lower), pos))) = refined.pop() {
            if best.len() == k && best.peek().is_some_and(|w| lower > w.0 .0) {
                break;
            }
            if shared.is_some_and(|s| lower > s.get()) {
                break;
            }
            reranked += 1;
            if reranked % CHECK_EVERY_RERANKED == 0 {
                deadline.check()?;
            }
            let e = (OrdF32(self.exact(q, pos)), pos);
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
        exact.sort_by(by_distance);
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
        let mut all: Vec<(u32, f32)> = (0..self.len() as u32)
            .filter(|&p| !self.is_tombstoned(p) && !bit_set(exclude, p))
            .map(|p| (p, self.exact(&q, p)))
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        all.select_nth_unstable_by(k - 1, by_distance);
        all.truncate(k);
        all.sort_by(by_distance);
        Ok(all)
    }

    /// Exact top-`k` over the rows at `positions` only (live ones; others
    /// and positions past the end are skipped): the plan of a filtered
    /// search when few rows match. Reads only those rows' vectors, and
    /// looks at `deadline` every few thousand rows.
    pub fn exact_search_among(
        &self,
        query: &[f32],
        k: usize,
        positions: &[u32],
        deadline: Deadline,
    ) -> Result<Vec<(u32, f32)>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = self.prepare_query(query)?;
        deadline.check()?;
        let mut all = Vec::with_capacity(positions.len());
        for (i, &p) in positions.iter().enumerate() {
            if i % 4096 == 4095 {
                deadline.check()?;
            }
            if (p as usize) < self.len() && !self.is_tombstoned(p) {
                all.push((p, self.exact(&q, p)));
            }
        }
        let k = k.min(all.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        all.select_nth_unstable_by(k - 1, by_distance);
        all.truncate(k);
        all.sort_by(by_distance);
        Ok(all)
    }

    /// Check a query and bring it into the index's space (normalised for
    /// cosine).
    pub(super) fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
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

    /// The exact distance the index reports between `q` and row `pos`.
    #[inline]
    pub(super) fn exact(&self, q: &[f32], pos: u32) -> f32 {
        let x = &self.vectors[pos as usize * self.dim..(pos as usize + 1) * self.dim];
        match self.metric {
            Metric::L2 => l2_sq(q, x),
            Metric::InnerProduct => -dot(q, x),
            // Both sides are unit vectors (or zero): 1 − ⟨q, x⟩.
            Metric::Cosine => 1.0 - dot(q, x),
        }
    }
}
