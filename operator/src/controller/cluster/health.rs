//! What the cluster's status says beyond replica counts: the admin API's
//! view (the catalog's leader, the assignment epoch, live shards) and the
//! three conditions. Ready needs every role at its replicas, every shard
//! admitted and nothing degraded except monitoring: a missing ServiceMonitor
//! CRD is worth a Degraded condition but does not stop the cluster serving.

use crate::admin::ClusterAdmin;
use crate::crd::{
    set_condition, ConditionStatus, RuLakeCluster, RuLakeClusterStatus, CONDITION_DEGRADED,
    CONDITION_PROGRESSING, CONDITION_READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

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
}

/// Asks the admin API for the cluster's state and fills the status from
/// it. `waiting` is why admission stopped, if it did; otherwise roles with
/// pods not ready yet keep the cluster progressing.
pub(super) async fn observe(
    cluster: &RuLakeCluster,
    admin: &dyn ClusterAdmin,
    status: &mut RuLakeClusterStatus,
    waiting: Option<Progress>,
    service_monitor_skipped: bool,
) -> Observed {
    let mut observed = Observed {
        progressing: waiting,
        admin_error: None,
        dead_shards: Vec::new(),
        service_monitor_skipped,
    };
    match admin.cluster_status().await {
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
    if let Some(e) = &observed.admin_error {
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
    let settled = (
        "Reconciled",
        "every role runs its desired replicas and every shard is in placement",
    );
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
