//! Index errors: what a caller did wrong, or what a persisted file got wrong.

use thiserror::Error;

/// Errors building, querying or loading a partition index.
#[derive(Debug, Error)]
pub enum IndexError {
    /// A vector or query has the wrong length.
    #[error("dimension mismatch: index has {expected} dimensions, got {actual}")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// What was given.
        actual: usize,
    },
    /// A query has a NaN or infinite component.
    #[error("query has a non-finite component at position {0}")]
    NonFiniteQuery(usize),
    /// `k` must be at least 1.
    #[error("k must be at least 1")]
    ZeroK,
    /// The search passed its [`crate::Deadline`] and stopped unfinished.
    #[error("the search passed its deadline and stopped before probing every list")]
    DeadlineExceeded,
    /// More rows than the u32 row positions can address.
    #[error("partition too large: {0} rows (limit {max})", max = u32::MAX)]
    TooManyRows(usize),
    /// Building needs at least one row and a positive dimension.
    #[error("invalid build input: {0}")]
    Invalid(String),
    /// A persisted partition file is damaged or from another format version.
    #[error("corrupt partition file: {0}")]
    Corrupt(String),
    /// I/O while persisting or loading.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for index operations.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
