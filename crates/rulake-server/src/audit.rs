//! The audit log flags of the roles serving the public API (`serve`,
//! `coordinator`), and the log they open. What goes in the log is the
//! API's and the authentication layer's business (docs/security.md,
//! "Audit log"); here is only where it goes.

use anyhow::Context;
use rulake_audit::{AuditLog, Sink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the audit log goes, and what it keeps.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AuditArgs {
    /// Write the audit log to this file (`-`: standard output); no log
    /// when unset. The file's directory is fenced off from sources.
    #[arg(long, env = "RULAKE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Record searches, lists and describes too, not only changes and
    /// refusals.
    #[arg(long, env = "RULAKE_AUDIT_READS")]
    pub audit_reads: bool,
    /// Rotate the file once it would grow past this many bytes (0: never).
    #[arg(long, default_value_t = 100 << 20)]
    pub audit_max_bytes: u64,
    /// Rotated files kept beside the live one.
    #[arg(long, default_value_t = 5)]
    pub audit_keep: u32,
}

impl AuditArgs {
    fn sink(&self) -> Option<Sink> {
        let path = self.audit_log.as_ref()?;
        Some(if path == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File {
                path: path.clone(),
                max_bytes: self.audit_max_bytes,
                keep: self.audit_keep,
            }
        })
    }

    /// Open the log the flags name, if any.
    pub fn open(&self) -> anyhow::Result<Option<Arc<AuditLog>>> {
        match self.sink() {
            Some(sink) => Ok(Some(Arc::new(
                AuditLog::open(&sink).context("--audit-log")?,
            ))),
            None => Ok(None),
        }
    }

    /// The directory the log file and its rotations live in, which no
    /// source may read.
    pub fn dir(&self) -> Option<PathBuf> {
        match self.sink()? {
            Sink::File { path, .. } => Some(match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            }),
            Sink::Stdout => None,
        }
    }
}
