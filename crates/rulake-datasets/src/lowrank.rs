//! A harder synthetic set: wide vectors that live near a low-dimensional
//! manifold, as learned embeddings do.
//!
//! Why: clustered Gaussians in full dimension are easy for an IVF index
//! (every cluster is well separated in every direction, and a query's
//! neighbours sit in one or two lists), so they flatter any recall figure.
//! Sentence and image embeddings are different: hundreds of dimensions,
//! most of the variance in a few dozen directions, clusters of very
//! different sizes that overlap, and neighbours spread across many lists.
//! This generator imitates that: points are drawn in a `latent`-dimensional
//! space (a mixture whose component sizes follow a power law and whose
//! spread falls off across latent directions), mapped into `dim`
//! dimensions by a fixed random linear map, with a little isotropic noise
//! on top. Queries come from the same mixture, independently of the base
//! set. Use it with the cosine metric, as embeddings are.

use crate::Generator;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Vectors of `dim` components near a `latent`-dimensional subspace.
#[derive(Clone, Debug)]
pub struct LowRank {
    dim: usize,
    latent: usize,
    /// `dim × latent`, row-major.
    map: Vec<f32>,
    /// `clusters × latent` centres in the latent space.
    centres: Vec<f32>,
    /// Cumulative weight of each cluster (power-law sizes).
    cumulative: Vec<f64>,
    /// Spread along each latent direction.
    spread: Vec<f32>,
    noise: f32,
}

impl LowRank {
    /// A generator fixed by `seed`: `clusters` mixture components in a
    /// `latent`-dimensional space, mapped to `dim` dimensions.
    pub fn new(dim: usize, latent: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let unit = Normal::new(0.0f32, 1.0).expect("unit normal");
        let scale = 1.0 / (latent as f32).sqrt();
        let map = (0..dim * latent)
            .map(|_| unit.sample(&mut rng) * scale)
            .collect();
        let centres = (0..clusters * latent)
            .map(|_| unit.sample(&mut rng))
            .collect();
        // Zipf-like cluster sizes: a few large topics, many small ones.
        let mut total = 0.0;
        let cumulative = (0..clusters)
            .map(|c| {
                total += 1.0 / (c as f64 + 1.0).powf(0.8);
                total
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|c| c / total)
            .collect();
        // Within a cluster, spread comparable to the distance between
        // centres along the first directions, falling off after them.
        let spread = (0..latent)
            .map(|j| 0.9 / (1.0 + j as f32 / 8.0).sqrt())
            .collect();
        LowRank {
            dim,
            latent,
            map,
            centres,
            cumulative,
            spread,
            noise: 0.05,
        }
    }
}

impl Generator for LowRank {
    fn dim(&self) -> usize {
        self.dim
    }

    fn sample(&self, n: usize, stream: u64) -> Vec<f32> {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(0x10e4_0000 ^ stream.wrapping_mul(0x9e37_79b9));
        let unit = Normal::new(0.0f32, 1.0).expect("unit normal");
        let mut z = vec![0.0f32; self.latent];
        let mut out = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let u: f64 = rng.gen();
            let c = self
                .cumulative
                .partition_point(|&w| w < u)
                .min(self.cumulative.len() - 1);
            for (j, zj) in z.iter_mut().enumerate() {
                *zj = self.centres[c * self.latent + j] + self.spread[j] * unit.sample(&mut rng);
            }
            for row in self.map.chunks_exact(self.latent) {
                let x: f32 = row.iter().zip(&z).map(|(a, b)| a * b).sum();
                out.push(x + self.noise * unit.sample(&mut rng));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let g = LowRank::new(64, 8, 10, 1);
        assert_eq!(g.sample(5, 3), g.sample(5, 3));
        assert_ne!(g.sample(5, 3), g.sample(5, 4));
        assert_eq!(g.sample(5, 3).len(), 5 * 64);
    }

    #[test]
    fn most_variance_lies_in_few_directions() {
        // The centred data's energy outside the map's column space is the
        // isotropic noise alone: a small share of the total.
        let g = LowRank::new(128, 8, 20, 2);
        let x = g.sample(2000, 0);
        let mean: Vec<f32> = (0..128)
            .map(|d| x.iter().skip(d).step_by(128).sum::<f32>() / 2000.0)
            .collect();
        let total: f32 = x
            .chunks(128)
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(a, m)| (a - m) * (a - m))
                    .sum::<f32>()
            })
            .sum();
        let noise = 2000.0 * 128.0 * g.noise * g.noise;
        assert!(noise / total < 0.1, "noise share {}", noise / total);
    }
}
