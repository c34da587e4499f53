//! The `RuLakeCluster` reconciler.
//!
//! Most of a cluster is plain server-side apply. The exception is the shard
//! count: a shard node holds cache that placement counts on, so it must
//! leave placement (be drained) before its pod goes and may join it (be
//! admitted) only once its pod serves. A StatefulSet cannot do that by
//! itself, hence the order of one run, each step its own function:
//!
//! 1. `reject_invalid_spec`: a spec no retry can serve (a cache size that
//!    is not a whole number of bytes; no authentication, or contradictory
//!    security settings, in an object stored before the schema's CEL rules
//!    refused them) is reported, and the run stops there until the spec
//!    changes.
//! 2. `shard_size`: read the shard StatefulSet's current size, and
//!    `admin_for`: the admin client with the operator's key.
//! 3. `scale::scale_down`: drain each node being removed through the admin
//!    API, highest ordinal first, and record that placement no longer
//!    counts on them; only then is the StatefulSet shrunk (a StatefulSet
//!    always removes its highest ordinals). A failed drain leaves the
//!    StatefulSet as it was and retries.
//! 4. `tls::issue`: unless the user gives the cluster certificate or turns
//!    mutual TLS off, create the cluster CA and each role's certificate,
//!    and renew what is due (`crate::certs`), before any pod mounts them.
//! 5. Ask the admin API for the ClusterStatus, once: the shard disruption
//!    budget follows the replication factors it reports, and `health`
//!    reads the rest.
//! 6. `children::apply_children`: apply every child object (ConfigMap,
//!    NetworkPolicies, Services, StatefulSets, Deployment,
//!    PodDisruptionBudgets, and the ServiceMonitor when the
//!    prometheus-operator CRD exists). A StatefulSet change the API server
//!    refuses (storage) is reported and the rest still applied.
//! 7. `scale::admit`: scaling up, admit each new node, in ordinal order,
//!    once its pod is Ready; stop at the first that is not.
//! 8. `backup::run_due`: with `spec.backup`, take the backup of a slot
//!    that came since the last one (an admin call), and record it.
//! 9. `health`: fill the status from the workloads and the ClusterStatus,
//!    set the conditions, and write the status.

mod backup;
mod children;
mod health;
mod scale;
#[cfg(test)]
mod tests;
mod tls;

use super::{admin_for, key, namespace, patch_status, report_unservable, requeue_with_backoff};
use super::{Context, Unservable};
use crate::crd::{RuLakeCluster, RuLakeClusterStatus};
use crate::manifests::{self, Role};
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

/// How often a healthy cluster's status is refreshed.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a cluster on its way somewhere is looked at again.
const PROGRESS_POLL: Duration = Duration::from_secs(15);

/// Reconciles one cluster; see the module doc for the steps.
pub async fn reconcile(cluster: Arc<RuLakeCluster>, ctx: Arc<Context>) -> Result<Action> {
    let action = reconcile_inner(&cluster, &ctx).await?;
    ctx.succeeded(&key(cluster.as_ref()));
    Ok(action)
}

/// Requeues a failed cluster with backoff.
pub fn error_policy(cluster: Arc<RuLakeCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_with_backoff(cluster.as_ref(), error, &ctx)
}

async fn reconcile_inner(cluster: &RuLakeCluster, ctx: &Context) -> Result<Action> {
    let ns = namespace(cluster)?;
    let mut status = cluster.status.clone().unwrap_or_default();
    status.observed_generation = cluster.metadata.generation;
    let Some(cache_bytes) = manifests::quantity_bytes(&cluster.spec.shards.cache_memory) else {
        let message = format!(
            "shards.cacheMemory {:?} is not a whole number of bytes",
            cluster.spec.shards.cache_memory.0
        );
        return reject_invalid_spec(cluster, ctx, status, message).await;
    };
    if let Err(message) = cluster.spec.check_security() {
        return reject_invalid_spec(cluster, ctx, status, message).await;
    }

    let desired = cluster.spec.shards.replicas;
    let current = shard_size(cluster, ctx, &ns).await?;
    let admin = admin_for(ctx, cluster).await?;
    // Nodes beyond the StatefulSet's size are not in placement any more.
    status.shards.admitted = status.shards.admitted.clamp(0, current.unwrap_or(0));
    if let Some(current) = current.filter(|&c| c > desired) {
        scale::scale_down(cluster, ctx, admin.as_ref(), current, &mut status).await?;
    }

    tls::issue(cluster, ctx, &ns, Timestamp::now()).await?;
    let cluster_status = admin.cluster_status().await;
    let replication = cluster_status
        .as_ref()
        .ok()
        .and_then(health::min_replication);
    let children = children::apply_children(cluster, ctx, &ns, cache_bytes, replication).await?;
    children.record(cluster, &mut status);
    let waiting = scale::admit(cluster, ctx, admin.as_ref(), &ns, &mut status).await?;
    let next_backup =
        backup::run_due(cluster, ctx, admin.as_ref(), &mut status, Timestamp::now()).await;

    let observed = health::observe(cluster, cluster_status, &mut status, waiting, children);
    let ready = health::set_conditions(&mut status, &observed, cluster.metadata.generation);
    patch_status(&ctx.client, cluster, &status).await?;
    // A refused change waits for the spec to change (which requeues at
    // once) rather than being retried every few seconds.
    let settled = ready || observed.refused();
    let poll = if settled { RESYNC } else { PROGRESS_POLL };
    Ok(Action::requeue(next_backup.map_or(poll, |b| b.min(poll))))
}

/// Reports what no retry can serve (a cache size that is not a whole
/// number of bytes, which the schema cannot check; security settings the
/// schema's CEL rules would refuse today) and waits for the spec to change.
async fn reject_invalid_spec(
    cluster: &RuLakeCluster,
    ctx: &Context,
    status: RuLakeClusterStatus,
    message: String,
) -> Result<Action> {
    let why = Unservable {
        reason: "InvalidSpec",
        action: "Validate",
        message,
        degraded: true,
    };
    report_unservable(ctx, cluster, status, why).await
}

/// The shard StatefulSet's current size: `None` before it exists.
async fn shard_size(cluster: &RuLakeCluster, ctx: &Context, ns: &str) -> Result<Option<i32>> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    Ok(statefulsets
        .get_opt(&manifests::role_name(cluster, Role::Shard))
        .await?
        .and_then(|s| s.spec)
        .and_then(|s| s.replicas))
}
