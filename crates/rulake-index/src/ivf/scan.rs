//! Stage 1 of a search: a 1-bit estimate for every row of the probed lists,
//! keeping the `k × rerank` best as candidates.
//!
//! Why this stage decides recall: it is the only one that looks at every
//! row of the probed lists, so a true neighbour it leaves out of the pool is
//! lost; the later stages only make a wide pool cheap. It is also the one
//! stage whose cost grows with the rows probed, which is why it works on
//! whole lists at a time in branch-free loops (`ruvector-rabitq`'s
//! XNOR-popcount scan, then [`simd::fold`]) and touches per-row state only
//! for the few rows that can still enter the pool.
//!
//! The estimate of `⟨r, q⟩` from a row's sign code `b` and the 4-bit query
//! (see `query`): with `x̄ = (2b − 1)/√D` and `qᵢ ≈ lo + Δ·uᵢ` (`uᵢ` in
//! `0..16`, bit planes `U₀..U₃`),
//!
//! `√D ⟨x̄, q⟩ ≈ lo (2|b| − D) + Δ (2 Σⱼ 2ʲ |b ∧ Uⱼ| − Σuᵢ)`,
//!
//! where `|b ∧ Uⱼ| = (|b| + |Uⱼ| − (D − agreeⱼ)) / 2` comes from the scan's
//! agreement count, and the row's `scale` turns `√D ⟨x̄, q⟩` into `⟨r, q⟩`.

use super::candidates::{Cand, Candidates};
use super::codes::List;
use super::query::{fixed_query, QueryPlanes, QUERY_BITS};
use super::PartitionIndex;
use crate::deadline::{Deadline, CHECK_EVERY_LISTS};
use crate::error::Result;
use crate::simd::{self, dot};
use rulake_types::Metric;
use ruvector_rabitq::scan::scan;

/// A probed list and the query terms its candidates are refined with.
pub(super) struct Probe {
    pub list: u32,
    /// `qᵢ ≈ qscale · q̂ᵢ` for the 16-bit query of this probe.
    pub qscale: f32,
    /// `‖q_r‖²` of the rotated query residual (0 for inner product).
    pub q_sq: f32,
    /// `⟨q, c⟩` of the list's centroid for inner product (0 otherwise).
    pub base: f32,
    /// `Σqᵢ` of the probe's rotated query.
    pub sum: f32,
    /// `‖q‖₁` of the probe's rotated query.
    pub l1: f32,
}

/// What stage 1 hands on to refinement.
pub(super) struct Pool {
    /// The best candidates, in no particular order.
    pub cands: Vec<Cand>,
    /// One entry per probed list, in probe order ([`Cand::probe`] indexes it).
    pub probes: Vec<Probe>,
    /// Probe `p`'s 16-bit query is `fixed[p * dim..(p + 1) * dim]`.
    pub fixed: Vec<i16>,
}

/// Stage 1's working memory, allocated once a search and sized for the
/// longest probed list.
struct Scratch {
    /// The rotated query.
    rq: Vec<f32>,
    /// The rotated query residual of the current list (l2 and cosine).
    qr: Vec<f32>,
    plane: QueryPlanes,
    /// Plane `j`'s agreement counts are `agree[j * max_len..][..len]`.
    agree: Vec<u32>,
    scores: Vec<f32>,
    below: Vec<u64>,
    max_len: usize,
}

/// Whether bit `pos` of the bitset `bits` is set (positions past its end
/// are not).
#[inline]
pub(super) fn bit_set(bits: &[u64], pos: u32) -> bool {
    bits.get(pos as usize / 64)
        .is_some_and(|w| w & (1 << (pos % 64)) != 0)
}

impl PartitionIndex {
    /// Score every row of the `coarse` lists from its 1-bit code and keep
    /// the `cap` best that are neither tombstoned nor in `exclude`; gives
    /// up between lists once `deadline` has passed.
    pub(super) fn estimate(
        &self,
        q: &[f32],
        coarse: &[(f32, u32)],
        cap: usize,
        exclude: &[u64],
        deadline: Deadline,
    ) -> Result<Pool> {
        let dim = self.dim;
        let max_len = coarse
            .iter()
            .map(|&(_, l)| self.lists[l as usize].pos.len())
            .max()
            .unwrap_or(0);
        let mut s = Scratch {
            rq: vec![0.0f32; dim],
            qr: vec![0.0f32; dim],
            plane: QueryPlanes::new(self.n_words),
            agree: vec![0u32; max_len * QUERY_BITS],
            scores: vec![0.0f32; max_len],
            below: Vec::with_capacity(max_len.div_ceil(64)),
            max_len,
        };
        self.rotation.apply_into(q, &mut s.rq);
        if self.metric == Metric::InnerProduct {
            s.plane.quantize(&s.rq);
        }
        let mut cand = Candidates::new(cap);
        let check_hidden = self.n_tombstones > 0 || exclude.iter().any(|&w| w != 0);
        let hidden = |pos: u32| self.is_tombstoned(pos) || bit_set(exclude, pos);
        let mut probes = Vec::with_capacity(coarse.len());
        let mut fixed = Vec::with_capacity(coarse.len() * dim);
        for (pi, &(coarse_score, l)) in coarse.iter().enumerate() {
            if pi % CHECK_EVERY_LISTS == 0 {
                deadline.check()?;
            }
            let list = &self.lists[l as usize];
            let probe = self.probe(&mut s, coarse_score, l, &mut fixed);
            let len = self.score_list(&mut s, list, &probe);
            let scores = &s.scores[..len];
            simd::below(scores, cand.worst, &mut s.below);
            let filter = check_hidden.then_some(&hidden);
            admit(&mut cand, scores, &s.below, list, pi as u32, filter);
            probes.push(probe);
        }
        Ok(Pool {
            cands: cand.into_vec(),
            probes,
            fixed,
        })
    }

