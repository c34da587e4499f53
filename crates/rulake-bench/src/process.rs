//! The benchmark's child processes: cluster roles run by this same binary
//! (hidden `role` subcommands over `rulake-server`), so a benchmark needs no
//! second binary built beside it and measures the roles the image runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub use rulake_server::dev::free_port;

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> anyhow::Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

/// Start `rulake-bench role <args>` in `work`, output discarded. Sources
/// may be any local path (the benchmark's own lakes), as in `rulake dev`.
pub fn spawn_role(args: &[&str], work: &Path) -> anyhow::Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("role")
        .args(args)
        .env("RULAKE_SOURCE_ALLOW", "file:///")
        .env("RULAKE_CLUSTER_INSECURE", "true")
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Child processes killed (and reaped) when dropped.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
