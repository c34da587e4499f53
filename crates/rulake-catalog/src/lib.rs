//! The catalog of a RuLake cluster — sources, collections, aliases,
//! tombstones, nodes, the partition → node assignment with its epoch and the
//! commits of managed sources — replicated by a Raft group (the `meta` role).
//! Every coordinator must route by the same assignment and every shard must
//! drop the same tombstones, so the catalog needs one agreed order of
//! changes that survives the loss of a minority of members; that is Raft.
//! This crate is the only one that depends on `openraft`.
//!
//! # Layout
//! - [`model`]: the catalog and its typed [`Command`]s; validation and
//!   application are one deterministic function per command.
//! - [`limits`]: every size limit (names, ids, URLs, options, commands,
//!   messages) and why no message outgrows its limit as the catalog grows.
//! - [`store`]: durable log, vote and snapshots (`redb` + fsynced snapshot files).
//! - [`network`]: Raft traffic over tonic; the [`Transport`] builds every
//!   channel, which is where TLS goes.
//! - [`placement`]: partitions → shard nodes (consistent hashing with
//!   bounded loads), liveness from heartbeats, hand-off of moved partitions.
//! - [`server`]: a meta member: Raft, bootstrap, the Raft service; its
//!   `service` submodule is the catalog's gRPC service, with forwarding to
//!   the leader.
//! - [`follower`]: a polled catalog view for shard nodes and coordinators.
//! - [`client`]: a client for any member, with deadlines and safe retries.
//! - `chunked`: a catalog read cut into pieces by a member and joined by
//!   the client.
//! - [`local`]: a member served to its own process over in-memory pipes
//!   (`rulake serve`: no catalog port).
//! - [`error`]: [`CommandError`] (the caller's fault) and [`CatalogError`],
//!   each with the gRPC status it becomes.

mod chunked;
pub mod client;
pub mod error;
pub mod follower;
pub mod limits;
pub mod local;
pub mod model;
pub mod network;
pub mod placement;
pub mod server;
pub mod store;

pub use client::{CatalogClient, ReadConsistency, ReadResult};
pub use error::{CatalogError, CommandError, Rejection, RejectionKind};
pub use follower::Follower;
pub use local::LocalLink;
pub use model::{
    Applied, Assignment, Catalog, CollectionChanges, CollectionRecord, Command, IcebergSqlCatalog,
    ManagedCommit, NodeRecord, SourceKind, SourceRecord,
};
pub use network::Transport;
pub use placement::PlacementConfig;
pub use server::{CatalogConfig, CatalogNode};
pub use store::Outcome;

use std::io::Cursor;

openraft::declare_raft_types!(
    /// openraft's type configuration for the catalog group.
    pub TypeConfig:
        D = Command,
        R = Outcome,
);

/// The Raft handle of a catalog member.
pub type CatalogRaft = openraft::Raft<TypeConfig>;
