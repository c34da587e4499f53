//! The coarse quantizer: Lloyd's k-means on a sample, seeded and
//! deterministic, with empty clusters re-seeded from the largest one.
//!
//! Assignment dominates build time (`n × nlist × dim` multiply-adds), so it
//! uses `‖c‖² − 2⟨x, c⟩` (the `‖x‖²` term does not change the argmin) and
//! runs in parallel over rows.

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rayon::prelude::*;
use rulake_types::dot;

/// Index of the nearest centroid and `‖c‖² − 2⟨x, c⟩` for it.
#[inline]
pub fn nearest(x: &[f32], centroids: &[f32], c_norms: &[f32], dim: usize) -> (usize, f32) {
    let mut best = (0usize, f32::INFINITY);
    for (j, c) in centroids.chunks_exact(dim).enumerate() {
        let d = c_norms[j] - 2.0 * dot(x, c);
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Squared norms of each centroid.
pub fn norms(centroids: &[f32], dim: usize) -> Vec<f32> {
    centroids.chunks_exact(dim).map(|c| dot(c, c)).collect()
}

/// Assign every row of `data` to its nearest centroid, in parallel.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let cn = norms(centroids, dim);
    data.par_chunks(dim * 256)
        .flat_map_iter(|block| {
            block
                .chunks_exact(dim)
                .map(|x| nearest(x, centroids, &cn, dim).0 as u32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Train `k` centroids on `data` (`n × dim`, row-major).
pub fn train(data: &[f32], dim: usize, k: usize, iters: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / dim;
    let k = k.clamp(1, n.max(1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut centroids: Vec<f32> = order[..k]
        .iter()
        .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    for _ in 0..iters {
        let assignment = assign(data, dim, &centroids);
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &a) in assignment.iter().enumerate() {
            let a = a as usize;
            counts[a] += 1;
            for (s, x) in sums[a * dim..(a + 1) * dim]
                .iter_mut()
                .zip(&data[i * dim..(i + 1) * dim])
            {
                *s += *x as f64;
            }
        }
        for j in 0..k {
            if counts[j] > 0 {
                for d in 0..dim {
                    centroids[j * dim + d] = (sums[j * dim + d] / counts[j] as f64) as f32;
                }
            }
        }
        // Re-seed empty clusters next to the largest one, split by a small
        // perturbation, so no list is wasted.
        for j in 0..k {
            if counts[j] == 0 {
                let big = (0..k).max_by_key(|&c| counts[c]).unwrap_or(0);
                for d in 0..dim {
                    let v = centroids[big * dim + d];
                    let eps = 1e-3 * (v.abs() + 1e-3);
                    centroids[j * dim + d] = v + if rng.gen::<bool>() { eps } else { -eps };
                }
                counts[big] /= 2;
                counts[j] = counts[big];
            }
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_obvious_clusters() {
        let mut data = Vec::new();
        for i in 0..100 {
            let base = if i % 2 == 0 { 0.0 } else { 100.0 };
            data.extend_from_slice(&[base + (i as f32) * 0.01, base]);
        }
        let c = train(&data, 2, 2, 10, 7);
        let a = assign(&data, 2, &c);
        for i in 0..100 {
            assert_eq!(a[i] == a[0], i % 2 == 0);
        }
    }
}
