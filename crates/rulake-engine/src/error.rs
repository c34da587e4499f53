//! Engine errors: what an embedding application and the gRPC layer (which
//! maps them to status codes) need to tell apart.

use rulake_cache::CacheError;
use rulake_index::IndexError;
use rulake_lake::LakeError;
use rulake_types::{FilterError, StatusCode};
use thiserror::Error;

/// Errors of the embedded engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Unknown collection or source.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `collection` or `source`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A collection or source of that name exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// `collection` or `source`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Bad request: wrong dimension, non-finite query, bad name, k = 0 ...
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is valid but the state does not allow it (e.g. federating
    /// collections of different metrics).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The source could not be read and no earlier generation is cached.
    #[error("collection {collection:?} has no servable generation: {source}")]
    Unavailable {
        /// The collection.
        collection: String,
        /// Why loading failed.
        #[source]
        source: CacheError,
    },
    /// Partitions a caller asked this node about that it does not serve
    /// (placement moved them since the caller routed): answering "absent"
    /// for their rows would be a lie, so the caller asks again elsewhere.
    #[error("partitions {partitions:?} of {collection:?} are not served here; ask again after placement settles")]
    NotServed {
        /// The collection.
        collection: String,
        /// The partitions asked for and not served.
        partitions: Vec<u32>,
    },
    /// A partition refused by admission control.
    #[error(transparent)]
    ResourceExhausted(CacheError),
    /// The caller's deadline passed while the search ran; it stopped
    /// unfinished (between partitions or probed lists) and answers nothing.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// Lake error outside a partition build (listing, generation).
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A search's filter or output columns do not fit the collection's
    /// payload columns (an unknown column, a literal of the wrong type).
    #[error("invalid argument: {0}")]
    Filter(#[from] FilterError),
}

impl From<CacheError> for EngineError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::TooLarge { .. } => EngineError::ResourceExhausted(e),
            CacheError::Index {
                source:
                    IndexError::Dimension { .. } | IndexError::NonFiniteQuery(_) | IndexError::ZeroK,
                ..
            } => EngineError::InvalidArgument(e.to_string()),
            other => EngineError::Unavailable {
                collection: String::new(),
                source: other,
            },
        }
    }
}

impl EngineError {
    /// The gRPC code a caller receives for this error.
    pub fn code(&self) -> StatusCode {
        match self {
            EngineError::NotFound { .. } => StatusCode::NotFound,
            EngineError::AlreadyExists { .. } => StatusCode::AlreadyExists,
            EngineError::InvalidArgument(_) | EngineError::Filter(_) => StatusCode::InvalidArgument,
            EngineError::FailedPrecondition(_) => StatusCode::FailedPrecondition,
            EngineError::ResourceExhausted(_) => StatusCode::ResourceExhausted,
            EngineError::DeadlineExceeded(_) => StatusCode::DeadlineExceeded,
            // The lake could not be read and nothing older is cached:
            // retrying once the lake is back is the right reaction.
            EngineError::Unavailable { .. } | EngineError::Lake(_) => StatusCode::Unavailable,
            // Placement is moving: another replica, or a moment later, will do.
            EngineError::NotServed { .. } => StatusCode::Unavailable,
        }
    }
}

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A search stopped at its deadline, saying what to change.
    pub(crate) fn deadline() -> Self {
        EngineError::DeadlineExceeded(
            "the search stopped at the call's deadline before searching every partition; \
             allow more time, or ask for less work (smaller k, nprobe or rerank, fewer queries)"
                .into(),
        )
    }
}
