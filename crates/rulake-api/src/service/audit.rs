//! Which calls go into the audit log, and what their lines say.
//!
//! Every call that changes something is recorded (a call needing write or
//! admin rights, but for the two admin reads), every refused call too —
//! a refusal is what an audit is most often asked about — and, when the
//! server is told to, every read. The line is written once the outcome is
//! known, from [`super::Api::handle`], which every public call passes
//! through; callers turned away before it, without a valid credential,
//! are recorded by the authentication layer.

use rulake_audit::{AuditLog, Event};
use rulake_auth::{Perm, Principal};
use std::sync::{Arc, Mutex, PoisonError};
use tonic::metadata::MetadataMap;
use tonic::{Code, Extensions, Status};

/// Longest `resource` and `request_id` written: both may come from the
/// caller.
const MAX_FIELD: usize = 256;

/// The audit log of a server's public API.
#[derive(Clone)]
pub struct Audit {
    log: Arc<AuditLog>,
    reads: bool,
}

impl Audit {
    /// Record into `log`; with `reads`, searches, lists and describes too.
    pub fn new(log: Arc<AuditLog>, reads: bool) -> Self {
        Audit { log, reads }
    }

    /// Start the record of call `what`.
    pub(super) fn begin(
        &self,
        what: &'static str,
        perm: Perm,
        metadata: &MetadataMap,
        extensions: &Extensions,
    ) -> Record {
        let trace = rulake_telemetry::trace::current();
        let request_id = metadata
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| bounded(v.to_owned()))
            .or_else(|| trace.as_ref().map(|t| t.span_id_hex()))
            .unwrap_or_default();
        Record {
            audit: self.clone(),
            what,
            perm,
            principal: extensions
                .get::<Principal>()
                .map_or_else(|| "anonymous".to_owned(), |p| p.subject.clone()),
            request_id,
            trace_id: trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
            names: Names(Some(Arc::default())),
        }
    }
}

/// Call names met while a call is authorized: what its line names. The
/// default keeps nothing (no audit log, no cost).
#[derive(Clone, Default)]
pub(super) struct Names(Option<Arc<Mutex<Vec<String>>>>);

impl Names {
    /// Note `name` (once).
    pub(super) fn add(&self, name: &str) {
        let Some(names) = &self.0 else { return };
        let mut v = names.lock().unwrap_or_else(PoisonError::into_inner);
        if !v.iter().any(|n| n == name) {
            v.push(name.to_owned());
        }
    }

    fn joined(&self) -> String {
        let Some(names) = &self.0 else {
            return String::new();
        };
        bounded(
            names
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .join(","),
        )
    }
}

/// A call being audited.
pub(super) struct Record {
    audit: Audit,
    what: &'static str,
    perm: Perm,
    principal: String,
    request_id: String,
    trace_id: String,
    /// The names the call was authorized against.
    pub(super) names: Names,
}

impl Record {
    /// Write the line, if the call is one the log keeps.
    pub(super) fn finish<T>(self, result: &Result<T, Status>) {
        let code = result.as_ref().err().map_or(Code::Ok, Status::code);
        let refused = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
        if !(self.audit.reads || refused || changes(self.what, self.perm)) {
            return;
        }
        self.audit.log.record(Event {
            principal: self.principal,
            action: self.what.to_owned(),
            resource: self.names.joined(),
            request_id: self.request_id,
            trace_id: self.trace_id,
            outcome: rulake_telemetry::code_name(code as i32).to_owned(),
        });
    }
}

/// Whether call `what`, needing `perm`, changes something.
fn changes(what: &str, perm: Perm) -> bool {
    perm != Perm::Read && !matches!(what, "CacheStats" | "ClusterStatus")
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_the_write_and_admin_calls_but_the_admin_reads() {
        assert!(changes("DropCollection", Perm::Admin));
        assert!(changes("Ingest", Perm::Write));
        assert!(changes("DrainShard", Perm::Admin));
        assert!(!changes("Search", Perm::Read));
        assert!(!changes("ClusterStatus", Perm::Admin));
        assert!(!changes("CacheStats", Perm::Admin));
    }

    #[test]
    fn fields_from_the_caller_are_bounded() {
        let long = "é".repeat(400);
        let b = bounded(long);
        assert!(b.len() <= MAX_FIELD + '…'.len_utf8());
        assert!(b.ends_with('…'));
    }
}
