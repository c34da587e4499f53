//! The catalog as a deterministic state machine: every replica applies the
//! same commands in log order and must reach the same state, so nothing here
//! reads clocks, randomness or the environment. Validation and application
//! share one function, so a command that validates against a state is exactly
//! a command that applies to it.

use crate::error::CommandError;
use rulake_types::{Consistency, Metric};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Longest catalog name (collections, sources, aliases).
pub const MAX_NAME_LEN: usize = 128;
/// Most partitions a collection may have (matches the engine's bound).
pub const MAX_PARTITIONS: u32 = 4096;
/// Largest vector dimension accepted.
pub const MAX_DIM: u32 = 65_536;
/// Largest replication factor accepted.
pub const MAX_REPLICATION: u32 = 16;
/// Most tombstones or files one command may carry.
pub const MAX_BATCH: usize = 100_000;

/// Where a collection's vectors come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// Parquet files under an object-store prefix or glob.
    Parquet {
        /// `file://`, `s3://`, `gs://`, `az://` URL, prefix or glob.
        url: String,
        /// Id column.
        id_column: String,
        /// Vector column.
        vector_column: String,
    },
    /// A Delta Lake table.
    Delta {
        /// Table URL.
        url: String,
        /// Id column.
        #[serde(default)]
        id_column: String,
        /// Vector column.
        #[serde(default)]
        vector_column: String,
        /// Pinned table version (time travel); `None` follows the latest.
        #[serde(default)]
        version: Option<i64>,
    },
    /// An Iceberg table.
    Iceberg {
        /// URL of a table metadata file or table location (empty when the
        /// table is named through `sql_catalog`).
        url: String,
        /// Id column.
        #[serde(default)]
        id_column: String,
        /// Vector column.
        #[serde(default)]
        vector_column: String,
        /// Pinned snapshot; `None` follows the current snapshot.
        #[serde(default)]
        snapshot_id: Option<i64>,
        /// The table through a SQL catalog instead of `url`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sql_catalog: Option<IcebergSqlCatalog>,
    },
    /// RuLake's own write path: immutable Parquet files under a prefix it owns,
    /// made visible by commits in this catalog.
    Managed {
        /// Prefix the files are written under.
        prefix: String,
    },
}

/// An Iceberg table named through a SQL catalog (pyiceberg's `SqlCatalog`
/// over SQLite): servers read its current metadata location from the
/// catalog's `iceberg_tables` on every generation check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcebergSqlCatalog {
    /// `sqlite:///path/catalog.db` (SQLAlchemy form) or a file path.
    pub uri: String,
    /// Catalog name (the `catalog_name` column).
    pub catalog: String,
    /// Namespace, dot-separated.
    pub namespace: String,
    /// Table name.
    pub table: String,
}

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
        }
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
    /// Files added by the commit.
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

