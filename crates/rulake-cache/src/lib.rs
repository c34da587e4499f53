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
//! - [`error`] — [`CacheError`].

pub mod builder;
pub mod cache;
pub mod error;

pub use builder::{build_partition, estimate, units_of, PartitionSpec};
pub use cache::{CacheConfig, CacheStats, CachedPartition, PartitionCache, PartitionKey};
pub use error::{CacheError, Result};
