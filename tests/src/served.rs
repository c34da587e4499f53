//! One `rulake serve` process: every role in one process over a data
//! directory, as the README's embedded default runs it.

use crate::process::{free_addr, rulake, wait_listening, Proc};
use std::path::Path;
use std::time::Duration;

/// A `rulake serve` process, killed (and its log checked) when dropped.
pub struct Served {
    proc: Proc,
    /// Its gRPC address (`host:port`).
    pub addr: String,
}

impl Served {
    /// Start `rulake serve` on a free port over `data_dir` and wait until
    /// it accepts connections. Its log goes next to `data_dir`.
    pub fn start(data_dir: &Path) -> Served {
        Self::start_with(data_dir, &[])
    }

    /// [`Served::start`] with more flags (`--auth-config`, `--source-allow`, ...).
    pub fn start_with(data_dir: &Path, flags: &[String]) -> Served {
        let addr = free_addr();
        let mut cmd = rulake();
        cmd.args([
            "serve",
            "--listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(flags);
        let log = data_dir.with_extension("log");
        let proc = Proc::spawn("rulake serve", cmd, &log);
        wait_listening(&addr, "rulake serve");
        Served { proc, addr }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM; it must exit cleanly within `grace`.
    pub fn stop(&mut self, grace: Duration) -> Duration {
        self.proc.stop(grace)
    }
}
