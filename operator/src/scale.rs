//! Changing the shard count, as far as the RuLake cluster is concerned:
//! which nodes are drained before the StatefulSet shrinks, and which are
//! admitted after it grows, in which order, through the admin API.
//!
//! Why apart from the reconciler: the steps are the same whoever moves the
//! pods. The reconciler runs them around its StatefulSet changes against
//! the Kubernetes API; the container harness (`chaos/cluster`) runs the
//! same functions around its containers, so what it proves about scaling
//! is this code, not a copy. What differs is passed in: how to tell that a
//! pod is Ready, and what to do with each event (the reconciler publishes
//! Kubernetes Events; the harness prints them).
//!
//! The rules:
//! - Shrinking from `current` to `desired` drains ordinals
//!   `desired..current`, highest first (a StatefulSet removes its highest
//!   ordinals), and stops at the first failed drain, so the StatefulSet
//!   keeps every node not drained yet.
//! - Growing admits ordinals from `admitted` up, in order, each only once
//!   its pod is Ready, and stops at the first that is not (or that is not
//!   registered with the catalog yet).

use crate::admin::{AdminError, ClusterAdmin};
use crate::crd::RuLakeCluster;
use crate::manifests;
use futures::future::BoxFuture;

/// Something worth an Event on the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    /// A Warning rather than a Normal event.
    pub warning: bool,
    /// CamelCase reason (`ShardDrained`, `ShardAdmitted`, `AdmitFailed`).
    pub reason: &'static str,
    /// What was being done (`ScaleDown`, `ScaleUp`).
    pub action: &'static str,
    /// For a person.
    pub note: String,
}

/// Where [`drain_before_shrink`] and [`admit_ready`] send their events.
pub type Events<'a> = dyn FnMut(ScaleEvent) -> BoxFuture<'a, ()> + Send + 'a;

/// A drain that failed: which node, the message to report, and the error.
#[derive(Debug)]
pub struct DrainFailed {
    /// The node that could not be drained.
    pub node: String,
    /// What to report (Event, conditions).
    pub message: String,
    /// The admin API's error.
    pub error: AdminError,
}

/// Shard node ids to drain before the StatefulSet shrinks from `current`
/// to `desired` pods, in the order they are drained.
pub fn to_drain(cluster: &RuLakeCluster, current: i32, desired: i32) -> Vec<String> {
    (desired..current)
        .rev()
        .map(|ordinal| manifests::shard_node_id(cluster, ordinal))
        .collect()
}

/// Drain every node [`to_drain`] names, in that order, each through the
/// admin API (which returns once the node's partitions are warm on their
/// new owners), with a `ShardDrained` event after each. Only when this
/// returns `Ok` may the StatefulSet shrink to `desired`.
pub async fn drain_before_shrink(
    cluster: &RuLakeCluster,
    admin: &dyn ClusterAdmin,
    current: i32,
    desired: i32,
    events: &mut Events<'_>,
) -> Result<(), DrainFailed> {
    for node in to_drain(cluster, current, desired) {
        let reply = match admin.drain_shard(&node).await {
            Ok(reply) => reply,
            Err(error) => {
                let message =
                    format!("draining {node} before scaling shards {current} → {desired}: {error}");
                return Err(DrainFailed {
                    node,
                    message,
                    error,
                });
            }
        };
        let note = format!(
            "drained {node}: {} partitions moved, assignment epoch {}",
            reply.partitions_moved, reply.assignment_epoch
        );
        events(ScaleEvent {
            warning: false,
            reason: "ShardDrained",
            action: "ScaleDown",
            note,
        })
        .await;
    }
    Ok(())
}

/// Why [`admit_ready`] stopped short: a CamelCase reason and a message.
pub type Waiting = (&'static str, String);

/// Admit shard ordinals from `*admitted` up to `desired`, in order, each
/// once `ready(node)` says its pod is Ready, counting each admission in
/// `*admitted` (so a run that stops half way resumes there). Returns why
/// it stopped short, if it did: a pod not Ready, a node not registered
/// with the catalog yet, or a failed admission (also a Warning event);
/// none of them an error, so the caller can report it and look again.
pub async fn admit_ready<'a, E>(
    cluster: &RuLakeCluster,
    admin: &dyn ClusterAdmin,
    admitted: &mut i32,
    desired: i32,
    ready: &mut (dyn FnMut(String) -> BoxFuture<'a, Result<bool, E>> + Send + 'a),
    events: &mut Events<'_>,
) -> Result<Option<Waiting>, E> {
    while *admitted < desired {
        let node = manifests::shard_node_id(cluster, *admitted);
        if !ready(node.clone()).await? {
            return Ok(Some((
                "WaitingForShardReady",
                format!("{node} is not Ready yet"),
            )));
        }
        match admin.admit_shard(&node).await {
            Ok(reply) => {
                let note = format!(
                    "admitted {node}: {} partitions assigned, assignment epoch {}",
                    reply.partitions_assigned, reply.assignment_epoch
                );
                events(ScaleEvent {
                    warning: false,
                    reason: "ShardAdmitted",
                    action: "ScaleUp",
                    note,
                })
                .await;
                *admitted += 1;
            }
            // Ready but not registered with the catalog yet: look again soon.
            Err(e) if e.code() == tonic::Code::NotFound => {
                return Ok(Some((
                    "WaitingForShardRegistration",
                    format!("{node}: {e}"),
                )));
            }
            Err(e) => {
                let message = format!("admitting {node}: {e}");
                events(ScaleEvent {
                    warning: true,
                    reason: "AdmitFailed",
                    action: "ScaleUp",
                    note: message.clone(),
                })
                .await;
                return Ok(Some(("AdmitFailed", message)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_ordinals_are_drained_first() {
        let cluster = crate::fixtures::cluster(3);
        let name = |o: i32| manifests::shard_node_id(&cluster, o);
        assert_eq!(to_drain(&cluster, 5, 2), [name(4), name(3), name(2)]);
        assert!(to_drain(&cluster, 2, 2).is_empty());
        assert!(to_drain(&cluster, 2, 3).is_empty());
    }
}
