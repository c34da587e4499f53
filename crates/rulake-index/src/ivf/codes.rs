//! What a partition stores per row besides the vector: the codes of its
//! rotated residual, laid out list by list.
//!
//! Why this layout: the encoder here, the scan and refinement in
//! `scan`/`search` and the file format in `persist` must agree bit for bit,
//! so the conventions are fixed in one place:
//! - The rotation, bit packing and 1-bit scan are `ruvector-rabitq`'s: its
//!   random rotation (randomised Hadamard for power-of-two dimensions, a
//!   dense Haar rotation otherwise), bit `i` of a code is the sign of rotated
//!   component `i`, most significant bit first, and its runtime-dispatched
//!   XNOR-popcount scan reads them. Centroids are kept pre-rotated, so a
//!   list's rotated query residual is one subtraction.
//! - Each row also keeps an 8-bit code of the same rotated residual on its
//!   own `[min, max]` grid. It is what the refinement stage reads, and its
//!   rounding (at most half a grid step a component) is what makes the
//!   refinement bound deterministic.
//! - Rows are grouped by list, structure of arrays, so the scan of a list
//!   reads contiguous memory.

use crate::simd::dot;
use ruvector_rabitq::{RandomRotation, RandomRotationKind};

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

/// Everything a row contributes to its list, before it is appended.
pub(super) struct RowCode {
    words: Vec<u64>,
    norm_sq: f32,
    scale: f32,
    fine: Vec<u8>,
    grid: [f32; 2],
}

impl RowCode {
    /// Encode a rotated residual `r` into `n_words` words of signs, its
    /// norm, its scale factor and its 8-bit code.
    pub(super) fn encode(r: &[f32], n_words: usize) -> Self {
        let mut words = vec![0u64; n_words];
        pack_signs(r, &mut words);
        let r2 = dot(r, r);
        // ⟨x̄, r̂⟩ = Σ|rᵢ| / (√D ‖r‖); scale = ‖r‖ / (⟨x̄, r̂⟩ √D) = ‖r‖² / Σ|rᵢ|.
        let l1: f32 = r.iter().map(|v| v.abs()).sum();
        let scale = if l1 > 0.0 { r2 / l1 } else { 0.0 };
        let (fine, grid) = encode_fine(r);
        RowCode {
            words,
            norm_sq: r2,
            scale,
            fine,
            grid,
        }
    }

    /// `‖r‖²`, which the build sums to measure drift.
    pub(super) fn norm_sq(&self) -> f32 {
        self.norm_sq
    }
}

impl List {
    /// Append the row at position `pos`.
    pub(super) fn push(&mut self, pos: u32, code: RowCode) {
        self.pos.push(pos);
        self.norm_sq.push(code.norm_sq);
        self.scale.push(code.scale);
        self.ones
            .push(code.words.iter().map(|w| w.count_ones()).sum::<u32>() as f32);
        self.codes.extend_from_slice(&code.words);
        self.fine.extend_from_slice(&code.fine);
        self.fine_grid.push(code.grid);
    }
}

/// The bits of a code's last word that hold components (the scan masks
/// the padding out).
pub(super) fn last_word_mask(dim: usize) -> u64 {
    let valid = dim - 64 * (dim.div_ceil(64) - 1);
    if valid == 64 {
        !0
    } else {
        !0u64 << (64 - valid)
    }
}

/// The rotation for a dimension and seed; a pure function of both, which is
/// why a persisted partition does not store it.
pub(super) fn rotation_for(dim: usize, seed: u64) -> (RandomRotationKind, RandomRotation) {
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

/// Centroids (row-major, `dim` wide) in the rotated space the codes live in.
pub(super) fn rotate_all(rotation: &RandomRotation, centroids: &[f32], dim: usize) -> Vec<f32> {
    centroids
        .chunks_exact(dim)
        .flat_map(|c| rotation.apply(c))
        .collect()
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

/// The smallest and largest component (`(+∞, −∞)` for an empty slice):
/// the range a uniform grid of codes or query levels spans.
#[inline]
pub(super) fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

/// 8-bit uniform code of a rotated residual on its own `[min, max]` grid.
/// Rounding moves each component by at most `Δ/2`, which is what makes the
/// refinement bound of a search deterministic.
fn encode_fine(r: &[f32]) -> (Vec<u8>, [f32; 2]) {
    let (lo, hi) = min_max(r);
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
