//! Logs and trace context.
//!
//! [`init`] installs the process's `tracing` subscriber once, from the
//! binary: human-readable text for a terminal, or one JSON object per line
//! for a log pipeline (`--log-format json`, `RULAKE_LOG_FORMAT=json`), with
//! the level filter from `RULAKE_LOG` (default `warn`). Libraries only emit
//! events and spans; they never set a subscriber.
//!
//! Trace context travels between RuLake processes in the W3C `traceparent`
//! header (gRPC metadata is HTTP/2 headers): version `00`, a 16-byte trace
//! id, an 8-byte parent span id and flags. The gRPC layer
//! ([`crate::grpc`]) reads it from each incoming call, opens a `grpc` span
//! carrying `trace_id` and `span_id` fields, and keeps the call's context
//! so an outgoing call (coordinator → shard) continues the trace with
//! [`inject`]. There is no exporter: the ids in the logs of each process
//! are what joins a query's path across the cluster.

use crate::{MetricsError, Result};
use http::{HeaderMap, HeaderValue};
use std::fmt;
use std::str::FromStr;

/// The metadata key that carries trace context.
pub const TRACEPARENT: &str = "traceparent";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with span fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Install the global subscriber writing to standard error in `format`,
/// filtered by `RULAKE_LOG` (an `EnvFilter` directive; default `warn`).
/// Fails if a subscriber is installed already or the filter is malformed.
pub fn init(format: LogFormat) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RULAKE_LOG") {
        Ok(v) => EnvFilter::try_new(&v)
            .map_err(|e| MetricsError::Telemetry(format!("RULAKE_LOG={v:?}: {e}")))?,
        Err(_) => EnvFilter::new("warn"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    r.map_err(|e| MetricsError::Telemetry(e.to_string()))
}

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

/// The trace context of the gRPC call this task is serving, continued as a
/// new span: what an outgoing call from a handler should carry. A task not
/// serving a call starts a new trace.
pub fn outgoing() -> TraceContext {
    crate::grpc::current_trace()
        .map(|t| t.child())
        .unwrap_or_else(TraceContext::new_root)
}

/// The span a gRPC call runs in: its path and trace context (continuing
/// the caller's trace when the call carries one).
pub(crate) fn request_span(path: &str, headers: &HeaderMap) -> (tracing::Span, TraceContext) {
    let ctx = extract(headers)
        .map(|c| c.child())
        .unwrap_or_else(TraceContext::new_root);
    let span = tracing::info_span!(
        "grpc",
        path = %path,
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
    );
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
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
