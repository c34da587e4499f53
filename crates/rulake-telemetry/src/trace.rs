//! Trace context between RuLake processes.
//!
//! Context travels in the W3C `traceparent` header (gRPC metadata is HTTP/2
//! headers): version `00`, a 16-byte trace id, an 8-byte parent span id and
//! flags. The server's gRPC layer reads it from each incoming call, opens a
//! `grpc` span ([`request_span`]) carrying `trace_id`, `span_id` and (when
//! the caller sent one) `parent_id` fields, and scopes a
//! [`crate::RequestContext`] around the handler, so an outgoing call
//! (coordinator → shard) continues the trace: [`outgoing`] is the context
//! to send, with the serving call's span as the parent, and [`inject`] (or
//! tonic metadata under [`TRACEPARENT`]) carries it. There is no exporter:
//! the ids in each process's logs are what joins a query's path across the
//! cluster (the callee's `parent_id` is the caller's `span_id`).

use http::{HeaderMap, HeaderValue};
use std::fmt;

/// The metadata key that carries trace context.
pub const TRACEPARENT: &str = "traceparent";

/// W3C trace context: which trace a call belongs to and which span called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace (never all zeros).
    pub trace_id: [u8; 16],
    /// The span that made the call (never all zeros).
    pub span_id: [u8; 8],
    /// The caller's sampling decision (flag `01`).
    pub sampled: bool,
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 random bits from the standard library's per-process hash keys and a
/// counter: ids need to be unique, not secret.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() | 1
}

impl TraceContext {
    /// A new trace with a new root span, sampled.
    pub fn new_root() -> Self {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_u64().to_be_bytes());
        TraceContext {
            trace_id,
            span_id: random_u64().to_be_bytes(),
            sampled: true,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_u64().to_be_bytes(),
            ..*self
        }
    }

    /// Parse a `traceparent` value. Unknown future versions are read by
    /// their first four fields, as the W3C spec asks; version `ff`,
    /// all-zero ids and malformed values are rejected.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.trim().split('-');
        let version = fields.next()?;
        let trace = fields.next()?;
        let span = fields.next()?;
        let flags = fields.next()?;
        let version: [u8; 1] = hex_to(version)?;
        if version[0] == 0xff || (version[0] == 0 && fields.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex_to(trace)?;
        let span_id: [u8; 8] = hex_to(span)?;
        let flags: [u8; 1] = hex_to(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }
}

/// The trace context an incoming call carries, if any (and well-formed).
pub fn extract(headers: &HeaderMap) -> Option<TraceContext> {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
}

/// Put `ctx` into an outgoing call's HTTP headers. With a tonic request,
/// insert `ctx.to_string()` under [`TRACEPARENT`] in its metadata instead
/// (the same header on the wire).
pub fn inject(headers: &mut HeaderMap, ctx: &TraceContext) {
    let value = HeaderValue::from_str(&ctx.to_string()).expect("traceparent is ASCII");
    headers.insert(TRACEPARENT, value);
}

/// The trace context of the gRPC call this task is serving, if any.
pub fn current() -> Option<TraceContext> {
    crate::request::current_trace()
}

/// What an outgoing call from this task should carry: the trace of the
/// gRPC call it serves, with that call's span (the `span_id` its logs
/// show) as the parent. A task not serving a call starts a new trace.
pub fn outgoing() -> TraceContext {
    current().unwrap_or_else(TraceContext::new_root)
}

/// The span a served gRPC call runs in: its path and trace context (continuing
/// the caller's trace when the call carries one, the caller's span as
/// `parent_id`).
pub fn request_span(path: &str, headers: &HeaderMap) -> (tracing::Span, TraceContext) {
    let caller = extract(headers);
    let ctx = caller
        .map(|c| c.child())
        .unwrap_or_else(TraceContext::new_root);
    let span = tracing::info_span!(
        "grpc",
        path = %path,
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
        parent_id = tracing::field::Empty,
    );
    if let Some(c) = caller {
        span.record("parent_id", tracing::field::display(c.span_id_hex()));
    }
    (span, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_malformed_values() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(v).expect("valid");
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id_hex(), "00f067aa0ba902b7");
        assert!(c.sampled);
        assert_eq!(c.to_string(), v);
        let unsampled =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .expect("valid");
        assert!(!unsampled.sampled);
        // A future version with extra fields is read by its first four.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            // Non-hex digits, signs, wrong separators and field widths.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00--4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn inject_then_extract_keeps_the_trace_and_child_changes_only_the_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        let mut h = HeaderMap::new();
        inject(&mut h, &child);
        assert_eq!(extract(&h), Some(child));
        // Outside a served call there is no context, and an outgoing call
        // starts a new, sampled trace each time.
        assert_eq!(current(), None);
        let (a, b) = (outgoing(), outgoing());
        assert!(a.sampled && b.sampled);
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
    }
}
