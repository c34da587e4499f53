//! The RuLake server roles as a library: what `rulake serve`, `rulake meta`,
//! `rulake shard`, `rulake coordinator` and `rulake dev` run.
//!
//! Kept apart from the binary so the binary only parses arguments and
//! dispatches, and so tests and benchmarks start the same roles the image
//! runs. This crate wires the layers below together (catalog, coordinator,
//! API, metrics, TLS) and owns how a process starts and stops: every role
//! takes one [`Shutdown`], stops its servers on it, and waits for its
//! background tasks before returning.
//!
//! # Layout
//! - [`shutdown`] — [`Shutdown`]: the one signal handler and task tracker.
//! - [`serve`] — `rulake serve`: every role in one process; the public API
//!   server the coordinator role shares.
//! - [`meta`] — `rulake meta`: a member of the catalog's Raft group.
//! - [`shard`] — `rulake shard`: a shard node.
//! - [`drain`] — how a shard node stops: out of routing, then quiet, then
//!   closed.
//! - [`coordinator`] — `rulake coordinator`: the public API over a cluster.
//! - [`dev`] — `rulake dev`: a loopback cluster of child processes.
//! - [`observe`] — metrics registry, collectors, `/metrics` `/healthz`
//!   `/readyz`, collection warm-up, per role.
//! - [`cluster_tls`] — mutual TLS between roles: flags and what they turn into.
//! - [`sources`] — the source policy: which prefixes sources may use, the
//!   server's own files fenced off.

pub mod audit;
pub mod cluster_tls;
pub mod coordinator;
pub mod dev;
pub mod drain;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod meta;
pub mod observe;
pub mod serve;
pub mod shard;
pub mod shutdown;
pub mod sources;

pub use shutdown::Shutdown;
