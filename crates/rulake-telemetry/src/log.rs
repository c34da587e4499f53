//! Log setup: [`init`] installs the process's `tracing` subscriber once,
//! from the binary: human-readable text for a terminal, or one JSON object
//! per line for a log pipeline (`--log-format json`,
//! `RULAKE_LOG_FORMAT=json`), with the level filter from `RULAKE_LOG`
//! (default `warn`). Libraries only emit events and spans; they never set a
//! subscriber.

use crate::{Result, TelemetryError};
use std::fmt;
use std::str::FromStr;

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
        .map_err(|e| TelemetryError::Log(format!("log filter (RULAKE_LOG) {filter:?}: {e}")))?;
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
    r.map_err(|e| TelemetryError::Log(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_case_blind_and_reject_others() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("TEXT".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
