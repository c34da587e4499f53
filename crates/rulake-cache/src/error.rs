//! Shard errors: lake and index failures with the partition they hit, plus
//! the cache's own refusals.

use rulake_index::IndexError;
use rulake_lake::LakeError;
use thiserror::Error;

/// Errors building, loading or admitting a partition.
#[derive(Debug, Error)]
pub enum CacheError {
    /// Reading the lake failed.
    #[error("partition {partition}: {source}")]
    Lake {
        /// `collection/p`.
        partition: String,
        /// The lake error (names object, row group and column).
        #[source]
        source: Box<LakeError>,
    },
    /// Building or searching the index failed.
    #[error("partition {partition}: {source}")]
    Index {
        /// `collection/p`.
        partition: String,
        /// The index error.
        #[source]
        source: IndexError,
    },
    /// The same id appears twice in one partition.
    #[error("partition {partition}: duplicate id {id} in {first} and {second}; ids must be unique within a collection")]
    DuplicateId {
        /// `collection/p`.
        partition: String,
        /// The id.
        id: String,
        /// Unit that held it first.
        first: String,
        /// Unit that held it again.
        second: String,
    },
    /// A payload column's values cannot be kept together (its type
    /// differs between files).
    #[error("partition {partition}: {unit}: {message}")]
    Payload {
        /// `collection/p`.
        partition: String,
        /// The unit whose rows did not fit.
        unit: String,
        /// What is wrong, naming the column.
        message: String,
    },
    /// Admission control: the partition cannot fit the cache budget.
    #[error("partition {partition} needs about {needed} bytes but the cache budget is {budget} bytes; raise the budget or use more partitions")]
    TooLarge {
        /// `collection/p`.
        partition: String,
        /// Estimated bytes.
        needed: usize,
        /// Configured budget.
        budget: usize,
    },
    /// A background task panicked or was cancelled.
    #[error("partition {partition}: build task failed: {message}")]
    Task {
        /// `collection/p`.
        partition: String,
        /// What happened.
        message: String,
    },
}

/// Result alias for shard operations.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;
