//! The search's inner loops, compiled twice: once for the x86-64 baseline
//! every build targets, once with AVX2 and FMA (the x86-64-v3 level), and
//! picked at run time.
//!
//! Why: a release binary must run on any x86-64 machine a cluster schedules
//! it on, but the loops that fold scores, re-score 8-bit codes and compute
//! exact distances are 15–17 % faster as 256-bit code (measured by
//! `crates/rulake-bench/py/target_cpu.py`, figures in docs/BENCHMARKS.md). Compiling the whole
//! binary for x86-64-v3 would make it crash with an illegal instruction on an
//! older node; dispatching here costs one predictable branch a call.
//!
//! The loop bodies are the same Rust code in both variants (`#[inline(always)]`
//! generics instantiated inside a `#[target_feature]` function), with the
//! same eight-lane accumulation order, so both variants return bit-identical
//! results; only the instruction width differs.
//!
//! This is the one module of the partition index that uses `unsafe`: calling
//! a `#[target_feature]` function is unsafe because the caller must know the
//! CPU has the features, and every call below is guarded by [`has_v3`]; and
//! the prefetch hint ([`prefetch`]) takes a raw address.
#![allow(unsafe_code)]

use rulake_types::{dot as dot_generic, l2_sq as l2_generic};

/// Whether this CPU runs the x86-64-v3 variants (checked once; the standard
/// library caches the CPUID answer).
#[inline]
fn has_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Declares `pub fn $name` that runs `$body` as x86-64-v3 code when the CPU
/// allows it and as baseline code otherwise.
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$doc])*
        #[inline]
        #[allow(clippy::unused_unit)]
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::unused_unit)]
            fn generic($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::unused_unit)]
            fn v3($($arg: $ty),*) -> $ret {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if has_v3() {
                // SAFETY: `has_v3` confirmed AVX2 and FMA on this CPU.
                return unsafe { v3($($arg),*) };
            }
            generic($($arg),*)
        }
    };
}

dispatch! {
    /// Squared Euclidean distance.
    fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
        l2_generic(a, b)
    }
}

dispatch! {
    /// Inner product.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_generic(a, b)
    }
}

dispatch! {
    /// Coarse scores of a query against every centroid: squared L2, or
    /// `−⟨q, c⟩` for inner product; `out` gets one score per centroid.
    fn coarse_scores(q: &[f32], centroids: &[f32], ip: bool, out: &mut Vec<f32>) -> () {
        let dim = q.len();
        out.clear();
        out.reserve(centroids.len() / dim.max(1));
        // A plain loop, so the distance code is inlined into this function
        // (and compiled with its features) rather than left in a generic
        // iterator adapter compiled for the baseline.
        for c in centroids.chunks_exact(dim) {
            let s = if ip { -dot_generic(q, c) } else { l2_generic(q, c) };
            out.push(s);
        }
    }
}

/// The per-list constants of the 1-bit score fold (see `ivf::scan`).
pub struct Fold {
    /// `Δ (P − 15 D − Σu) − lo D`.
    pub c0: f32,
    /// `2 lo + 15 Δ`.
    pub c1: f32,
    /// The query's grid step `Δ`.
    pub delta: f32,
    /// Added to every score: `‖q_r‖²` (L2) or `−⟨q, c⟩` (inner product).
    pub add: f32,
    /// Weight of the row's `‖r‖²`: 1 for L2, 0 for inner product.
    pub norm_w: f32,
    /// Weight of the estimate: −2 for L2, −1 for inner product.
    pub sign: f32,
}

/// A list's rows as the fold reads them: the four plane agreements and
/// the per-row factors, all of one length.
pub struct Rows<'a> {
    /// Agreement counts of bit planes 0..4.
    pub agree: [&'a [u32]; 4],
    /// Set bits of each code.
    pub ones: &'a [f32],
    /// RaBitQ correction times norm.
    pub scale: &'a [f32],
    /// `‖r‖²` of each row.
    pub norm_sq: &'a [f32],
}

dispatch! {
    /// Estimated scores of a list's rows from their bit-plane agreements.
    fn fold(f: &Fold, rows: &Rows<'_>, out: &mut [f32]) -> () {
        let [a0, a1, a2, a3] = rows.agree;
        let n = out.len();
        let lanes = out
            .iter_mut()
            .zip(&a0[..n])
            .zip(&a1[..n])
            .zip(&a2[..n])
            .zip(&a3[..n])
            .zip(&rows.ones[..n])
            .zip(&rows.scale[..n])
            .zip(&rows.norm_sq[..n]);
        for (((((((o, &b0), &b1), &b2), &b3), &ones), &scale), &norm) in lanes {
            let a = b0 + 2 * b1 + 4 * b2 + 8 * b3;
            let x_dot_q = f.c0 + f.c1 * ones + f.delta * a as f32;
            *o = f.add + f.norm_w * norm + f.sign * scale * x_dot_q;
        }
    }
}