    /// The query terms for list `l`: for l2 and cosine the rotated query
    /// residual (quantised into `s.plane` for the scan); for inner product
    /// the rotated query itself, quantised once by [`Self::estimate`].
    /// Appends the probe's 16-bit query to `fixed`.
    fn probe(&self, s: &mut Scratch, coarse_score: f32, l: u32, fixed: &mut Vec<i16>) -> Probe {
        let dim = self.dim;
        let ip = self.metric == Metric::InnerProduct;
        let (q_sq, base) = if ip {
            (0.0, -coarse_score)
        } else {
            let rc = &self.rot_centroids[l as usize * dim..(l as usize + 1) * dim];
            for ((o, a), c) in s.qr.iter_mut().zip(&s.rq).zip(rc) {
                *o = a - c;
            }
            s.plane.quantize(&s.qr);
            (dot(&s.qr, &s.qr), 0.0)
        };
        let pq = if ip { &s.rq } else { &s.qr };
        let qscale = fixed_query(pq, fixed);
        Probe {
            list: l,
            qscale,
            q_sq,
            base,
            sum: pq.iter().sum(),
            l1: pq.iter().map(|x| x.abs()).sum(),
        }
    }

    /// The 1-bit estimated scores of `list`'s rows, written to
    /// `s.scores[..len]`; returns `len`.
    fn score_list(&self, s: &mut Scratch, list: &List, probe: &Probe) -> usize {
        let len = list.pos.len();
        let max_len = s.max_len;
        for j in 0..QUERY_BITS {
            scan(
                &list.codes,
                self.n_words,
                len,
                s.plane.plane(j),
                self.last_mask,
                &mut s.agree[j * max_len..j * max_len + len],
            );
        }
        // Folding the planes: with A = Σⱼ 2ʲ agreeⱼ and P = Σⱼ 2ʲ |Uⱼ|,
        //   √D ⟨x̄, q⟩ ≈ c0 + c1 |b| + Δ A
        // where c0 = Δ (P − 15 D − Σu) − lo D and c1 = 2 lo + 15 Δ.
        let plane = &s.plane;
        let d = self.dim as f32;
        let levels = ((1 << QUERY_BITS) - 1) as f32;
        let c0 = plane.delta * (plane.weighted_ones - levels * d - plane.sum_u) - plane.lo * d;
        let c1 = 2.0 * plane.lo + levels * plane.delta;
        let (a0, rest) = s.agree.split_at(max_len);
        let (a1, rest) = rest.split_at(max_len);
        let (a2, a3) = rest.split_at(max_len);
        let ip = self.metric == Metric::InnerProduct;
        let (sign, add) = if ip {
            (-1.0, -probe.base)
        } else {
            (-2.0, probe.q_sq)
        };
        // Scores first, in a branch-free loop the compiler vectorises; the
        // caller then admits the few below the pool's threshold.
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
            &mut s.scores[..len],
        );
        len
    }
}

/// Offer the pool the rows of `list` (probe `probe`) whose bits are set in
/// `below` (their score beat the threshold when the mask was taken), except
/// those `hidden` rejects.
#[inline]
fn admit<H: Fn(u32) -> bool>(
    cand: &mut Candidates,
    scores: &[f32],
    below: &[u64],
    list: &List,
    probe: u32,
    hidden: Option<&H>,
) {
    for (chunk, &bits) in below.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let i = chunk * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let score = scores[i];
            // The threshold tightens as the pool fills.
            if score >= cand.worst {
                continue;
            }
            let pos = list.pos[i];
            if hidden.is_some_and(|h| h(pos)) {
                continue;
            }
            cand.push(Cand {
                score,
                pos,
                probe,
                row: i as u32,
            });
        }
    }
}
