//! Errors of the observability crate.

/// What can go wrong registering metrics or serving the HTTP endpoints.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be registered or encoded (duplicate name, bad label).
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    /// The HTTP endpoint could not bind or serve.
    #[error("metrics endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
