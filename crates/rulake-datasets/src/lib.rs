//! Data RuLake is measured and tested on, kept out of the product
//! libraries: the demo, the benchmarks and the tests need it; a query path
//! never does.
//!
//! Synthetic vectors alone flatter an index, and tables RuLake wrote itself
//! only prove that RuLake agrees with RuLake; so this crate holds both the
//! generator and a driver for the table formats' own writers.
//!
//! # Layout
//! - [`clustered`] — [`ClusteredGaussian`]: clustered-Gaussian vectors with
//!   queries drawn independently of the base set.
//! - [`lowrank`] — [`LowRank`]: wide vectors near a low-dimensional
//!   manifold, the harder synthetic set (embeddings-like).
//! - [`reference`] — [`ReferenceWriters`]: Delta and Iceberg tables written
//!   by Python `deltalake` and `pyiceberg`.

pub mod clustered;
pub mod lowrank;
pub mod reference;

pub use clustered::ClusteredGaussian;
pub use lowrank::LowRank;

/// A seeded source of synthetic vectors.
pub trait Generator {
    /// Components per vector.
    fn dim(&self) -> usize;
    /// `n` vectors (row-major) from stream `stream`: different streams
    /// give independent draws from the same distribution.
    fn sample(&self, n: usize, stream: u64) -> Vec<f32>;
}
pub use reference::{Layout, ReferenceWriters, TableFormat, WriterError};
