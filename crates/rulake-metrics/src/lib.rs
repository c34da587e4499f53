//! RuLake's Prometheus metrics and HTTP endpoints: everything an operator
//! needs to see a node from outside. It sits at the top of the layers (it
//! reads the engine, the catalog and the lake), used only by the server;
//! request telemetry that lower layers need (trace context, the request's
//! collection) lives in the leaf crate `rulake-telemetry`.
//!
//! Every metric lives in one [`Metrics`] registry whose names carry the
//! `rulake_` prefix. Values that a library already counts (the partition
//! cache, the engine's query counters, the recall monitor, Raft, lake I/O) are read
//! when Prometheus scrapes, through collectors, so nothing is counted
//! twice; values that only exist on the request path (gRPC calls) are
//! recorded by a tower layer as calls complete.
//!
//! Labels are bounded by construction: a `collection` label only ever
//! carries the name of a collection that exists (otherwise
//! [`UNKNOWN_COLLECTION`]), gRPC methods are capped, and nothing keyed by a
//! vector id or a query ever becomes a label. The port is open (scrapers
//! and probes carry no credentials), so no label or answer carries a URL, a
//! path or an error's text (see [`http`]).
//!
//! # Layout
//! - [`Metrics`] — the registry and text exposition (this file).
//! - [`grpc`] — the tower layer recording per-RPC count, latency and status;
//!   it scopes the request context of `rulake-telemetry` around each call.
//! - [`engine`] — scrape-time collector over the embedded engine: cache,
//!   collections, fan-out, recall estimate.
//! - [`lake`] — scrape-time collector over the process's lake I/O
//!   counters (bytes, requests, errors per source kind).
//! - [`raft`] — scrape-time collector over a catalog member's Raft metrics.
//! - [`placement`] — placement epoch and partitions per node, fed by whoever
//!   knows the assignment.
//! - [`http`] — `/metrics`, `/healthz` and `/readyz` on their own port, with
//!   [`http::Readiness`] supplied per role.
//! - [`error`] — [`MetricsError`].

pub mod engine;
pub mod error;
pub mod grpc;
pub mod http;
pub mod lake;
pub mod placement;
pub mod raft;

pub use error::{MetricsError, Result};
pub use grpc::{GrpcMetrics, GrpcMetricsLayer};

use prometheus::{Encoder, Registry, TextEncoder};

/// Prefix of every metric name (`rulake_…`).
pub const PREFIX: &str = "rulake";

/// The `collection` label value for a call whose collection does not exist
/// (or that named none), so a typo in a client cannot grow a label set.
pub const UNKNOWN_COLLECTION: &str = "_unknown";

/// A node's metric registry. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry; every name registered into it gets the `rulake_`
    /// prefix.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some(PREFIX.to_owned()), None)
            .expect("the prefix is a valid name");
        Metrics { registry }
    }

    /// The underlying registry, for collectors of other crates.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Register a collector.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> Result<()> {
        self.registry.register(c)?;
        Ok(())
    }

    /// Everything in the Prometheus text exposition format.
    pub fn encode(&self) -> Result<String> {
        let families = self.registry.gather();
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8(out).expect("the text encoder writes UTF-8"))
    }

    /// The value of one sample in the current exposition, for tests and
    /// tools: `name` is the full name (with prefix and any `_count`/`_sum`
    /// suffix) and `labels` the label pairs that must match (others are
    /// ignored). `None` when no sample matches.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.encode().ok()?;
        find_sample(&text, name, labels)
    }
}

/// Find a sample in Prometheus text exposition (see [`Metrics::sample`]).
pub fn find_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if ok {
            return value.parse().ok();
        }
    }
    None
}
