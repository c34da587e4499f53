//! Placement admin: drain a shard node, admit it back.
//!
//! Why these calls wait for the catalog instead of returning once the
//! command is committed: the meta leader, not the coordinator, moves
//! partitions, and it keeps a drained node in hand-off until every
//! partition is warm on its new owners. Returning when the view shows the
//! node unused means an operator who stops it next causes no partial
//! answer. The waits only watch; stopping one early undoes nothing.

use super::Coordinator;
use crate::{CoordinatorError, Result};
use rulake_catalog::Command;
use std::time::{Duration, Instant};

impl Coordinator {
    fn remote_node(&self, node: u64) -> Result<()> {
        if self.inner.remote.is_none() {
            return Err(CoordinatorError::FailedPrecondition(
                "this server runs every role in one process; there are no shard nodes to place partitions on".into(),
            ));
        }
        if !self.inner.view.read().catalog.nodes.contains_key(&node) {
            return Err(CoordinatorError::NotFound {
                kind: "shard node",
                name: node.to_string(),
            });
        }
        Ok(())
    }

    /// Take shard node `node` out of placement and wait until it serves
    /// nothing: every partition it held is warm on its new owners first
    /// (the meta leader keeps it in hand-off until then), so no query sees
    /// a partial answer. Returns the partitions moved and the epoch in
    /// force. The caller bounds the wait; stopping early undoes nothing.
    pub async fn drain(&self, node: u64) -> Result<(u32, u64)> {
        self.remote_node(node)?;
        let held = |c: &rulake_catalog::Catalog| {
            c.assignment
                .partitions
                .values()
                .chain(c.assignment.handoff.values())
                .filter(|ns| ns.contains(&node))
                .count() as u32
        };
        let before = held(&self.catalog());
        self.write(Command::SetNodeDraining {
            id: node,
            draining: true,
        })
        .await?;
        loop {
            let (uses, epoch) = {
                let v = self.inner.view.read();
                (v.catalog.assignment.uses(node), v.catalog.assignment.epoch)
            };
            if !uses {
                return Ok((before, epoch));
            }
            self.wait_catalog().await;
        }
    }

    /// Put shard node `node` (back) into placement; returns the partitions
    /// it is given and the epoch once the leader has placed it.
    pub async fn admit(&self, node: u64) -> Result<(u32, u64)> {
        self.remote_node(node)?;
        self.write(Command::SetNodeDraining {
            id: node,
            draining: false,
        })
        .await?;
        let start = Instant::now();
        loop {
            let (owned, epoch, any) = {
                let v = self.inner.view.read();
                let a = &v.catalog.assignment;
                let owned = a
                    .partitions
                    .values()
                    .filter(|ns| ns.contains(&node))
                    .count() as u32;
                (owned, a.epoch, !v.catalog.collections.is_empty())
            };
            if owned > 0 || !any || start.elapsed() > super::writes::APPLY_WAIT {
                return Ok((owned, epoch));
            }
            self.wait_catalog().await;
        }
    }

    /// Wait a little for the catalog view to move.
    async fn wait_catalog(&self) {
        match &self.inner.follower {
            Some(f) => {
                let mut rx = f.changes();
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
