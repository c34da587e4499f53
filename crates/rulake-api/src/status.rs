//! The one place engine errors become gRPC status codes.
//!
//! Every handler returns `Result<_, EngineError>` internally and converts
//! here, so a code never depends on which RPC reported the error, and the
//! message a user sees is the engine's (which names the collection, object,
//! row group or column at fault).

use rulake_engine::EngineError;
use tonic::{Code, Status};

/// The status a client receives for an engine error.
pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::AlreadyExists { .. } => Code::AlreadyExists,
        EngineError::InvalidArgument(_) => Code::InvalidArgument,
        EngineError::FailedPrecondition(_) => Code::FailedPrecondition,
        EngineError::ResourceExhausted(_) => Code::ResourceExhausted,
        // The lake could not be read and nothing older is cached: retrying
        // once the lake is back is the right reaction.
        EngineError::Unavailable { .. } | EngineError::Lake(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

/// A request that is malformed before it reaches the engine.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}
