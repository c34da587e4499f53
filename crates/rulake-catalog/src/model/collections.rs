//! Commands on collections and their tombstones. A collection's dimension,
//! metric, source and partition count are fixed at creation (caches are
//! built for them), so creation checks everything and alteration touches
//! only [`CollectionChanges`]; dropping a collection takes its tombstones
//! and its partitions' placement with it, so nothing refers to it after.

use super::checks::{check_consistency, check_ids, check_name, check_replication, check_rerank};
use super::{Applied, Catalog, CollectionChanges, CollectionRecord, MAX_DIM, MAX_PARTITIONS};
use crate::error::CommandError;

impl Catalog {
    /// [`super::Command::CreateCollection`].
    pub(super) fn create_collection(
        &mut self,
        c: CollectionRecord,
    ) -> Result<Applied, CommandError> {
        check_name("collection", &c.name)?;
        check_name("source", &c.source)?;
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

    /// [`super::Command::AlterCollection`]: every change is checked before
    /// any is made.
    pub(super) fn alter_collection(
        &mut self,
        name: String,
        changes: CollectionChanges,
    ) -> Result<Applied, CommandError> {
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

    /// [`super::Command::DropCollection`].
    pub(super) fn drop_collection(&mut self, name: String) -> Result<Applied, CommandError> {
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

    /// [`super::Command::AddTombstones`]: counts the ids that were new.
    pub(super) fn add_tombstones(
        &mut self,
        collection: String,
        ids: Vec<String>,
    ) -> Result<Applied, CommandError> {
        self.collection_exists(&collection)?;
        check_ids(&ids)?;
        let set = self.tombstones.entry(collection).or_default();
        let changed = ids.into_iter().filter(|id| set.insert(id.clone())).count();
        Ok(Applied::Count {
            changed: changed as u64,
        })
    }

    /// [`super::Command::RemoveTombstones`]: counts the ids that were
    /// present; a collection left without tombstones loses its entry.
    pub(super) fn remove_tombstones(
        &mut self,
        collection: String,
        ids: Vec<String>,
    ) -> Result<Applied, CommandError> {
        self.collection_exists(&collection)?;
        check_ids(&ids)?;
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
}
