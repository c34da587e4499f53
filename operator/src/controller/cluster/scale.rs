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
use crate::scale::{self, ScaleEvent};
use crate::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::EventType;

/// Drains shard ordinals `desired..current`, highest first
/// ([`crate::scale::drain_before_shrink`]), then records, before the
/// StatefulSet shrinks, that placement no longer counts on them (so a
/// later scale-up admits them again). A failed drain is reported in the
/// status and fails the run, so the StatefulSet keeps the node until a
/// retry drains it.
pub(super) async fn scale_down(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    current: i32,
    status: &mut RuLakeClusterStatus,
) -> Result<()> {
    let desired = cluster.spec.shards.replicas;
    let mut events = publish(cluster, ctx);
    if let Err(failed) =
        scale::drain_before_shrink(cluster, admin, current, desired, &mut events).await
    {
        report_drain_failure(cluster, ctx, status, failed.message).await?;
        return Err(failed.error.into());
    }
    status.shards.admitted = status.shards.admitted.min(desired);
    patch_status(&ctx.client, cluster, status).await
}

/// The scale steps' events, published on the cluster.
fn publish<'a>(
    cluster: &'a RuLakeCluster,
    ctx: &'a Context,
) -> impl FnMut(ScaleEvent) -> BoxFuture<'a, ()> + Send + 'a {
    move |e: ScaleEvent| {
        let type_ = if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        Box::pin(ctx.event(cluster, type_, e.reason, e.action, e.note))
    }
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
/// count, in order, each once its pod is Ready
/// ([`crate::scale::admit_ready`]). Returns why it stopped short, if it
/// did; a failed admission is reported, not an error, so the status stays
/// current and the next run tries again soon.
pub(super) async fn admit(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    ns: &str,
    status: &mut RuLakeClusterStatus,
) -> Result<Option<Progress>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut ready = move |node: String| -> BoxFuture<'static, Result<bool>> {
        let pods = pods.clone();
        Box::pin(async move {
            Ok(pods
                .get_opt(&node)
                .await?
                .is_some_and(|pod| pod_ready(&pod)))
        })
    };
    let mut events = publish(cluster, ctx);
    scale::admit_ready(
        cluster,
        admin,
        &mut status.shards.admitted,
        cluster.spec.shards.replicas,
        &mut ready,
        &mut events,
    )
    .await
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
