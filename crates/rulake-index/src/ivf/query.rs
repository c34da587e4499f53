//! The query, quantised to meet the row codes on their own terms.
//!
//! Why quantise the query at all: the two estimate stages are only cheap
//! when they run on integers.
//! - The 1-bit stage wants `⟨b, q⟩` for every row's sign code `b`. With the
//!   query on a 4-bit grid, split into bit planes `U₀..U₃`, that product is
//!   four XNOR-popcount scans of `ruvector-rabitq` per list (see `scan`).
//!   Four bits, the RaBitQ paper's choice, keep the query's rounding small
//!   next to the 1-bit code's own error.
//! - The 8-bit stage wants `⟨u, q⟩` for a candidate's 8-bit code `u`. With
//!   the query in 16-bit fixed point that is an exact integer dot product,
//!   and the query's rounding is a known quantity the refinement bound adds
//!   in.

use super::codes::min_max;

/// Bits per query component in the estimator.
pub(super) const QUERY_BITS: usize = 4;

/// A query vector quantised to [`QUERY_BITS`] bits per component, as bit planes.
pub(super) struct QueryPlanes {
    n_words: usize,
    /// Plane `j` is `words[j * n_words..(j + 1) * n_words]`.
    pub words: Vec<u64>,
    ones: [f32; QUERY_BITS],
    /// `Σⱼ 2ʲ ones[j]`.
    pub weighted_ones: f32,
    pub lo: f32,
    pub delta: f32,
    pub sum_u: f32,
}

impl QueryPlanes {
    pub fn new(n_words: usize) -> Self {
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

    /// Bit plane `j`.
    pub fn plane(&self, j: usize) -> &[u64] {
        &self.words[j * self.n_words..(j + 1) * self.n_words]
    }

    /// Quantise `q` onto its own `[min, max]` grid of `2^QUERY_BITS` levels.
    pub fn quantize(&mut self, q: &[f32]) {
        let (lo, hi) = min_max(q);
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
            self.ones[j] = self.plane(j).iter().map(|w| w.count_ones()).sum::<u32>() as f32;
        }
        self.weighted_ones = (0..QUERY_BITS)
            .map(|j| (1u32 << j) as f32 * self.ones[j])
            .sum();
        self.lo = lo;
        self.delta = delta;
        self.sum_u = sum_u as f32;
    }
}

/// A probed list's query in 16-bit fixed point for
/// [`fine_dot`](crate::simd::fine_dot): `qᵢ ≈ scale · q̂ᵢ` with `|q̂ᵢ| ≤ 32767`.
/// Appends `q̂` to `out` and returns `scale`.
pub(super) fn fixed_query(q: &[f32], out: &mut Vec<i16>) -> f32 {
    let max = q.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
    out.extend(q.iter().map(|&x| (x / scale).round() as i16));
    scale
}
