//! Applying a cluster's child objects. The order is fixed so that what a
//! workload reads exists before it starts: the ConfigMap every role takes
//! its environment from, the NetworkPolicies (so no pod ever serves an
//! internal port unguarded), then each role's Service (its pods' DNS
//! names) before its workload, then that role's PodDisruptionBudget.
//!
//! A StatefulSet the API server refuses (422 Invalid: its volume claim
//! templates cannot change, so a storage edit the schema's CEL rule did
//! not stop, e.g. in an object stored before the rule) does not stop the
//! run: the refusal is a Warning event and a condition (`refused`), the
//! StatefulSet keeps running as it is, and every other object is still
//! applied, so one stuck field does not freeze the whole cluster.

use super::super::{apply, Context};
use super::health::Progress;
use crate::crd::{RuLakeCluster, RuLakeClusterStatus};
use crate::manifests::{self, Role};
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::EventType;
use kube::ResourceExt;

/// The workloads as the API server returned them from the apply, with the
/// replica counts they report.
pub(super) struct Children {
    meta: StatefulSet,
    shards: StatefulSet,
    coordinators: Deployment,
    /// Whether the prometheus-operator CRD was missing although asked for.
    pub service_monitor_skipped: bool,
    /// StatefulSets the API server refused to change, and why.
    pub refused: Vec<Progress>,
}

impl Children {
    /// Copies the workloads' replica counts into `status`. Counts are what
    /// the workloads report, not what the spec asks: the scale subresource
    /// reads `shards.replicas` as the current size.
    pub fn record(&self, cluster: &RuLakeCluster, status: &mut RuLakeClusterStatus) {
        let counts = |sts: &StatefulSet| {
            sts.status
                .as_ref()
                .map_or((0, 0), |s| (s.replicas, s.ready_replicas.unwrap_or(0)))
        };
        (status.meta.replicas, status.meta.ready) = counts(&self.meta);
        (status.shards.replicas, status.shards.ready) = counts(&self.shards);
        status.shards.selector = manifests::selector_string(cluster, Role::Shard);
        (status.coordinators.replicas, status.coordinators.ready) =
            self.coordinators.status.as_ref().map_or((0, 0), |s| {
                (s.replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0))
            });
    }
}

/// Applies every child object, the shard StatefulSet at the spec's size
/// (any drain it needs has happened by now) and the shard budget after
/// `replication`, the smallest replication factor of the cluster's
/// collections when the cluster reported it.
pub(super) async fn apply_children(
    cluster: &RuLakeCluster,
    ctx: &Context,
    ns: &str,
    cache_bytes: u64,
    replication: Option<u32>,
) -> Result<Children> {
    let client = &ctx.client;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let role_pdb = |role| manifests::pod_disruption_budget(cluster, role, replication);
    let mut refused = Vec::new();

    let config = manifests::config_map(cluster);
    apply(&config_maps, &manifests::config_name(cluster), &config).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    for policy in manifests::network_policies(cluster) {
        apply(&policies, &policy.name_any(), &policy).await?;
    }

    let meta_name = manifests::role_name(cluster, Role::Meta);
    apply(&services, &meta_name, &manifests::meta_service(cluster)).await?;
    let meta_sts = manifests::meta_statefulset(cluster);
    let meta = apply_statefulset(cluster, ctx, &statefulsets, &meta_sts, &mut refused).await?;
    apply(&pdbs, &meta_name, &role_pdb(Role::Meta)).await?;

    let shard_name = manifests::role_name(cluster, Role::Shard);
    let replicas = cluster.spec.shards.replicas;
    apply(&services, &shard_name, &manifests::shard_service(cluster)).await?;
    let shard_sts = manifests::shard_statefulset(cluster, replicas, cache_bytes);
    let shards = apply_statefulset(cluster, ctx, &statefulsets, &shard_sts, &mut refused).await?;
    apply(&pdbs, &shard_name, &role_pdb(Role::Shard)).await?;

    let coordinator_name = manifests::role_name(cluster, Role::Coordinator);
    let deployment = manifests::coordinator_deployment(cluster);
    let coordinators = apply(&deployments, &coordinator_name, &deployment).await?;
    apply(&pdbs, &coordinator_name, &role_pdb(Role::Coordinator)).await?;
    let client_service = manifests::client_service(cluster);
    apply(&services, &cluster.name_any(), &client_service).await?;

    let service_monitor_skipped =
        cluster.spec.monitoring.service_monitor && !apply_service_monitor(cluster, ctx, ns).await?;
    Ok(Children {
        meta,
        shards,
        coordinators,
        service_monitor_skipped,
        refused,
    })
}

/// Applies `desired`; when the API server refuses it as invalid, reports
/// the refusal (a Warning event, and an entry in `refused` for the
/// conditions) and returns the StatefulSet as it stands instead.
async fn apply_statefulset(
    cluster: &RuLakeCluster,
    ctx: &Context,
    api: &Api<StatefulSet>,
    desired: &StatefulSet,
    refused: &mut Vec<Progress>,
) -> Result<StatefulSet> {
    let name = desired.name_any();
    let status = match apply(api, &name, desired).await {
        Err(Error::Kube(kube::Error::Api(status))) if status.is_invalid() => status,
        other => return other,
    };
    let current = api.get_opt(&name).await?.unwrap_or_default();
    let reason = if claims(&current) != claims(desired) {
        "StorageChangeRefused"
    } else {
        "StatefulSetRefused"
    };
    let message = format!(
        "the API server refused the change to StatefulSet {name}: {}; it keeps running as it \
         is. Volume claim templates cannot change: set the storage back to what the \
         StatefulSet has, or see docs/operations.md to grow volumes in place",
        status.message
    );
    ctx.event(
        cluster,
        EventType::Warning,
        reason,
        "ApplyStatefulSet",
        message.clone(),
    )
    .await;
    refused.push((reason, message));
    Ok(current)
}

/// What a StatefulSet's volume claim templates ask for: per claim, its
/// name, size and storage class.
fn claims(sts: &StatefulSet) -> Vec<(Option<String>, Option<String>, Option<String>)> {
    let templates = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref());
    templates
        .into_iter()
        .flatten()
        .map(|claim| {
            let spec = claim.spec.as_ref();
            let size = spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone());
            let class = spec.and_then(|s| s.storage_class_name.clone());
            (claim.metadata.name.clone(), size, class)
        })
        .collect()
}

/// Applies the ServiceMonitor; returns whether the prometheus-operator CRD
/// is installed. Without it the API server answers the apply with 404
/// (no such resource), which is a condition, not a failure. Asking
/// instead of reading the CRD first needs no cluster-wide permission, so
/// the operator runs the same with a namespaced Role.
async fn apply_service_monitor(cluster: &RuLakeCluster, ctx: &Context, ns: &str) -> Result<bool> {
    let resource = manifests::service_monitor_resource();
    let monitors: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let monitor = manifests::service_monitor(cluster);
    match apply(&monitors, &cluster.name_any(), &monitor).await {
        Ok(_) => Ok(true),
        Err(Error::Kube(kube::Error::Api(status))) if status.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
