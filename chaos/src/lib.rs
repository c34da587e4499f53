//! Fault scenarios: faults injected into real RuLake processes while
//! clients keep working, and the whole history checked afterwards.
//!
//! Unit and integration tests show that a fault is survived once, at a
//! chosen moment; a scenario keeps load going for a profile's length while
//! a nemesis injects faults over and over, then checks invariants over
//! everything that happened: no acknowledged write lost, each key's history
//! linearizable, members agreeing once healed, no process panicking. The
//! processes, their logs and the history checker come from the test harness
//! (`rulake-tests`); this crate adds what only scenarios need.
//!
//! Scenarios run over processes on loopback, so CI runs a short profile;
//! `CHAOS_PROFILE=long` runs the same scenarios for minutes by hand.
//!
//! # Layout
//! - [`cluster`] — a RuLakeCluster manifest run as containers, as a kubelet would.
//! - [`profile`] — [`Profile`]: how long a scenario runs and how often faults come.
//! - [`nemesis`] — [`Fault`] and [`Nemesis`]: what is done to a member or
//!   the cluster each round, and its healing.
//! - [`workload`] — alias registers on the catalog, recorded as a history.
//! - [`disk`] — [`disk::SmallDisk`]: a data directory on a disk that fills up.
//! - [`net`] — [`net::Net`]: a host of its own for every process, and the
//!   cut, slow and lossy links between them.
//! - [`system`] — the whole cluster a scenario runs against, and the
//!   collections whose answers are checkable.
//! - [`load`] — searches, writes and catalog reads, recorded as a history.
//! - [`check`] — the invariants I1–I5 over a history.
//! - [`scenario`] — the named scenarios of `chaos/run`, each a [`scenario::Row`].
//! - [`lake`] — [`lake::FaultyLake`]: an S3-compatible lake that fails on demand.

pub mod check;
pub mod cluster;
pub mod disk;
pub mod lake;
pub mod load;
pub mod nemesis;
pub mod net;
pub mod profile;
pub mod scenario;
pub mod system;
pub mod workload;

pub use nemesis::{Fault, Nemesis};
pub use profile::Profile;
