//! The harness of RuLake's cross-crate and multi-process tests: one way to
//! run real `rulake` processes on loopback and to check what they did.
//!
//! Tests that exercise one crate stay in that crate; the ones here start
//! several roles as processes (or wire several crates together) and so
//! belong to no single crate. The fault scenarios in `chaos/` build on the
//! same harness.
//!
//! # Layout
//! - [`process`] — [`process::Proc`]: a child with its log, signals, clean
//!   stops checked for exit status and panics; ports; the binary under test.
//! - [`served`] — one `rulake serve`.
//! - [`catalog`] — a meta group of `rulake meta` members.
//! - [`distributed`] — meta group, shard nodes and coordinators.
//! - [`history`] — what clients did, recorded on one clock, checked per key.
//! - [`linearizability`] — the single-register checker behind it.

pub mod catalog;
pub mod distributed;
pub mod history;
pub mod linearizability;
pub mod process;
pub mod served;

pub use catalog::Cluster;
pub use distributed::Distributed;
pub use process::{cli, free_port, rulake, rulake_bin, Hosts, Loopback, Proc};
pub use served::Served;

/// Every file under `dir`, recursively, sorted (what a test that reads a
/// data directory's bytes walks).
pub fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
