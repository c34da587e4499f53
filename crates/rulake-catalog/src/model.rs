//! The catalog as a deterministic state machine: every replica applies the
//! same commands in log order and must reach the same state, so nothing here
//! reads clocks, randomness or the environment. Validation and application
//! share one function, so a command that validates against a state is exactly
//! a command that applies to it.
//!
//! [`Catalog::apply`] only dispatches: each command has its own function,
//! grouped by what it changes, so a command's rules read in one place and
//! a new command adds a function rather than growing one long match.
//! - `sources`: sources and the commits of managed sources;
//! - `collections`: collections and their tombstones;
//! - `aliases`: aliases;
//! - `nodes`: serving nodes and the partition assignment;
//! - `checks`: field checks that need no state, shared by the above,
//!   including every size limit of [`crate::limits`] a command's fields
//!   must keep.
//!
//! Every command function checks everything before it changes anything, so
//! a rejected command leaves the catalog as it was.

mod aliases;
mod checks;
mod collections;
mod nodes;
mod sources;

use crate::error::CommandError;
use rulake_types::{Consistency, Metric};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::limits::{MAX_BATCH, MAX_ID_LEN, MAX_NAME_LEN};
pub use checks::batches;

/// Most partitions a collection may have (matches the engine's bound).
pub const MAX_PARTITIONS: u32 = 4096;
/// Largest vector dimension accepted.
pub const MAX_DIM: u32 = 65_536;
/// Largest replication factor accepted.
pub const MAX_REPLICATION: u32 = 16;

pub use rulake_types::source::{IcebergSqlCatalog, SourceKind};

/// A registered source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Source name.
    pub name: String,
    /// What and where it is.
    pub kind: SourceKind,
    /// Object-store options (region, endpoint, ...). Secrets belong in the
    /// servers' environment, not here: the catalog is replicated as is.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A collection as the catalog stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// Collection name.
    pub name: String,
    /// Name of a registered source.
    pub source: String,
    /// Vector dimension.
    pub dim: u32,
    /// Metric.
    pub metric: Metric,
    /// Partitions `P`.
    pub partitions: u32,
    /// Replication factor `R`.
    pub replication: u32,
    /// When the source is checked.
    pub consistency: Consistency,
    /// Default rerank factor.
    pub rerank: u32,
    /// Default IVF lists probed (`None`: chosen from the collection's size).
    #[serde(default)]
    pub nprobe: Option<u32>,
    /// Recall@10 the defaults aim for (`None`: the engine's default, 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_recall: Option<f32>,
    /// Scalar columns of the source kept beside the vectors, for filters
    /// and returned columns, as declared: `lang`, or `lang:string` with
    /// its type (a managed collection's columns; see
    /// [`rulake_types::declare`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload_columns: Vec<String>,
    /// Only rows matching this filter are kept, in the readable form
    /// (`lang = "en" and year >= 2024`), as it was declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_filter: Option<String>,
}

impl CollectionRecord {
    /// A record with defaults: l2, one partition, one replica, eventual, rerank 20.
    pub fn new(name: &str, source: &str, dim: u32) -> Self {
        CollectionRecord {
            name: name.to_owned(),
            source: source.to_owned(),
            dim,
            metric: Metric::L2,
            partitions: 1,
            replication: 1,
            consistency: Consistency::default(),
            rerank: 20,
            nprobe: None,
            target_recall: None,
            payload_columns: Vec::new(),
            standing_filter: None,
        }
    }

    /// The payload columns' names, their declared types left off.
    pub fn payload_names(&self) -> Vec<String> {
        rulake_types::declared_names(&self.payload_columns)
    }
}

/// The fields of a collection that may change after creation. Dimension,
/// metric, source and partition count are fixed: changing them would
/// invalidate every cache built for the collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionChanges {
    /// New replication factor.
    pub replication: Option<u32>,
    /// New consistency level.
    pub consistency: Option<Consistency>,
    /// New rerank factor.
    pub rerank: Option<u32>,
    /// New default nprobe.
    #[serde(default)]
    pub nprobe: Option<u32>,
}

/// A node that can serve partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id (unique in the cluster).
    pub id: u64,
    /// Address its internal services listen on.
    pub addr: String,
    /// Cache budget it announced, in bytes (0: not said).
    #[serde(default)]
    pub capacity_bytes: u64,
    /// Taken out of placement by an operator (drain); it keeps serving its
    /// partitions until their new owners are warm.
    #[serde(default)]
    pub draining: bool,
}

