//! Commands on serving nodes and the partition → node assignment. They sit
//! together because each guards the other: a node cannot leave while an
//! assignment uses it, and an assignment may name only registered nodes
//! and existing partitions. The epoch check makes two leaders' placement
//! computations unable to both land.

use super::checks::check_url;
use super::{Applied, Assignment, Catalog, NodeRecord};
use crate::error::CommandError;
use std::collections::BTreeSet;

impl Catalog {
    /// [`super::Command::RegisterNode`]: a re-registration (restart) keeps
    /// the node's drain flag.
    pub(super) fn register_node(&mut self, node: NodeRecord) -> Result<Applied, CommandError> {
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

    /// [`super::Command::SetNodeDraining`].
    pub(super) fn set_node_draining(
        &mut self,
        id: u64,
        draining: bool,
    ) -> Result<Applied, CommandError> {
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

    /// [`super::Command::DeregisterNode`].
    pub(super) fn deregister_node(&mut self, id: u64) -> Result<Applied, CommandError> {
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

    /// [`super::Command::SetAssignment`]: the next epoch, with every
    /// owner and hand-off entry checked.
    pub(super) fn set_assignment(&mut self, a: Assignment) -> Result<Applied, CommandError> {
        let expected = self.assignment.epoch + 1;
        if a.epoch != expected {
            return Err(CommandError::StaleEpoch {
                given: a.epoch,
                expected,
            });
        }
        for (key, nodes) in a.partitions.iter().chain(&a.handoff) {
            self.check_placement(key, nodes)?;
        }
        let epoch = a.epoch;
        self.assignment = a;
        Ok(Applied::Epoch { epoch })
    }

    /// One entry of an assignment: `key` is `"collection/p"` for an
    /// existing collection and partition, `nodes` is a non-empty list of
    /// distinct registered nodes.
    fn check_placement(&self, key: &str, nodes: &[u64]) -> Result<(), CommandError> {
        let invalid = |reason: String| CommandError::InvalidField {
            field: "partitions",
            reason,
        };
        let (coll, p) = key
            .rsplit_once('/')
            .ok_or_else(|| invalid(format!("key {key:?} is not \"collection/p\"")))?;
        let rec = self
            .collections
            .get(coll)
            .ok_or_else(|| CommandError::NotFound {
                what: "collection",
                name: coll.to_owned(),
            })?;
        let p: u32 = p
            .parse()
            .map_err(|_| invalid(format!("key {key:?}: partition is not a number")))?;
        if p >= rec.partitions {
            return Err(invalid(format!(
                "{key}: collection has {} partitions",
                rec.partitions
            )));
        }
        if nodes.is_empty() {
            return Err(invalid(format!("{key}: no node")));
        }
        let distinct: BTreeSet<_> = nodes.iter().collect();
        if distinct.len() != nodes.len() {
            return Err(invalid(format!("{key}: a node is listed twice")));
        }
        if let Some(n) = nodes.iter().find(|n| !self.nodes.contains_key(n)) {
            return Err(CommandError::NotFound {
                what: "node",
                name: n.to_string(),
            });
        }
        Ok(())
    }
}
