//! Where the public API's handlers turn RuLake's errors into gRPC statuses.
//!
//! Every handler converts here, so a code never depends on which RPC
//! reported the error, and the message a user sees is the one the engine,
//! catalog or coordinator wrote (naming the collection, object, row group
//! or column at fault). Every error brings its own status, defined next to
//! the error: the catalog's (`impl From<&CatalogError> for Status`, the same
//! one its members answer with), the engine's (`EngineError::code`) and the
//! coordinator's (`impl From<&CoordinatorError> for Status`); nothing here
//! classifies an error.
//!
//! RuLake never answers `OUT_OF_RANGE` itself, so that code from a server
//! means tonic's message-size limit, which gRPC calls `RESOURCE_EXHAUSTED`.

use rulake_coordinator::CoordinatorError;
use tonic::{Code, Status};

/// The status a client receives for a coordinator error (the error's own,
/// see `rulake-coordinator`'s `error` module).
pub fn to_status(e: CoordinatorError) -> Status {
    Status::from(&e)
}

pub use rulake_coordinator::engine_status;

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

/// Longest status message a client is sent, in bytes. Messages quote
/// names and URLs the caller sent; the message travels in a response
/// header (`grpc-message`), and one past the client's header limit breaks
/// the connection instead of telling the caller what was wrong.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// `s` with its message cut to [`MAX_STATUS_MESSAGE`] bytes (saying how
/// long it was); code and metadata unchanged.
pub fn bounded(s: Status) -> Status {
    let msg = s.message();
    if msg.len() <= MAX_STATUS_MESSAGE {
        return s;
    }
    let mut end = MAX_STATUS_MESSAGE;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let cut = format!("{}... ({} bytes in all)", &msg[..end], msg.len());
    Status::with_metadata(s.code(), cut, s.metadata().clone())
}

/// Whether a status is tonic's "message larger than the limit": the only
/// `OUT_OF_RANGE` a RuLake server produces (see the module docs).
pub(crate) fn is_oversized(code: Code) -> bool {
    code == Code::OutOfRange
}

/// `RESOURCE_EXHAUSTED` for an oversized message, anything else unchanged.
pub(crate) fn oversized(s: Status) -> Status {
    if is_oversized(s.code()) {
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
    if code.is_some_and(is_oversized) {
        let h = resp.headers_mut();
        h.insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("8"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulake_catalog::{CatalogError, CommandError};

    #[test]
    fn catalog_errors_get_the_catalogs_status() {
        let s = to_status(CoordinatorError::Catalog(CatalogError::Indeterminate(
            "x".into(),
        )));
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(
            s.message(),
            "catalog: outcome unknown: x; read the collection back before retrying"
        );
        let e = CommandError::NotFound {
            what: "collection",
            name: "c".into(),
        };
        let s = to_status(CoordinatorError::Catalog(CatalogError::Rejected(e.clone())));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), e.to_string());
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = format!("name \"{}\" is invalid", "\u{e9}".repeat(5000));
        let s = bounded(Status::invalid_argument(long.clone()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().len() <= MAX_STATUS_MESSAGE + 32,
            "{}",
            s.message().len()
        );
        assert!(s
            .message()
            .ends_with(&format!("({} bytes in all)", long.len())));
        let short = bounded(Status::not_found("x"));
        assert_eq!(short.message(), "x");
    }

    #[test]
    fn only_out_of_range_becomes_resource_exhausted() {
        let s = oversized(Status::out_of_range("decoded message length too large"));
        assert_eq!(s.code(), Code::ResourceExhausted);
        let s = oversized(Status::invalid_argument("x"));
        assert_eq!(s.code(), Code::InvalidArgument);
    }
}