/// One commit of a managed source: files that became visible together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedCommit {
    /// Commit sequence, 1-based and gapless per source: the source's generation.
    pub seq: u64,
    /// Files added by the commit and still visible (a compaction retires
    /// files from the commits that added them).
    pub files: Vec<String>,
}

/// The partition → node assignment, committed with an epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Strictly increasing; 0 means "never assigned".
    pub epoch: u64,
    /// `"collection/p"` → node ids, primary first.
    pub partitions: BTreeMap<String, Vec<u64>>,
    /// `"collection/p"` → previous owners that keep serving the partition
    /// until its new owners report it warm, so a move never leaves a
    /// partition without a warm replica.
    #[serde(default)]
    pub handoff: BTreeMap<String, Vec<u64>>,
}

impl Assignment {
    /// Every node that serves `key` now: owners first, then handoff.
    pub fn serving(&self, key: &str) -> Vec<u64> {
        let mut v = self.partitions.get(key).cloned().unwrap_or_default();
        for n in self.handoff.get(key).into_iter().flatten() {
            if !v.contains(n) {
                v.push(*n);
            }
        }
        v
    }

    /// Whether `node` owns or hands off any partition.
    pub fn uses(&self, node: u64) -> bool {
        self.partitions
            .values()
            .chain(self.handoff.values())
            .any(|ns| ns.contains(&node))
    }
}

/// A typed catalog command: the only way the catalog changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Register a source.
    CreateSource(SourceRecord),
    /// Remove a source no collection uses.
    DropSource {
        /// Source name.
        name: String,
    },
    /// Create a collection over a registered source.
    CreateCollection(CollectionRecord),
    /// Change a collection's mutable fields.
    AlterCollection {
        /// Collection name.
        name: String,
        /// What to change.
        changes: CollectionChanges,
    },
    /// Drop a collection no alias points at; its tombstones and assignment go with it.
    DropCollection {
        /// Collection name.
        name: String,
    },
    /// Create an alias for a collection.
    CreateAlias {
        /// Alias name.
        alias: String,
        /// Target collection.
        collection: String,
    },
    /// Delete an alias.
    DeleteAlias {
        /// Alias name.
        alias: String,
    },
    /// Point existing aliases at new collections, all in one step.
    SwitchAliases {
        /// Alias → new target collection.
        switches: BTreeMap<String, String>,
    },
    /// Add tombstones (logically deleted ids) to a collection.
    AddTombstones {
        /// Collection name.
        collection: String,
        /// Ids, in their string form.
        ids: Vec<String>,
    },
    /// Remove tombstones (after physical compaction).
    RemoveTombstones {
        /// Collection name.
        collection: String,
        /// Ids, in their string form.
        ids: Vec<String>,
    },
    /// Register a serving node, or update its address and capacity when it
    /// is registered already (a restart); its drain flag is kept.
    RegisterNode(NodeRecord),
    /// Take a node out of placement (`draining`) or put it back.
    SetNodeDraining {
        /// Node id.
        id: u64,
        /// Drain (true) or admit (false).
        draining: bool,
    },
    /// Deregister a node no assignment uses.
    DeregisterNode {
        /// Node id.
        id: u64,
    },
    /// Replace the assignment; `epoch` must be the current epoch + 1, so two
    /// leaders' computations cannot both land.
    SetAssignment(Assignment),
    /// Make files of a managed source visible as its next generation.
    CommitManaged {
        /// Managed source name.
        source: String,
        /// The sequence the writer expects to get (current + 1); `None`
        /// appends whatever the next sequence is.
        expected_seq: Option<u64>,
        /// Files added.
        files: Vec<String>,
    },
    /// Replace committed files of a managed source by their compacted
    /// rewrite, as its next generation: `retired` stop being visible and
    /// `files` become visible, in one step.
    CompactManaged {
        /// Managed source name.
        source: String,
        /// The sequence the compaction expects to get (current + 1): a
        /// compaction that raced an ingest is refused, never merged.
        expected_seq: u64,
        /// Committed files the rewrite replaces.
        retired: Vec<String>,
        /// The rewritten files.
        files: Vec<String>,
    },
    /// Give a managed source with no commits the commit history of a
    /// backup, sequences included, so a restored collection serves the
    /// generation it was backed up at.
    RestoreManaged {
        /// Managed source name.
        source: String,
        /// The commits, oldest first, sequences strictly increasing.
        commits: Vec<ManagedCommit>,
    },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateSource(_) => "create_source",
            Command::DropSource { .. } => "drop_source",
            Command::CreateCollection(_) => "create_collection",
            Command::AlterCollection { .. } => "alter_collection",
            Command::DropCollection { .. } => "drop_collection",
            Command::CreateAlias { .. } => "create_alias",
            Command::DeleteAlias { .. } => "delete_alias",
            Command::SwitchAliases { .. } => "switch_aliases",
            Command::AddTombstones { .. } => "add_tombstones",
            Command::RemoveTombstones { .. } => "remove_tombstones",
            Command::RegisterNode(_) => "register_node",
            Command::SetNodeDraining { .. } => "set_node_draining",
            Command::DeregisterNode { .. } => "deregister_node",
            Command::SetAssignment(_) => "set_assignment",
            Command::CommitManaged { .. } => "commit_managed",
            Command::CompactManaged { .. } => "compact_managed",
            Command::RestoreManaged { .. } => "restore_managed",
        }
    }
}

