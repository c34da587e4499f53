//! Coordinator errors: the engine's, the catalog's and the lake's, plus
//! the coordinator's own checks, kept apart so the gRPC layer can give each
//! its status code in one place.

use rulake_catalog::CatalogError;
use rulake_engine::EngineError;
use rulake_lake::LakeError;
use thiserror::Error;

/// Why a coordinator operation failed.
#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// From the engine (query validation, loading, the cache).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// From the catalog (a rejected command, no quorum, ...).
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// From the lake while writing or deleting managed files.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A malformed request.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No such collection or alias.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `collection` or `alias`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// Ids that a managed collection holds already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request conflicts with the collection's state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The catalog has not applied a write this process made (it will).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Result alias.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
