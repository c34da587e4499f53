//! The one place RuLake's errors become gRPC status codes.
//!
//! Every handler converts here, so a code never depends on which RPC
//! reported the error, and the message a user sees is the one the engine,
//! catalog or coordinator wrote (naming the collection, object, row group
//! or column at fault).

use rulake_catalog::{CatalogError, Rejection, RejectionKind};
use rulake_coordinator::CoordinatorError;
use rulake_engine::EngineError;
use tonic::{Code, Status};

/// The status a client receives for a coordinator error.
pub fn to_status(e: CoordinatorError) -> Status {
    let code = match &e {
        CoordinatorError::Engine(e) => return engine_status(e),
        CoordinatorError::Catalog(c) => return catalog_status(c),
        CoordinatorError::InvalidArgument(_) => Code::InvalidArgument,
        CoordinatorError::NotFound { .. } => Code::NotFound,
        CoordinatorError::AlreadyExists(_) => Code::AlreadyExists,
        CoordinatorError::FailedPrecondition(_) => Code::FailedPrecondition,
        // Writing managed files failed: the lake may be back later.
        CoordinatorError::Lake(_) | CoordinatorError::Unavailable(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

fn rejection_status(r: &Rejection) -> Status {
    let code = match r.kind {
        RejectionKind::Invalid => Code::InvalidArgument,
        RejectionKind::NotFound => Code::NotFound,
        RejectionKind::AlreadyExists => Code::AlreadyExists,
        RejectionKind::Precondition => Code::FailedPrecondition,
    };
    Status::new(code, r.message.clone())
}

fn catalog_status(e: &CatalogError) -> Status {
    match e {
        CatalogError::Refused(r) => rejection_status(r),
        CatalogError::Rejected(c) => rejection_status(&Rejection::from(c)),
        CatalogError::InvalidArgument(m) => Status::invalid_argument(m.clone()),
        CatalogError::Unavailable(_) | CatalogError::Transport(_) => {
            Status::unavailable(format!("catalog: {e}"))
        }
        // Retrying blindly could apply a write twice: say so.
        CatalogError::Indeterminate(_) => Status::unknown(format!(
            "catalog: {e}; read the collection back before retrying"
        )),
        CatalogError::Storage(_) | CatalogError::Codec(_) | CatalogError::Raft(_) => {
            Status::internal(format!("catalog: {e}"))
        }
    }
}

/// The status a client receives for an engine error.
pub fn engine_status(e: &EngineError) -> Status {
    let code = match e {
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

/// A call over its connection's limit of calls in flight.
pub fn too_many_in_flight(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "this connection already has {limit} calls in flight, the server's \
         --max-concurrent-per-connection; wait for some to finish, spread calls \
         over more connections, or raise the limit"
    ))
}

/// An `Ingest` stream past the server's size limit; nothing of it was
/// committed.
pub fn ingest_too_large(what: &str, limit: u64) -> Status {
    Status::resource_exhausted(format!(
        "this Ingest stream exceeds the server's limit of {limit} {what} per stream \
         (--max-ingest-{what}); nothing of it was committed: split the data into \
         several Ingest calls"
    ))
}

/// Whether a status is tonic's "message larger than the limit".
pub(crate) fn is_oversized(code: Code, message: &str) -> bool {
    code == Code::OutOfRange && message.contains("message length too large")
}

/// `RESOURCE_EXHAUSTED` for an oversized message, anything else unchanged.
pub(crate) fn oversized(s: Status) -> Status {
    if is_oversized(s.code(), s.message()) {
        Status::resource_exhausted(format!(
            "{} (raise the server's --max-message-bytes or send smaller messages)",
            s.message()
        ))
    } else {
        s
    }
}

/// Rewrite a trailers-only response that carries tonic's oversized-message
/// status (unary calls fail this way before their handler runs).
pub(crate) fn map_oversized<B>(
    mut resp: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let h = resp.headers();
    let code = h
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32);
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace("%20", " ");
    if code.is_some_and(|c| is_oversized(c, &message)) {
        let h = resp.headers_mut();
        h.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("8"),
        );
    }
    resp
}