fn check_name(what: &'static str, name: &str) -> Result<(), CommandError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(CommandError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn check_url(field: &'static str, url: &str) -> Result<(), CommandError> {
    if url.trim().is_empty() {
        return Err(CommandError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

fn check_batch(field: &'static str, items: &[String]) -> Result<(), CommandError> {
    if items.is_empty() {
        return Err(CommandError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if items.len() > MAX_BATCH {
        return Err(CommandError::InvalidField {
            field,
            reason: format!("{} items, at most {MAX_BATCH} per command", items.len()),
        });
    }
    if items.iter().any(|s| s.is_empty()) {
        return Err(CommandError::InvalidField {
            field,
            reason: "contains an empty string".into(),
        });
    }
    Ok(())
}

fn check_consistency(c: &Consistency) -> Result<(), CommandError> {
    if let Consistency::Eventual { max_staleness } = c {
        if max_staleness.is_zero() {
            return Err(CommandError::InvalidField {
                field: "consistency.max_staleness",
                reason: "must be positive (use fresh for zero staleness)".into(),
            });
        }
    }
    Ok(())
}

fn check_replication(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > MAX_REPLICATION {
        return Err(CommandError::InvalidField {
            field: "replication",
            reason: format!("{r}; must be in 1..={MAX_REPLICATION}"),
        });
    }
    Ok(())
}

fn check_rerank(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > 1000 {
        return Err(CommandError::InvalidField {
            field: "rerank",
            reason: format!("{r}; must be in 1..=1000"),
        });
    }
    Ok(())
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

    fn collection_exists(&self, name: &str) -> Result<(), CommandError> {
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
            Command::CreateSource(src) => {
                check_name("source", &src.name)?;
                match &src.kind {
                    SourceKind::Parquet {
                        url,
                        id_column,
                        vector_column,
                    } => {
                        check_url("url", url)?;
                        check_url("id_column", id_column)?;
                        check_url("vector_column", vector_column)?;
                        if id_column == vector_column {
                            return Err(CommandError::InvalidField {
                                field: "vector_column",
                                reason: "must differ from id_column".into(),
                            });
                        }
                    }
                    SourceKind::Delta { url, .. }
                    | SourceKind::Iceberg {
                        url,
                        sql_catalog: None,
                        ..
                    } => check_url("url", url)?,
                    SourceKind::Iceberg {
                        sql_catalog: Some(c),
                        ..
                    } => {
                        check_url("sql_catalog.uri", &c.uri)?;
                        check_url("sql_catalog.catalog", &c.catalog)?;
                        check_url("sql_catalog.namespace", &c.namespace)?;
                        check_url("sql_catalog.table", &c.table)?;
                    }
                    SourceKind::Managed { prefix } => check_url("prefix", prefix)?,
                }
                if self.sources.contains_key(&src.name) {
                    return Err(CommandError::AlreadyExists {
                        what: "source",
                        name: src.name,
                    });
                }
                if let SourceKind::Managed { prefix } = &src.kind {
                    let clash = self.sources.values().any(|s| {
                        matches!(&s.kind, SourceKind::Managed { prefix: p }
                            if p.starts_with(prefix.as_str()) || prefix.starts_with(p.as_str()))
                    });
                    if clash {
                        return Err(CommandError::Conflict(format!(
                            "managed prefix {prefix:?} overlaps another managed source's prefix"
                        )));
                    }
                    self.managed.insert(src.name.clone(), Vec::new());
                }
                self.sources.insert(src.name.clone(), src);
                Ok(Applied::Done)
            }
            Command::DropSource { name } => {
                if !self.sources.contains_key(&name) {
                    return Err(CommandError::NotFound {
                        what: "source",
                        name,
                    });
                }
                if let Some(c) = self.collections.values().find(|c| c.source == name) {
                    return Err(CommandError::InUse {
                        what: "source",
                        name,
                        by: format!("collection {:?}", c.name),
                    });
                }
                self.sources.remove(&name);
                self.managed.remove(&name);
                Ok(Applied::Done)
            }
            Command::CreateCollection(c) => {
                check_name("collection", &c.name)?;
                if c.dim == 0 || c.dim > MAX_DIM {
                    return Err(CommandError::InvalidField {
                        field: "dim",
                        reason: format!("{}; must be in 1..={MAX_DIM}", c.dim),
                    });
                }
                if c.partitions == 0 || c.partitions > MAX_PARTITIONS {
                    return Err(CommandError::InvalidField {
                        field: "partitions",
                        reason: format!("{}; must be in 1..={MAX_PARTITIONS}", c.partitions),
                    });
                }
                check_replication(c.replication)?;
                check_rerank(c.rerank)?;
                check_consistency(&c.consistency)?;
                if !self.sources.contains_key(&c.source) {
                    return Err(CommandError::NotFound {
                        what: "source",
                        name: c.source,
                    });
                }
                if self.collections.contains_key(&c.name) {
                    return Err(CommandError::AlreadyExists {
                        what: "collection",
                        name: c.name,
                    });
                }
                if self.aliases.contains_key(&c.name) {
                    return Err(CommandError::Conflict(format!(
                        "{:?} is already an alias",
                        c.name
                    )));
                }
                self.collections.insert(c.name.clone(), c);
                Ok(Applied::Done)
            }
            Command::AlterCollection { name, changes } => {
                self.collection_exists(&name)?;
                if changes == CollectionChanges::default() {
                    return Err(CommandError::InvalidField {
                        field: "changes",
                        reason: "nothing to change".into(),
                    });
                }
                if let Some(r) = changes.replication {
                    check_replication(r)?;
                }
                if let Some(r) = changes.rerank {
                    check_rerank(r)?;
                }
                if let Some(c) = &changes.consistency {
                    check_consistency(c)?;
                }
                let rec = self.collections.get_mut(&name).expect("checked above");
                if let Some(r) = changes.replication {
                    rec.replication = r;
                }
                if let Some(r) = changes.rerank {
                    rec.rerank = r;
                }
                if let Some(c) = changes.consistency {
                    rec.consistency = c;
                }
                if let Some(n) = changes.nprobe {
                    rec.nprobe = Some(n);
                }
                Ok(Applied::Done)
            }
            Command::DropCollection { name } => {
                self.collection_exists(&name)?;
                if let Some((alias, _)) = self.aliases.iter().find(|(_, t)| **t == name) {
                    return Err(CommandError::InUse {
                        what: "collection",
                        name,
                        by: format!("alias {alias:?}"),
                    });
                }
                self.collections.remove(&name);
                self.tombstones.remove(&name);
                let prefix = format!("{name}/");
                self.assignment
                    .partitions
                    .retain(|k, _| !k.starts_with(&prefix));
                self.assignment
                    .handoff
                    .retain(|k, _| !k.starts_with(&prefix));
                Ok(Applied::Done)
            }
            Command::CreateAlias { alias, collection } => {
                check_name("alias", &alias)?;
                self.collection_exists(&collection)?;
                if self.aliases.contains_key(&alias) {
                    return Err(CommandError::AlreadyExists {
                        what: "alias",
                        name: alias,
                    });
                }
                if self.collections.contains_key(&alias) {
                    return Err(CommandError::Conflict(format!(
                        "{alias:?} is already a collection"
                    )));
                }
                self.aliases.insert(alias, collection);
                Ok(Applied::Done)
            }
            Command::DeleteAlias { alias } => {
                if self.aliases.remove(&alias).is_none() {
                    return Err(CommandError::NotFound {
                        what: "alias",
                        name: alias,
                    });
                }
                Ok(Applied::Done)
            }
            Command::SwitchAliases { switches } => {
                if switches.is_empty() {
                    return Err(CommandError::InvalidField {
                        field: "switches",
                        reason: "must not be empty".into(),
                    });
                }
                for (alias, target) in &switches {
                    if !self.aliases.contains_key(alias) {
                        return Err(CommandError::NotFound {
                            what: "alias",
                            name: alias.clone(),
                        });
                    }
                    self.collection_exists(target)?;
                }
                self.aliases.extend(switches);
                Ok(Applied::Done)
            }
            Command::AddTombstones { collection, ids } => {
                self.collection_exists(&collection)?;
                check_batch("ids", &ids)?;
                let set = self.tombstones.entry(collection).or_default();
                let changed = ids.into_iter().filter(|id| set.insert(id.clone())).count();
                Ok(Applied::Count {
                    changed: changed as u64,
                })
            }
            Command::RemoveTombstones { collection, ids } => {
                self.collection_exists(&collection)?;
                check_batch("ids", &ids)?;
                let mut changed = 0u64;
                if let Some(set) = self.tombstones.get_mut(&collection) {
                    for id in &ids {
                        changed += u64::from(set.remove(id));
                    }
                    if set.is_empty() {
                        self.tombstones.remove(&collection);
                    }
                }
                Ok(Applied::Count { changed })
            }
            Command::RegisterNode(node) => {
                if node.id == 0 {
                    return Err(CommandError::InvalidField {
                        field: "id",
                        reason: "node ids start at 1".into(),
                    });
                }
                check_url("addr", &node.addr)?;
                let draining = self.nodes.get(&node.id).is_some_and(|n| n.draining);
                self.nodes.insert(node.id, NodeRecord { draining, ..node });
                Ok(Applied::Done)
            }
            Command::SetNodeDraining { id, draining } => {
                let node = self
                    .nodes
                    .get_mut(&id)
                    .ok_or_else(|| CommandError::NotFound {
                        what: "node",
                        name: id.to_string(),
                    })?;
                node.draining = draining;
                Ok(Applied::Done)
            }
            Command::DeregisterNode { id } => {
                if !self.nodes.contains_key(&id) {
                    return Err(CommandError::NotFound {
                        what: "node",
                        name: id.to_string(),
                    });
                }
                if let Some((p, _)) = self
                    .assignment
                    .partitions
                    .iter()
                    .chain(&self.assignment.handoff)
                    .find(|(_, ns)| ns.contains(&id))
                {
                    return Err(CommandError::InUse {
                        what: "node",
                        name: id.to_string(),
                        by: format!("partition {p} (drain it with a new assignment first)"),
                    });
                }
                self.nodes.remove(&id);
                Ok(Applied::Done)
            }
            Command::SetAssignment(a) => {
                let expected = self.assignment.epoch + 1;
                if a.epoch != expected {
                    return Err(CommandError::StaleEpoch {
                        given: a.epoch,
                        expected,
                    });
                }
                for (key, nodes) in a.partitions.iter().chain(&a.handoff) {
                    let (coll, p) =
                        key.rsplit_once('/')
                            .ok_or_else(|| CommandError::InvalidField {
                                field: "partitions",
                                reason: format!("key {key:?} is not \"collection/p\""),
                            })?;
                    let rec = self
                        .collections
                        .get(coll)
                        .ok_or_else(|| CommandError::NotFound {
                            what: "collection",
                            name: coll.to_owned(),
                        })?;
                    let p: u32 = p.parse().map_err(|_| CommandError::InvalidField {
                        field: "partitions",
                        reason: format!("key {key:?}: partition is not a number"),
                    })?;
                    if p >= rec.partitions {
                        return Err(CommandError::InvalidField {
                            field: "partitions",
                            reason: format!("{key}: collection has {} partitions", rec.partitions),
                        });
                    }
                    if nodes.is_empty() {
                        return Err(CommandError::InvalidField {
                            field: "partitions",
                            reason: format!("{key}: no node"),
                        });
                    }
                    let distinct: BTreeSet<_> = nodes.iter().collect();
                    if distinct.len() != nodes.len() {
                        return Err(CommandError::InvalidField {
                            field: "partitions",
                            reason: format!("{key}: a node is listed twice"),
                        });
                    }
                    if let Some(n) = nodes.iter().find(|n| !self.nodes.contains_key(n)) {
                        return Err(CommandError::NotFound {
                            what: "node",
                            name: n.to_string(),
                        });
                    }
                }
                let epoch = a.epoch;
                self.assignment = a;
                Ok(Applied::Epoch { epoch })
            }
            Command::CommitManaged {
                source,
                expected_seq,
                files,
            } => {
                match self.sources.get(&source) {
                    None => {
                        return Err(CommandError::NotFound {
                            what: "source",
                            name: source,
                        })
                    }
                    Some(s) if !matches!(s.kind, SourceKind::Managed { .. }) => {
                        return Err(CommandError::Conflict(format!(
                            "source {source:?} is not managed"
                        )))
                    }
                    Some(_) => {}
                }
                check_batch("files", &files)?;
                let seq = self.managed_seq(&source) + 1;
                if let Some(given) = expected_seq.filter(|g| *g != seq) {
                    return Err(CommandError::StaleSequence {
                        given,
                        expected: seq,
                    });
                }
                let mut seen = BTreeSet::new();
                let commits = self.managed.entry(source).or_default();
                for f in &files {
                    let dup = !seen.insert(f.as_str())
                        || commits.iter().any(|c| c.files.iter().any(|g| g == f));
                    if dup {
                        return Err(CommandError::Conflict(format!(
                            "file {f:?} is already committed"
                        )));
                    }
                }
                commits.push(ManagedCommit { seq, files });
                Ok(Applied::Committed { seq })
            }
        }
    }
}
