//! `rulake audit`: read an audit log a server wrote (docs/security.md,
//! "Audit log"). No server is involved: an auditor checks the files where
//! they were shipped.

use std::path::PathBuf;

/// `rulake audit ...`
#[derive(clap::Subcommand)]
pub enum Audit {
    /// Check a log's hash chain; rotated files oldest first
    /// (`audit.log.2 audit.log.1 audit.log`). Exits 1 at the first broken
    /// or malformed line.
    Verify {
        /// The files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Run an audit command.
pub fn run(cmd: Audit) -> anyhow::Result<()> {
    match cmd {
        Audit::Verify { files } => {
            let s = rulake_audit::verify(&files)?;
            println!(
                "ok: {} lines, seq {}..{}{}",
                s.lines,
                s.first_seq,
                s.last_seq,
                if s.from_genesis {
                    ", from the start of the chain"
                } else {
                    " (earlier lines are in files not given; the first line given is not checked against its predecessor)"
                }
            );
            Ok(())
        }
    }
}
