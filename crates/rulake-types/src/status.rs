//! The gRPC canonical code an error maps to, named where the error is
//! defined.
//!
//! Libraries below the API (the engine, the lake) know best which of their
//! failures are the caller's fault, which are a state conflict and which
//! are worth retrying, but they do not speak gRPC. Each error type names
//! its [`StatusCode`] next to its definition; the API turns the code into a
//! `tonic::Code` one to one, so there is no second table to drift.

/// The canonical codes RuLake's errors use (a subset of gRPC's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// The request is malformed whatever the state: fix it, do not retry.
    InvalidArgument,
    /// The named collection, source or alias does not exist.
    NotFound,
    /// What the request creates exists already.
    AlreadyExists,
    /// Valid, but the current state does not allow it.
    FailedPrecondition,
    /// Over a limit (memory budget, sizes, calls in flight).
    ResourceExhausted,
    /// Transient: retry later (lake down, leader changing, shutting down).
    Unavailable,
    /// The caller's deadline passed before the work was done; the work
    /// was stopped.
    DeadlineExceeded,
    /// The outcome is unknown (a write that may have applied).
    Unknown,
    /// A bug or a broken invariant.
    Internal,
}
