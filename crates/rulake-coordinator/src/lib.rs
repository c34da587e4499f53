//! The coordinator: what a client's call becomes once it is past the wire.
//!
//! The catalog (a Raft group) is the truth about collections, aliases,
//! deletes and managed commits; the engine holds what can be searched. The
//! coordinator writes every change to the catalog first and then brings the
//! engine to the catalog's state with one level-triggered [`Coordinator::sync`]
//! (the same function runs at start-up, so a restart rebuilds the engine's
//! view from the catalog and the persisted partition cache). Queries read
//! the catalog only to resolve aliases, from the local applied state, so an
//! alias switch is one atomic step for every query.
//!
//! The engine is either in this process (`rulake serve`, the embedded
//! default) or spread over shard nodes (`rulake coordinator`): then every
//! query, id lookup and refresh goes through the [`router`], and the
//! catalog view is a polled [`rulake_catalog::Follower`]. Everything else
//! (catalog writes, aliases, ingest's files) is the same code.
//!
//! # Layout
//! - `coordinator/` — [`Coordinator`], defined once in `mod.rs` (state,
//!   construction, catalog-view lookups, local-or-remote dispatch), its
//!   behaviour split by concern:
//!   - `collections` — create, drop, alter, list, describe;
//!     [`CollectionDef`], [`CollectionView`].
//!   - `aliases` — resolve, create, delete, switch.
//!   - `search` — search, batch and federated search, refresh.
//!   - `writes` — commit-then-apply, the per-collection writer lock, deletes.
//!   - `nodes` — drain and admit shard nodes.
//! - [`ingest`] — managed ingest: files first, one catalog commit, cleanup
//!   (and [`Coordinator::ingest`], which starts one).
//! - [`lineage`] — what a served generation is made of, from whoever
//!   loaded it, plus the catalog's tombstones.
//! - [`router`] — the fan-out to shard nodes, by stage: `shards`
//!   (connections, status), `routes` (replica choice, route tables),
//!   `fanout` (one scan), `hedge` (retries and hedges), `merge` (exact
//!   merge, partial answers), `control` (id lookups, refreshes).
//! - [`shard_node`] — the shard role: its catalog view, the partitions the
//!   assignment gives it, heartbeats.
//! - [`embedded`] — every role in one process over one data directory.
//! - `sync` — catalog → engine.
//! - [`backup`] — a backup of the catalog (read through Raft) and the
//!   managed files, checked whole before a restore writes anything.
//! - [`compact`] — rewrites managed files without their deleted rows,
//!   swaps them in with one catalog command, retires the tombstones.
//! - `retire` — external collections' tombstones, retired once their
//!   table dropped the rows.
//! - [`wire`] — filters, payload values and selections to and from
//!   `rulake.v1` (the public API and the shard scans share them).
//! - `sweep` — deletes managed files no commit names once they are older
//!   than a grace period ([`Coordinator::sweep_managed`]).
//! - [`error`] — [`CoordinatorError`].

pub mod backup;
pub mod compact;
mod coordinator;
pub mod embedded;
pub mod error;
pub mod ingest;
pub mod lineage;
mod retire;
pub mod router;
pub mod shard_node;
mod sweep;
mod sync;
pub mod wire;

pub use compact::{CompactPolicy, CompactProgress, Compaction, Progress};
pub use coordinator::{CollectionDef, CollectionView, Coordinator};
pub use embedded::{Embedded, EmbeddedConfig};
pub use error::{engine_status, grpc_code, CoordinatorError, Result};
pub use ingest::Ingest;
pub use lineage::lineage_message;
pub use router::{PartitionRoute, Router, RouterConfig, RouterStats, ShardState};
pub use shard_node::{cache_stats_message, parse_node_id, ShardConfig, ShardNode};
