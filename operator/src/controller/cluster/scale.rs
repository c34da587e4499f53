//! Changing the shard count through the admin API. A StatefulSet removes
//! and adds pods blindly; placement must hear of each change at the right
//! moment, or queries are routed to a node that is gone or not warm yet.
//! `status.shards.admitted` records how many ordinals placement counts on,
//! so a run that stops half way resumes where it stopped.

use super::super::{patch_status, Context};
use super::health::Progress;
use crate::admin::ClusterAdmin;
use crate::crd::{
    set_condition, ConditionStatus, RuLakeCluster, RuLakeClusterStatus, CONDITION_PROGRESSING,
    CONDITION_READY,
};
use crate::manifests;
use crate::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::EventType;

/// Drains shard ordinals `desired..current`, highest first, then records,
/// before the StatefulSet shrinks, that placement no longer counts on them
/// (so a later scale-up admits them again). A failed drain is reported in
/// the status and fails the run, so the StatefulSet keeps the node until a
/// retry drains it.
pub(super) async fn scale_down(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    current: i32,
    status: &mut RuLakeClusterStatus,
) -> Result<()> {
    let desired = cluster.spec.shards.replicas;
    for ordinal in (desired..current).rev() {
        let node = manifests::shard_node_id(cluster, ordinal);
        let reply = match admin.drain_shard(&node).await {
            Ok(reply) => reply,
            Err(e) => {
                let message =
                    format!("draining {node} before scaling shards {current} → {desired}: {e}");
                report_drain_failure(cluster, ctx, status, message).await?;
                return Err(e.into());
            }
        };
        let note = format!(
            "drained {node}: {} partitions moved, assignment epoch {}",
            reply.partitions_moved, reply.assignment_epoch
        );
        ctx.event(
            cluster,
            EventType::Normal,
            "ShardDrained",
            "ScaleDown",
            note,
        )
        .await;
    }
    status.shards.admitted = status.shards.admitted.min(desired);
    patch_status(&ctx.client, cluster, status).await
}

/// Says why the scale-down is stuck: an event, Progressing True and Ready
/// False, written at once since the run fails right after.
async fn report_drain_failure(
    cluster: &RuLakeCluster,
    ctx: &Context,
    status: &mut RuLakeClusterStatus,
    message: String,
) -> Result<()> {
    ctx.event(
        cluster,
        EventType::Warning,
        "DrainFailed",
        "ScaleDown",
        message.clone(),
    )
    .await;
    let generation = cluster.metadata.generation;
    for (type_, holds) in [(CONDITION_PROGRESSING, true), (CONDITION_READY, false)] {
        set_condition(
            &mut status.conditions,
            type_,
            ConditionStatus::from_bool(holds),
            "DrainFailed",
            &message,
            generation,
        );
    }
    patch_status(&ctx.client, cluster, status).await
}

/// Admits shard ordinals from `status.shards.admitted` up to the spec's
/// count, in order, each once its pod is Ready. Returns why it stopped
/// short, if it did; a failed admission is reported, not an error, so the
/// status stays current and the next run tries again soon.
pub(super) async fn admit(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    ns: &str,
    status: &mut RuLakeClusterStatus,
) -> Result<Option<Progress>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    while status.shards.admitted < cluster.spec.shards.replicas {
        let node = manifests::shard_node_id(cluster, status.shards.admitted);
        let ready = pods
            .get_opt(&node)
            .await?
            .is_some_and(|pod| pod_ready(&pod));
        if !ready {
            let message = format!("{node} is not Ready yet");
            return Ok(Some(("WaitingForShardReady", message)));
        }
        match admin.admit_shard(&node).await {
            Ok(reply) => {
                let note = format!(
                    "admitted {node}: {} partitions assigned, assignment epoch {}",
                    reply.partitions_assigned, reply.assignment_epoch
                );
                ctx.event(cluster, EventType::Normal, "ShardAdmitted", "ScaleUp", note)
                    .await;
                status.shards.admitted += 1;
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
                ctx.event(
                    cluster,
                    EventType::Warning,
                    "AdmitFailed",
                    "ScaleUp",
                    message.clone(),
                )
                .await;
                return Ok(Some(("AdmitFailed", message)));
            }
        }
    }
    Ok(None)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
