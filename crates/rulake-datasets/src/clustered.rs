//! The synthetic data RuLake benchmarks on: clustered Gaussians, with
//! queries drawn from the same mixture but independently of the base set
//! (a query is never a stored vector, so recall is not flattered).

use crate::Generator;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// A clustered-Gaussian generator: `clusters` centres in `[-1, 1]^dim`,
/// points at Gaussian spread `sigma` around a uniformly chosen centre.
#[derive(Clone, Debug)]
pub struct ClusteredGaussian {
    dim: usize,
    centres: Vec<f32>,
    sigma: f32,
}

impl ClusteredGaussian {
    /// Centres are fixed by `seed`; the defaults of `rulake demo` are 100
    /// clusters with sigma 0.15.
    pub fn new(dim: usize, clusters: usize, sigma: f32, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let centres = (0..clusters * dim)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        ClusteredGaussian {
            dim,
            centres,
            sigma,
        }
    }

    /// `n` points (row-major) from stream `stream`: different streams give
    /// independent draws from the same mixture.
    pub fn sample(&self, n: usize, stream: u64) -> Vec<f32> {
        Generator::sample(self, n, stream)
    }
}

impl Generator for ClusteredGaussian {
    fn dim(&self) -> usize {
        self.dim
    }

    fn sample(&self, n: usize, stream: u64) -> Vec<f32> {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(0x5eed_0000 ^ stream.wrapping_mul(0x9e37_79b9));
        let normal = Normal::new(0.0f32, self.sigma).expect("sigma > 0");
        let clusters = self.centres.len() / self.dim;
        let mut out = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let c = rng.gen_range(0..clusters);
            for d in 0..self.dim {
                out.push(self.centres[c * self.dim + d] + normal.sample(&mut rng));
            }
        }
        out
    }
}
