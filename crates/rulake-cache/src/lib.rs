//! The partition cache: turning lake units into cached, searchable
//! partitions and keeping them under a memory budget.
//!
//! The cache never serves a half-built partition: builds produce a complete
//! [`CachedPartition`] that replaces the old one in one step, and any error
//! (a bad file, a vanished object, a duplicate id, a partition too large for
//! the budget) leaves the previous generation serving and is reported in
//! [`CacheStats::errors`].
//!
//! # Layout
//! - [`cache`] — [`PartitionCache`], budget, LRU eviction, persistence, stats.
//! - [`builder`] — [`build_partition`], incremental or full.
//! - [`memory`] — the box's memory limit (cgroup v1/v2), the process's
//!   resident and peak memory, and the default budget derived from them.
//! - [`error`] — [`CacheError`].

pub mod builder;
pub mod cache;
pub mod error;
pub mod memory;

pub use builder::{build_partition, estimate, transient_estimate, units_of, PartitionSpec};
pub use cache::{
    CacheConfig, CacheStats, CachedPartition, LoadReservation, PartitionCache, PartitionKey,
};
pub use error::{CacheError, Result};
