//! RuLake's partition index: the only crate that uses `ruvector-rabitq`.
//!
//! A partition is an IVF index over RaBitQ codes of residuals with exact
//! rerank ([`PartitionIndex`]); see the [`ivf`] module for why and how.
//! Everything returned is an exact distance, so partition answers merge
//! exactly upstream.
//!
//! # Layout
//! - [`ivf`] — build, extend, tombstone and search a partition.
//! - [`kmeans`] — the coarse quantizer.
//! - [`persist`] — the checksummed on-disk form.
//! - [`bound`] — the `k`-th best distance shared by one query's partitions.
//! - [`exact`] — brute-force ground truth and recall.
//! - [`datasets`] — the clustered-Gaussian data of the demo and benchmarks.
//! - [`baseline`] — the bare `RabitqPlusIndex` the benchmarks compare against.

pub mod baseline;
pub mod bound;
pub mod datasets;
pub mod error;
pub mod exact;
pub mod ivf;
pub mod kmeans;
pub mod persist;
mod simd;

pub use bound::SharedKth;
pub use error::{IndexError, Result};
pub use ivf::{
    default_nlist, default_nprobe, split_search, BuildParams, Drift, IdTable, PartitionIndex,
    DEFAULT_RERANK,
};