/// What an applied command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Applied {
    /// The command changed the catalog.
    Done,
    /// Tombstones: how many ids were new (add) or present (remove).
    Count {
        /// Ids changed.
        changed: u64,
    },
    /// A managed commit: its sequence.
    Committed {
        /// New generation of the managed source.
        seq: u64,
    },
    /// A new assignment epoch.
    Epoch {
        /// The epoch now in force.
        epoch: u64,
    },
}

/// The replicated catalog.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Sources by name.
    pub sources: BTreeMap<String, SourceRecord>,
    /// Collections by name.
    pub collections: BTreeMap<String, CollectionRecord>,
    /// Alias → collection.
    pub aliases: BTreeMap<String, String>,
    /// Collection → tombstoned ids.
    pub tombstones: BTreeMap<String, BTreeSet<String>>,
    /// Serving nodes by id.
    pub nodes: BTreeMap<u64, NodeRecord>,
    /// Partition placement.
    pub assignment: Assignment,
    /// Managed source → its commits, oldest first.
    pub managed: BTreeMap<String, Vec<ManagedCommit>>,
}

impl Catalog {
    /// The collection an alias or collection name resolves to.
    pub fn resolve(&self, name: &str) -> Option<&CollectionRecord> {
        let target = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.collections.get(target)
    }

    /// The current generation (commit sequence) of a managed source.
    pub fn managed_seq(&self, source: &str) -> u64 {
        self.managed
            .get(source)
            .and_then(|c| c.last())
            .map_or(0, |c| c.seq)
    }

    /// `name` is a valid name of an existing collection.
    fn collection_exists(&self, name: &str) -> Result<(), CommandError> {
        checks::check_name("collection", name)?;
        if !self.collections.contains_key(name) {
            return Err(CommandError::NotFound {
                what: "collection",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Check a command against this state without changing it.
    pub fn validate(&self, cmd: &Command) -> Result<(), CommandError> {
        self.clone().apply(cmd.clone()).map(|_| ())
    }

    /// Validate and apply a command. On error the catalog is unchanged.
    pub fn apply(&mut self, cmd: Command) -> Result<Applied, CommandError> {
        match cmd {
            Command::CreateSource(src) => self.create_source(src),
            Command::DropSource { name } => self.drop_source(name),
            Command::CreateCollection(c) => self.create_collection(c),
            Command::AlterCollection { name, changes } => self.alter_collection(name, changes),
            Command::DropCollection { name } => self.drop_collection(name),
            Command::CreateAlias { alias, collection } => self.create_alias(alias, collection),
            Command::DeleteAlias { alias } => self.delete_alias(alias),
            Command::SwitchAliases { switches } => self.switch_aliases(switches),
            Command::AddTombstones { collection, ids } => self.add_tombstones(collection, ids),
            Command::RemoveTombstones { collection, ids } => {
                self.remove_tombstones(collection, ids)
            }
            Command::RegisterNode(node) => self.register_node(node),
            Command::SetNodeDraining { id, draining } => self.set_node_draining(id, draining),
            Command::DeregisterNode { id } => self.deregister_node(id),
            Command::SetAssignment(a) => self.set_assignment(a),
            Command::CommitManaged {
                source,
                expected_seq,
                files,
            } => self.commit_managed(source, expected_seq, files),
            Command::CompactManaged {
                source,
                expected_seq,
                retired,
                files,
            } => self.compact_managed(source, expected_seq, retired, files),
            Command::RestoreManaged { source, commits } => self.restore_managed(source, commits),
        }
    }
}