dispatch! {
    /// `Σ uᵢ q̂ᵢ` over an 8-bit code and a 16-bit query, exact in integers:
    /// blocks of 2048 keep every `i32` lane below 256 · 255 · 32767 < 2³¹.
    fn fine_dot(u: &[u8], q: &[i16]) -> i64 {
        // Plain `for` loops: an iterator `map(..).sum()` here would leave
        // the arithmetic in a generic adapter compiled for the baseline.
        let mut total = 0i64;
        for (u, q) in u.chunks(2048).zip(q.chunks(2048)) {
            let mut acc = [0i32; 8];
            let cu = u.chunks_exact(8);
            let cq = q.chunks_exact(8);
            let (ru, rq) = (cu.remainder(), cq.remainder());
            for (a, b) in cu.zip(cq) {
                for i in 0..8 {
                    acc[i] += a[i] as i32 * b[i] as i32;
                }
            }
            for (a, b) in ru.iter().zip(rq) {
                total += *a as i64 * *b as i64;
            }
            for x in acc {
                total += x as i64;
            }
        }
        total
    }
}

dispatch! {
    /// One bit per score, set where the score is below `t`: bit `j` of
    /// `masks[c]` is `scores[64 c + j] < t`. The candidate filter then
    /// visits only the rows that can enter the pool, instead of a branch a
    /// row (a list holds about a thousand rows, and after the first probe
    /// few of them qualify).
    fn below(scores: &[f32], t: f32, masks: &mut Vec<u64>) -> () {
        masks.clear();
        let chunks = scores.chunks_exact(64);
        let rest = chunks.remainder();
        for c in chunks {
            // A fixed-length array, so the loop below has a known trip count.
            let c: &[f32; 64] = c.try_into().expect("chunks of exactly 64");
            let mut m = 0u64;
            for (j, &x) in c.iter().enumerate() {
                m |= ((x < t) as u64) << j;
            }
            masks.push(m);
        }
        if !rest.is_empty() {
            let mut m = 0u64;
            for (j, &x) in rest.iter().enumerate() {
                m |= ((x < t) as u64) << j;
            }
            masks.push(m);
        }
    }
}

/// Ask the CPU to start loading the cache lines of `xs` (a hint: no fault,
/// no effect on results), so that a later read of them does not wait for
/// memory.
#[inline(always)]
pub fn prefetch<T>(xs: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = xs.as_ptr() as *const i8;
        let len = std::mem::size_of_val(xs);
        let mut i = 0;
        while i < len {
            // SAFETY: the address is inside `xs`, and a prefetch never
            // faults or writes; SSE is part of the x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(i)) };
            i += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xs;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one comparison at a time.
    fn below_generic_for_test(scores: &[f32], t: f32, masks: &mut Vec<u64>) {
        masks.clear();
        masks.resize(scores.len().div_ceil(64), 0);
        for (i, &s) in scores.iter().enumerate() {
            if s < t {
                masks[i / 64] |= 1 << (i % 64);
            }
        }
    }

    #[test]
    fn both_variants_agree_bit_for_bit() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        assert_eq!(l2_sq(&a, &b).to_bits(), l2_generic(&a, &b).to_bits());
        assert_eq!(dot(&a, &b).to_bits(), dot_generic(&a, &b).to_bits());
        let scores: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32).collect();
        let (mut m1, mut m2) = (Vec::new(), Vec::new());
        below(&scores, 50.0, &mut m1);
        below_generic_for_test(&scores, 50.0, &mut m2);
        assert_eq!(m1, m2);
        assert_eq!(m1.len(), 4);
        for (i, s) in scores.iter().enumerate() {
            assert_eq!(m1[i / 64] >> (i % 64) & 1 == 1, *s < 50.0);
        }
        let u: Vec<u8> = (0..5000).map(|i| (i * 7 % 256) as u8).collect();
        let q: Vec<i16> = (0..5000).map(|i| (i * 13 % 65536) as u16 as i16).collect();
        let want: i64 = u.iter().zip(&q).map(|(a, b)| *a as i64 * *b as i64).sum();
        assert_eq!(fine_dot(&u, &q), want);
    }
}
