//! RuLake's partition index: the only crate that uses `ruvector-rabitq`.
//!
//! A partition is an IVF index over RaBitQ codes of residuals with exact
//! rerank ([`PartitionIndex`]); see the [`ivf`] module for why and how.
//! Everything returned is an exact distance, so partition answers merge
//! exactly upstream.
//!
//! # Layout
//! - [`ivf`] — the partition index ([`PartitionIndex`]): its state and
//!   accessors, with one private module per stage:
//!   - `ivf::params` — tuned defaults and a split collection's share of them;
//!   - `ivf::ids` — row position → caller's id ([`IdTable`]);
//!   - `ivf::codes` — the per-row 1-bit and 8-bit residual codes;
//!   - `ivf::build` — train, append, tombstone, and measure [`Drift`];
//!   - `ivf::calibrate` — the fewest probes that reach a target recall ([`Tuning`]);
//!   - `ivf::query` — the query quantised to meet the codes;
//!   - `ivf::candidates` — the pool the 1-bit estimate fills;
//!   - `ivf::scan` — search stage 1, the 1-bit estimate of probed lists;
//!   - `ivf::search` — the search pipeline, refinement and exact rerank;
//!   - `ivf::parts` — raw state for [`persist`], validated on load.
//! - [`kmeans`] — the coarse quantizer.
//! - [`persist`] — the checksummed on-disk form.
//! - [`bound`] — the `k`-th best distance shared by one query's partitions.
//! - [`deadline`] — when a search gives up ([`Deadline`]), checked between
//!   probed lists.
//! - [`exact`] — brute-force ground truth and recall.
//! - [`baseline`] — the bare `RabitqPlusIndex` the demo and benchmarks
//!   compare against.

pub mod baseline;
pub mod bound;
pub mod deadline;
pub mod error;
pub mod exact;
pub mod ivf;
pub mod kmeans;
pub mod persist;
mod simd;

pub use bound::SharedKth;
pub use deadline::Deadline;
pub use error::{IndexError, Result};
pub use ivf::{
    default_nlist, default_nprobe, split_search, BuildParams, Drift, IdTable, PartitionIndex,
    Tuning, CALIBRATION_K, DEFAULT_RERANK, DEFAULT_TARGET_RECALL, MAX_RERANK,
};
