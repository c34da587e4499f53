//! Placement as the node sees it: the assignment epoch and how many
//! partitions each shard node holds, fed by whoever knows the assignment
//! (the meta leader commits it, a coordinator follows it; in one process
//! every partition is on the local node).
//!
//! The `node` label carries shard node names, bounded by the cluster size.

use crate::{Metrics, Result};
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};

/// The placement families.
#[derive(Clone, Debug)]
pub struct PlacementMetrics {
    epoch: IntGauge,
    partitions: IntGaugeVec,
    moves: IntCounter,
}

impl PlacementMetrics {
    /// Register the placement families in `metrics`.
    pub fn new(metrics: &Metrics) -> Result<Self> {
        let epoch = IntGauge::new(
            "placement_epoch",
            "Epoch of the partition-to-node assignment this node follows.",
        )?;
        let partitions = IntGaugeVec::new(
            Opts::new(
                "placement_node_partitions",
                "Partitions (replicas included) assigned to each shard node.",
            ),
            &["node"],
        )?;
        let moves = IntCounter::new(
            "placement_moves_total",
            "Partition replicas moved between nodes by new assignments.",
        )?;
        metrics.register(Box::new(epoch.clone()))?;
        metrics.register(Box::new(partitions.clone()))?;
        metrics.register(Box::new(moves.clone()))?;
        Ok(PlacementMetrics {
            epoch,
            partitions,
            moves,
        })
    }

    /// Record a new assignment: its epoch and the partitions per node (the
    /// complete list: nodes left out are removed), plus the replicas it
    /// moved.
    pub fn set_assignment<'a>(
        &self,
        epoch: u64,
        per_node: impl IntoIterator<Item = (&'a str, u64)>,
        moved: u64,
    ) {
        self.epoch.set(epoch as i64);
        self.partitions.reset();
        for (node, n) in per_node {
            self.partitions.with_label_values(&[node]).set(n as i64);
        }
        self.moves.inc_by(moved);
    }
}
