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
//! - [`reference`] — [`ReferenceWriters`]: Delta and Iceberg tables written
//!   by Python `deltalake` and `pyiceberg`.

pub mod clustered;
pub mod reference;

pub use clustered::ClusteredGaussian;
pub use reference::{ReferenceWriters, WriterError};
