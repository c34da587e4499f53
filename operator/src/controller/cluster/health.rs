//! What the cluster's status says beyond replica counts: the admin API's
//! view (the catalog's leader, the assignment epoch, live shards) and the
//! three conditions. Ready needs every role at its replicas, every shard
//! admitted and nothing degraded except monitoring: a missing ServiceMonitor
//! CRD is worth a Degraded condition but does not stop the cluster serving.
//! A StatefulSet the API server refused to change (`StorageChangeRefused`)
//! is Degraded, not Ready and not Progressing: the cluster serves, but not
//! as its spec says, and will not get there by itself.
//!
//! The admin API is asked once per run, before the children are applied,
//! because the shard disruption budget follows the replication factors
//! it reports ([`min_replication`]).

use super::children::Children;
use crate::admin::AdminError;
use crate::crd::{
    set_condition, ConditionStatus, RuLakeCluster, RuLakeClusterStatus, CONDITION_DEGRADED,
    CONDITION_PROGRESSING, CONDITION_READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use rulake_proto::v1 as pb;
use std::collections::BTreeMap;

/// A condition's CamelCase reason and its message.
pub(super) type Progress = (&'static str, String);

/// What one run learned, for the conditions.
pub(super) struct Observed {
    /// Why the cluster is not yet where its spec says, if it is not.
    progressing: Option<Progress>,
    /// The admin API's failure, if it failed.
    admin_error: Option<String>,
    /// Shard nodes the admin API reports as not live.
    dead_shards: Vec<String>,
    /// Whether the prometheus-operator CRD was missing although asked for.
    service_monitor_skipped: bool,
    /// StatefulSets the API server refused to change.
    refused: Vec<Progress>,
}

impl Observed {
    /// Whether a refused change keeps the cluster from its spec.
    pub fn refused(&self) -> bool {
        !self.refused.is_empty()
    }
}

/// The smallest replication factor among the cluster's collections, as the
/// replicas of each partition's route: `None` without collections.
pub(super) fn min_replication(cs: &pb::ClusterStatusResponse) -> Option<u32> {
    let mut per_collection: BTreeMap<&str, u32> = BTreeMap::new();
    for route in &cs.routes {
        let replicas = u32::try_from(route.replicas.len()).unwrap_or(u32::MAX);
        per_collection
            .entry(&route.collection)
            .and_modify(|r| *r = (*r).min(replicas))
            .or_insert(replicas);
    }
    per_collection.into_values().min()
}

/// Fills the status from the admin API's answer (`cluster_status`) and
/// what applying the children met. `waiting` is why admission stopped, if
/// it did; otherwise roles with pods not ready yet keep the cluster
/// progressing.
pub(super) fn observe(
    cluster: &RuLakeCluster,
    cluster_status: Result<pb::ClusterStatusResponse, AdminError>,
    status: &mut RuLakeClusterStatus,
    waiting: Option<Progress>,
    children: Children,
) -> Observed {
    let mut observed = Observed {
        progressing: waiting,
        admin_error: None,
        dead_shards: Vec::new(),
        service_monitor_skipped: children.service_monitor_skipped,
        refused: children.refused,
    };
    match cluster_status {
        Ok(cs) => {
            status.meta_leader = (cs.leader_id != 0).then_some(cs.leader_id);
            status.assignment_epoch = Some(cs.assignment_epoch);
            observed.dead_shards = cs
                .shards
                .iter()
                .filter(|s| !s.live)
                .map(|s| s.id.clone())
                .collect();
        }
        Err(e) => {
            status.meta_leader = None;
            observed.admin_error = Some(e.to_string());
        }
    }
    if observed.progressing.is_none() {
        observed.progressing = waiting_for_pods(cluster, status);
    }
    observed
}

/// Roles with fewer ready pods than the spec asks for, if any.
fn waiting_for_pods(cluster: &RuLakeCluster, status: &RuLakeClusterStatus) -> Option<Progress> {
    let spec = &cluster.spec;
    let lagging = [
        ("meta", status.meta.ready, spec.meta.replicas),
        ("shard", status.shards.ready, spec.shards.replicas),
        (
            "coordinator",
            status.coordinators.ready,
            spec.coordinators.replicas,
        ),
    ]
    .into_iter()
    .filter(|(_, ready, want)| ready < want)
    .map(|(role, ready, want)| format!("{role} {ready}/{want} ready"))
    .collect::<Vec<_>>();
    (!lagging.is_empty()).then(|| ("WaitingForPods", lagging.join(", ")))
}

/// Why the cluster is degraded, if it is; the first cause wins.
fn degraded(status: &RuLakeClusterStatus, observed: &Observed) -> Option<Progress> {
    if let Some((reason, _)) = observed.refused.first() {
        let messages: Vec<&str> = observed.refused.iter().map(|(_, m)| m.as_str()).collect();
        Some((*reason, messages.join("; ")))
    } else if let Some(e) = &observed.admin_error {
        Some((
            "AdminUnavailable",
            format!("the cluster's admin API did not answer: {e}"),
        ))
    } else if status.meta_leader.is_none() {
        Some(("NoMetaLeader", "the catalog has no Raft leader".into()))
    } else if !observed.dead_shards.is_empty() {
        Some((
            "ShardsDown",
            format!("shard nodes not live: {}", observed.dead_shards.join(", ")),
        ))
    } else if observed.service_monitor_skipped {
        Some((
            "ServiceMonitorUnavailable",
            "monitoring.serviceMonitor is set but the ServiceMonitor CRD is not installed".into(),
        ))
    } else {
        None
    }
}

/// Sets Ready, Progressing and Degraded; returns whether Ready is True.
pub(super) fn set_conditions(
    status: &mut RuLakeClusterStatus,
    observed: &Observed,
    generation: Option<i64>,
) -> bool {
    let degraded = degraded(status, observed);
    let conditions = &mut status.conditions;
    let progressing = observed.progressing.as_ref();
    // Not moving: either there, or stopped by a refused change.
    let settled = match (&degraded, observed.refused()) {
        (Some((reason, message)), true) => (*reason, message.as_str()),
        _ => (
            "Reconciled",
            "every role runs its desired replicas and every shard is in placement",
        ),
    };
    set_if(
        conditions,
        CONDITION_PROGRESSING,
        progressing,
        settled,
        generation,
    );
    set_if(
        conditions,
        CONDITION_DEGRADED,
        degraded.as_ref(),
        ("AsExpected", ""),
        generation,
    );

    // A skipped ServiceMonitor degrades monitoring, not serving.
    let serving_degraded = degraded
        .as_ref()
        .is_some_and(|(r, _)| *r != "ServiceMonitorUnavailable");
    let ready = progressing.is_none() && !serving_degraded;
    let (reason, message) = if ready {
        (
            "Serving",
            "all roles ready, catalog has a leader, all shards live",
        )
    } else if let Some((reason, message)) = progressing.or(degraded.as_ref()) {
        (*reason, message.as_str())
    } else {
        ("Unknown", "")
    };
    set_condition(
        conditions,
        CONDITION_READY,
        ConditionStatus::from_bool(ready),
        reason,
        message,
        generation,
    );
    ready
}

/// Sets `type_` True for `cause` when there is one, else False for
/// `otherwise`.
fn set_if(
    conditions: &mut Vec<Condition>,
    type_: &str,
    cause: Option<&Progress>,
    otherwise: (&str, &str),
    generation: Option<i64>,
) {
    let (reason, message) = cause.map_or(otherwise, |(r, m)| (r, m.as_str()));
    set_condition(
        conditions,
        type_,
        ConditionStatus::from_bool(cause.is_some()),
        reason,
        message,
        generation,
    );
}
