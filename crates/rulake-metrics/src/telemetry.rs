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
//! carrying `trace_id`, `span_id` and (when the caller sent one)
//! `parent_id` fields, and keeps the call's context so an outgoing call
//! (coordinator → shard) continues the trace: [`outgoing`] is the context
//! to send, with the serving call's span as the parent, and [`inject`]
//! (or the router's tonic metadata) carries it. When a call completes the
//! layer logs one `info` event inside that span, so with
//! `RULAKE_LOG=info` every call leaves a line carrying its ids. There is
//! no exporter: the ids in the logs of each process are what joins a
//! query's path across the cluster (the callee's `parent_id` is the
//! caller's `span_id`).

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
    let filter = std::env::var("RULAKE_LOG").unwrap_or_else(|_| "warn".to_owned());
    init_to(format, &filter, std::io::stderr)
}

/// [`init`] with an explicit filter directive and writer: the same lines
/// `rulake` writes, for tests and tools that read them back.
pub fn init_to<W>(format: LogFormat, filter: &str, writer: W) -> Result<()>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| MetricsError::Telemetry(format!("log filter (RULAKE_LOG) {filter:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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

/// The trace context of the gRPC call this task is serving, if any.
pub fn current() -> Option<TraceContext> {
    crate::grpc::current_trace()
}

/// What an outgoing call from this task should carry: the trace of the
/// gRPC call it serves, with that call's span (the `span_id` its logs
/// show) as the parent. A task not serving a call starts a new trace.
pub fn outgoing() -> TraceContext {
    current().unwrap_or_else(TraceContext::new_root)
}

/// The span a gRPC call runs in: its path and trace context (continuing
/// the caller's trace when the call carries one, the caller's span as
/// `parent_id`).
pub(crate) fn request_span(path: &str, headers: &HeaderMap) -> (tracing::Span, TraceContext) {
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
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        // Outside a served call there is no context, and an outgoing call
        // starts a new, sampled trace each time.
        assert_eq!(current(), None);
        let (a, b) = (outgoing(), outgoing());
        assert!(a.sampled && b.sampled);
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceContext::parse(&a.to_string()), Some(a));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
