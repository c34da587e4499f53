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
