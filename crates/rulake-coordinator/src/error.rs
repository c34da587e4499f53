//! Coordinator errors: the engine's, the catalog's and the lake's, plus
//! the coordinator's own checks. Each owns its gRPC status: the catalog's
//! comes from the catalog (the same one its members answer with), the
//! engine's from [`EngineError::code`], the coordinator's own here.

use rulake_catalog::CatalogError;
use rulake_engine::EngineError;
use rulake_lake::LakeError;
use rulake_types::StatusCode;
use thiserror::Error;
use tonic::{Code, Status};

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
    /// A generation asked for that the collection does not serve (only
    /// the served one can be described).
    #[error("collection {collection:?} does not serve generation {asked:?}; it serves {served:?}")]
    GenerationNotServed {
        /// The collection.
        collection: String,
        /// The generation asked for.
        asked: String,
        /// The generation served.
        served: String,
    },
    /// Ids that a managed collection holds already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The server's source policy does not admit the source.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The request conflicts with the collection's state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The catalog has not applied a write this process made (it will).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write whose outcome is unknown: the catalog may have applied it
    /// or may never do so (a timeout or an unreachable catalog after the
    /// command was sent). Nothing was undone; read before retrying.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// Result alias.
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;

/// The `tonic::Code` of a [`StatusCode`] (one to one).
pub fn grpc_code(code: StatusCode) -> Code {
    match code {
        StatusCode::InvalidArgument => Code::InvalidArgument,
        StatusCode::NotFound => Code::NotFound,
        StatusCode::AlreadyExists => Code::AlreadyExists,
        StatusCode::FailedPrecondition => Code::FailedPrecondition,
        StatusCode::ResourceExhausted => Code::ResourceExhausted,
        StatusCode::Unavailable => Code::Unavailable,
        StatusCode::DeadlineExceeded => Code::DeadlineExceeded,
        StatusCode::Unknown => Code::Unknown,
        StatusCode::Internal => Code::Internal,
    }
}

/// The status a client receives for an engine error.
pub fn engine_status(e: &EngineError) -> Status {
    Status::new(grpc_code(e.code()), e.to_string())
}

impl From<&CoordinatorError> for Status {
    fn from(e: &CoordinatorError) -> Status {
        let code = match e {
            CoordinatorError::Engine(e) => return engine_status(e),
            CoordinatorError::Catalog(c) => return Status::from(c),
            CoordinatorError::InvalidArgument(_) => Code::InvalidArgument,
            CoordinatorError::NotFound { .. } | CoordinatorError::GenerationNotServed { .. } => {
                Code::NotFound
            }
            CoordinatorError::AlreadyExists(_) => Code::AlreadyExists,
            CoordinatorError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoordinatorError::PermissionDenied(_) => Code::PermissionDenied,
            // Writing managed files failed: the lake may be back later.
            CoordinatorError::Lake(_) | CoordinatorError::Unavailable(_) => Code::Unavailable,
            // UNAVAILABLE, not UNKNOWN: retrying an ingest is safe (ids are
            // never written twice: a retry of committed ids is refused with
            // ALREADY_EXISTS), and the message says the outcome is unknown.
            CoordinatorError::OutcomeUnknown(_) => Code::Unavailable,
        };
        Status::new(code, e.to_string())
    }
}

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Status {
        Status::from(&e)
    }
}
