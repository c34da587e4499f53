//! Request telemetry every layer may use: log setup, W3C trace context, and
//! the task-local context of the request a task serves.
//!
//! A leaf: it knows nothing of the engine, the catalog or Prometheus, so the
//! coordinator can continue a trace and the API can name a call's
//! collection without depending on the metrics crate, which sits at the top
//! and reads this context when a call completes.
//!
//! # Layout
//! - [`log`] — [`LogFormat`], [`init`]: the process's subscriber (binaries only).
//! - [`trace`] — [`TraceContext`], `traceparent` parsing, [`extract`],
//!   [`inject`], [`outgoing`], the span a served call runs in.
//! - [`request`] — [`RequestContext`] and [`set_collection`].

pub mod log;
pub mod request;
pub mod trace;

pub use log::{init, init_to, LogFormat};
pub use request::{set_collection, RequestContext};
pub use trace::{current, extract, inject, outgoing, request_span, TraceContext, TRACEPARENT};

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, …): the
/// label of the request metrics and the outcome in the audit log.
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("UNKNOWN")
}

/// What can go wrong setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log subscriber could not be installed (one is set already) or
    /// its filter is malformed.
    #[error("logging: {0}")]
    Log(String),
}

/// Result of this crate.
pub type Result<T, E = TelemetryError> = std::result::Result<T, E>;
