//! The `RuLakeCluster` reconciler.
//!
//! Order of one run:
//! 1. Read the shard StatefulSet's current size.
//! 2. Scaling down: drain each node being removed through the admin API,
//!    highest ordinal first, and record that placement no longer counts on
//!    them; only then is the StatefulSet shrunk (a StatefulSet always
//!    removes its highest ordinals). A failed drain leaves the StatefulSet
//!    as it was and retries.
//! 3. Apply every child object (ConfigMap, Services, StatefulSets,
//!    Deployment, PodDisruptionBudgets, and the ServiceMonitor when the
//!    prometheus-operator CRD exists).
//! 4. Scaling up: admit each new node, in ordinal order, once its pod is
//!    Ready; stop at the first that is not.
//! 5. Fill the status from the workloads and the admin API's
//!    ClusterStatus, and write it by server-side apply.

use super::{apply, key, requeue_with_backoff, Context};
use crate::admin::ClusterAdmin;
use crate::crd::{
    set_condition, ConditionStatus, RuLakeCluster, RuLakeClusterStatus, CONDITION_DEGRADED,
    CONDITION_PROGRESSING, CONDITION_READY,
};
use crate::manifests::{self, Role, FIELD_MANAGER, SERVICE_MONITOR_CRD};
use crate::{Error, Result};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
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

/// What the reconcile learned, for the conditions.
struct Observed {
    /// Why the cluster is not yet where its spec says, if it is not.
    progressing: Option<(&'static str, String)>,
    /// The admin API's failure, if it failed.
    admin_error: Option<String>,
    /// Shard nodes the admin API reports as not live.
    dead_shards: Vec<String>,
    /// Whether the prometheus-operator CRD was missing although asked for.
    service_monitor_skipped: bool,
}

async fn reconcile_inner(cluster: &RuLakeCluster, ctx: &Context) -> Result<Action> {
    let ns = cluster
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cluster.name_any();
    let generation = cluster.metadata.generation;
    let client = ctx.client.clone();
    let mut status = cluster.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    let Some(cache_bytes) = manifests::quantity_bytes(&cluster.spec.shards.cache_memory) else {
        let message = format!(
            "shards.cacheMemory {:?} is not a whole number of bytes",
            cluster.spec.shards.cache_memory.0
        );
        ctx.event(
            cluster,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            message.clone(),
        )
        .await;
        for type_ in [CONDITION_READY, CONDITION_PROGRESSING] {
            set_condition(
                &mut status.conditions,
                type_,
                ConditionStatus::False,
                "InvalidSpec",
                &message,
                generation,
            );
        }
        set_condition(
            &mut status.conditions,
            CONDITION_DEGRADED,
            ConditionStatus::True,
            "InvalidSpec",
            &message,
            generation,
        );
        patch_status(cluster, &ns, &status, ctx).await?;
        return Ok(Action::await_change());
    };

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let shard_name = manifests::role_name(cluster, Role::Shard);
    let current = statefulsets
        .get_opt(&shard_name)
        .await?
        .and_then(|s| s.spec)
        .and_then(|s| s.replicas);
    let desired = cluster.spec.shards.replicas;
    let admin = ctx.admins.admin(cluster)?;
    let mut observed = Observed {
        progressing: None,
        admin_error: None,
        dead_shards: Vec::new(),
        service_monitor_skipped: false,
    };
    // Nodes beyond the StatefulSet's size are not in placement any more.
    status.shards.admitted = status.shards.admitted.clamp(0, current.unwrap_or(0));

    if let Some(current) = current.filter(|&c| c > desired) {
        drain(cluster, ctx, admin.as_ref(), desired, current, &mut status).await?;
        // Placement no longer counts on the drained nodes: say so before
        // they go, so a later scale-up admits them again.
        status.shards.admitted = status.shards.admitted.min(desired);
        patch_status(cluster, &ns, &status, ctx).await?;
    }

    // Child objects, each applied by server-side apply.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    apply(
        &config_maps,
        &manifests::config_name(cluster),
        &manifests::config_map(cluster),
    )
    .await?;
    let meta_name = manifests::role_name(cluster, Role::Meta);
    apply(&services, &meta_name, &manifests::meta_service(cluster)).await?;
    let meta_sts = apply(
        &statefulsets,
        &meta_name,
        &manifests::meta_statefulset(cluster),
    )
    .await?;
    apply(
        &pdbs,
        &meta_name,
        &manifests::pod_disruption_budget(cluster, Role::Meta),
    )
    .await?;
    apply(&services, &shard_name, &manifests::shard_service(cluster)).await?;
    let shard_sts = apply(
        &statefulsets,
        &shard_name,
        &manifests::shard_statefulset(cluster, desired, cache_bytes),
    )
    .await?;
    apply(
        &pdbs,
        &shard_name,
        &manifests::pod_disruption_budget(cluster, Role::Shard),
    )
    .await?;
    let coordinator_name = manifests::role_name(cluster, Role::Coordinator);
    let coordinators = apply(
        &deployments,
        &coordinator_name,
        &manifests::coordinator_deployment(cluster),
    )
    .await?;
    apply(&services, &name, &manifests::client_service(cluster)).await?;
    if cluster.spec.monitoring.service_monitor {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt(SERVICE_MONITOR_CRD).await?.is_some() {
            let resource = manifests::service_monitor_resource();
            let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            monitors
                .patch(
                    &name,
                    &params,
                    &Patch::Apply(&manifests::service_monitor(cluster)),
                )
                .await?;
        } else {
            observed.service_monitor_skipped = true;
        }
    }

    // Counts are what the workloads report, not what the spec asks: the
    // scale subresource reads `shards.replicas` as the current size.
    let counts = |sts: &StatefulSet| {
        sts.status
            .as_ref()
            .map_or((0, 0), |s| (s.replicas, s.ready_replicas.unwrap_or(0)))
    };
    (status.meta.replicas, status.meta.ready) = counts(&meta_sts);
    (status.shards.replicas, status.shards.ready) = counts(&shard_sts);
    status.shards.selector = manifests::selector_string(cluster, Role::Shard);
    (status.coordinators.replicas, status.coordinators.ready) =
        coordinators.status.as_ref().map_or((0, 0), |s| {
            (s.replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0))
        });

    admit(
        cluster,
        ctx,
        admin.as_ref(),
        desired,
        &ns,
        &mut status,
        &mut observed,
    )
    .await?;

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
        let lagging = [
            ("meta", status.meta.ready, cluster.spec.meta.replicas),
            ("shard", status.shards.ready, desired),
            (
                "coordinator",
                status.coordinators.ready,
                cluster.spec.coordinators.replicas,
            ),
        ]
        .into_iter()
        .filter(|(_, ready, want)| ready < want)
        .map(|(role, ready, want)| format!("{role} {ready}/{want} ready"))
        .collect::<Vec<_>>();
        if !lagging.is_empty() {
            observed.progressing = Some(("WaitingForPods", lagging.join(", ")));
        }
    }
    let ready_now = set_conditions(&mut status, &observed, generation);
    patch_status(cluster, &ns, &status, ctx).await?;
    Ok(Action::requeue(if ready_now {
        RESYNC
    } else {
        PROGRESS_POLL
    }))
}

/// Drains shard ordinals `desired..current`, highest first.
async fn drain(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    desired: i32,
    current: i32,
    status: &mut RuLakeClusterStatus,
) -> Result<()> {
    for ordinal in (desired..current).rev() {
        let node = manifests::shard_node_id(cluster, ordinal);
        match admin.drain_shard(&node).await {
            Ok(reply) => {
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
            Err(e) => {
                let message =
                    format!("draining {node} before scaling shards {current} → {desired}: {e}");
                ctx.event(
                    cluster,
                    EventType::Warning,
                    "DrainFailed",
                    "ScaleDown",
                    message.clone(),
                )
                .await;
                let generation = cluster.metadata.generation;
                set_condition(
                    &mut status.conditions,
                    CONDITION_PROGRESSING,
                    ConditionStatus::True,
                    "DrainFailed",
                    &message,
                    generation,
                );
                set_condition(
                    &mut status.conditions,
                    CONDITION_READY,
                    ConditionStatus::False,
                    "DrainFailed",
                    &message,
                    generation,
                );
                let ns = cluster
                    .namespace()
                    .ok_or(Error::MissingField("metadata.namespace"))?;
                patch_status(cluster, &ns, status, ctx).await?;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Admits shard ordinals from `status.shards.admitted` up to `desired`, in
/// order, each once its pod is Ready.
async fn admit(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    desired: i32,
    ns: &str,
    status: &mut RuLakeClusterStatus,
    observed: &mut Observed,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    while status.shards.admitted < desired {
        let node = manifests::shard_node_id(cluster, status.shards.admitted);
        let ready = pods
            .get_opt(&node)
            .await?
            .is_some_and(|pod| pod_ready(&pod));
        if !ready {
            observed.progressing =
                Some(("WaitingForShardReady", format!("{node} is not Ready yet")));
            return Ok(());
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
                observed.progressing =
                    Some(("WaitingForShardRegistration", format!("{node}: {e}")));
                return Ok(());
            }
            // Anything else: say so, keep the status current, and look
            // again soon rather than failing the whole reconcile.
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
                observed.progressing = Some(("AdmitFailed", message));
                return Ok(());
            }
        }
    }
    Ok(())
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Sets Ready, Progressing and Degraded; returns whether Ready is True.
fn set_conditions(
    status: &mut RuLakeClusterStatus,
    observed: &Observed,
    generation: Option<i64>,
) -> bool {
    let degraded: Option<(&str, String)> = if let Some(e) = &observed.admin_error {
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
    };
    let conditions = &mut status.conditions;
    match &observed.progressing {
        Some((reason, message)) => set_condition(
            conditions,
            CONDITION_PROGRESSING,
            ConditionStatus::True,
            reason,
            message,
            generation,
        ),
        None => set_condition(
            conditions,
            CONDITION_PROGRESSING,
            ConditionStatus::False,
            "Reconciled",
            "every role runs its desired replicas and every shard is in placement",
            generation,
        ),
    }
    // A skipped ServiceMonitor degrades monitoring, not serving.
    let serving_degraded = degraded
        .as_ref()
        .is_some_and(|(r, _)| *r != "ServiceMonitorUnavailable");
    match &degraded {
        Some((reason, message)) => set_condition(
            conditions,
            CONDITION_DEGRADED,
            ConditionStatus::True,
            reason,
            message,
            generation,
        ),
        None => set_condition(
            conditions,
            CONDITION_DEGRADED,
            ConditionStatus::False,
            "AsExpected",
            "",
            generation,
        ),
    }
    let ready = observed.progressing.is_none() && !serving_degraded;
    let (reason, message) = if ready {
        (
            "Serving",
            "all roles ready, catalog has a leader, all shards live".to_string(),
        )
    } else if let Some((reason, message)) = &observed.progressing {
        (*reason, message.clone())
    } else if let Some((reason, message)) = &degraded {
        (*reason, message.clone())
    } else {
        ("Unknown", String::new())
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

/// Writes the status subresource by server-side apply.
async fn patch_status(
    cluster: &RuLakeCluster,
    ns: &str,
    status: &RuLakeClusterStatus,
    ctx: &Context,
) -> Result<()> {
    let api: Api<RuLakeCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": "rulake.io/v1alpha1",
        "kind": "RuLakeCluster",
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&cluster.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cluster, condition, test_context, FakeAdmin, MockApi};
    use http::Method;
    use rulake_proto::v1 as pb;
    use serde_json::json;

    const NS: &str = "/api/v1/namespaces/default";
    const APPS: &str = "/apis/apps/v1/namespaces/default";
    const POLICY: &str = "/apis/policy/v1/namespaces/default";
    const STATUS: &str = "/apis/rulake.io/v1alpha1/namespaces/default/rulakeclusters/demo/status";

    /// A healthy cluster as the admin API reports it.
    fn healthy(shards: usize) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            leader_id: 2,
            assignment_epoch: 7,
            shards: (0..shards)
                .map(|i| pb::ShardNode {
                    id: format!("demo-shard-{i}"),
                    live: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Answers the shard StatefulSet lookup: absent, or of `replicas`.
    async fn shard_lookup(api: &mut MockApi, replicas: Option<i32>) {
        let call = api
            .expect(Method::GET, &format!("{APPS}/statefulsets/demo-shard"))
            .await;
        match replicas {
            None => call.not_found(),
            Some(n) => call.respond(json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": { "name": "demo-shard", "namespace": "default" },
                "spec": { "replicas": n, "serviceName": "demo-shard", "selector": {},
                          "template": {} },
            })),
        }
    }

    /// Expects one server-side apply of `path` and answers it with the
    /// object plus `ready` ready replicas; returns the applied body.
    async fn expect_apply(api: &mut MockApi, path: &str, ready: Option<i32>) -> serde_json::Value {
        let call = api.expect(Method::PATCH, path).await;
        assert!(
            call.query.contains("fieldManager=rulake-operator"),
            "field manager in {}",
            call.query
        );
        assert!(call.query.contains("force=true"), "force in {}", call.query);
        let body = call.body.clone();
        let owner = &body["metadata"]["ownerReferences"][0];
        assert_eq!(
            owner["kind"], "RuLakeCluster",
            "controller owner reference on {path}"
        );
        assert_eq!(owner["controller"], true);
        let mut reply = body.clone();
        if let Some(ready) = ready {
            reply["status"] = json!({ "readyReplicas": ready, "replicas": ready });
        }
        call.respond(reply);
        body
    }

    /// Expects every child object in order, as a cluster without a
    /// ServiceMonitor has them; returns the shard StatefulSet applied.
    async fn expect_children(api: &mut MockApi, ready: [i32; 3]) -> serde_json::Value {
        let [meta, shards, coordinators] = ready;
        expect_apply(api, &format!("{NS}/configmaps/demo-config"), None).await;
        expect_apply(api, &format!("{NS}/services/demo-meta"), None).await;
        let meta_sts =
            expect_apply(api, &format!("{APPS}/statefulsets/demo-meta"), Some(meta)).await;
        assert_eq!(meta_sts["spec"]["replicas"], 3);
        assert_eq!(meta_sts["spec"]["podManagementPolicy"], "Parallel");
        expect_apply(
            api,
            &format!("{POLICY}/poddisruptionbudgets/demo-meta"),
            None,
        )
        .await;
        let shard_svc = expect_apply(api, &format!("{NS}/services/demo-shard"), None).await;
        assert_eq!(shard_svc["spec"]["clusterIP"], "None");
        assert_eq!(shard_svc["spec"]["publishNotReadyAddresses"], true);
        let shard_sts = expect_apply(
            api,
            &format!("{APPS}/statefulsets/demo-shard"),
            Some(shards),
        )
        .await;
        expect_apply(
            api,
            &format!("{POLICY}/poddisruptionbudgets/demo-shard"),
            None,
        )
        .await;
        expect_apply(
            api,
            &format!("{APPS}/deployments/demo-coordinator"),
            Some(coordinators),
        )
        .await;
        expect_apply(api, &format!("{NS}/services/demo"), None).await;
        shard_sts
    }

    fn pod(name: &str, ready: bool) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default" },
            "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] },
        })
    }

    #[tokio::test]
    async fn new_cluster_gets_exactly_its_objects() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, None).await;
            let shard_sts = expect_children(&mut api, [0, 0, 0]).await;
            assert_eq!(shard_sts["spec"]["replicas"], 3);
            let args = shard_sts["spec"]["template"]["spec"]["containers"][0]["args"].clone();
            assert_eq!(args[0], "shard");
            assert!(
                args.as_array().unwrap().contains(&json!("1073741824")),
                "cache bytes in {args}"
            );
            assert!(
                args.as_array().unwrap().contains(&json!("$(POD_NAME)")),
                "node id in {args}"
            );
            // No pod of ordinal 0 yet: nothing to admit.
            api.expect(Method::GET, &format!("{NS}/pods/demo-shard-0"))
                .await
                .not_found();
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(
                condition(&status.body, "Ready"),
                ("False".into(), "WaitingForShardReady".into())
            );
            assert_eq!(
                condition(&status.body, "Progressing"),
                ("True".into(), "WaitingForShardReady".into())
            );
            assert_eq!(
                condition(&status.body, "Degraded"),
                ("True".into(), "AdminUnavailable".into())
            );
            assert_eq!(status.body["status"]["shards"]["admitted"], 0);
            assert_eq!(status.body["status"]["observedGeneration"], 2);
            assert_eq!(
                status.body["status"]["shards"]["selector"],
                "app.kubernetes.io/component=shard,app.kubernetes.io/instance=demo,app.kubernetes.io/name=rulake"
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let action = reconcile(Arc::new(cluster(3)), ctx)
            .await
            .expect("reconcile");
        assert_eq!(action, Action::requeue(PROGRESS_POLL));
        server.await.unwrap().done().await;
        assert_eq!(
            fake.calls(),
            ["status"],
            "no drain or admit for a new cluster"
        );
    }

    #[tokio::test]
    async fn service_monitor_only_when_its_crd_exists() {
        for installed in [false, true] {
            let fake = Arc::new(FakeAdmin::default());
            *fake.status.lock().unwrap() = Some(healthy(3));
            let (ctx, mut api) = test_context(fake.clone());
            let mut c = cluster(3);
            c.spec.monitoring.service_monitor = true;
            c.spec
                .monitoring
                .service_monitor_labels
                .insert("release".into(), "prometheus".into());
            c.status = Some(RuLakeClusterStatus::default());
            c.status.as_mut().unwrap().shards.admitted = 3;
            let server = tokio::spawn(async move {
                shard_lookup(&mut api, Some(3)).await;
                expect_children(&mut api, [3, 3, 2]).await;
                let crd = api
                    .expect(
                        Method::GET,
                        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com",
                    )
                    .await;
                if installed {
                    crd.respond(json!({
                        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                        "metadata": { "name": "servicemonitors.monitoring.coreos.com" },
                        "spec": { "group": "monitoring.coreos.com", "scope": "Namespaced",
                                  "names": { "kind": "ServiceMonitor", "plural": "servicemonitors" },
                                  "versions": [] },
                    }));
                    let sm = expect_apply(
                        &mut api,
                        "/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/demo",
                        None,
                    )
                    .await;
                    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
                    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
                } else {
                    crd.not_found();
                }
                let status = api.expect(Method::PATCH, STATUS).await;
                let degraded = if installed {
                    ("False", "AsExpected")
                } else {
                    ("True", "ServiceMonitorUnavailable")
                };
                assert_eq!(
                    condition(&status.body, "Degraded"),
                    (degraded.0.into(), degraded.1.into())
                );
                assert_eq!(
                    condition(&status.body, "Ready"),
                    ("True".into(), "Serving".into())
                );
                status.respond(serde_json::to_value(cluster(3)).unwrap());
                api
            });
            reconcile(Arc::new(c), ctx).await.expect("reconcile");
            server.await.unwrap().done().await;
        }
    }

    #[tokio::test]
    async fn scale_down_drains_highest_ordinals_then_shrinks() {
        let fake = Arc::new(FakeAdmin::default());
        *fake.status.lock().unwrap() = Some(healthy(3));
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = cluster(3);
        c.status = Some(RuLakeClusterStatus::default());
        c.status.as_mut().unwrap().shards.admitted = 5;
        let seen = fake.clone();
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, Some(5)).await;
            assert_eq!(api.expect_event("default").await, "ShardDrained");
            assert_eq!(api.expect_event("default").await, "ShardDrained");
            // Placement's view is recorded before the StatefulSet shrinks.
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(status.body["status"]["shards"]["admitted"], 3);
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            assert_eq!(seen.calls(), ["drain demo-shard-4", "drain demo-shard-3"]);
            let shard_sts = expect_children(&mut api, [3, 3, 2]).await;
            assert_eq!(
                shard_sts["spec"]["replicas"], 3,
                "shrunk only after both drains"
            );
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(
                condition(&status.body, "Ready"),
                ("True".into(), "Serving".into())
            );
            assert_eq!(status.body["status"]["metaLeader"], 2);
            assert_eq!(status.body["status"]["assignmentEpoch"], 7);
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let action = reconcile(Arc::new(c), ctx).await.expect("reconcile");
        assert_eq!(action, Action::requeue(RESYNC));
        server.await.unwrap().done().await;
        assert_eq!(
            fake.calls(),
            ["drain demo-shard-4", "drain demo-shard-3", "status"]
        );
    }

    #[tokio::test]
    async fn failed_drain_keeps_the_statefulset_and_requeues() {
        let fake = Arc::new(FakeAdmin::default());
        fake.failing_drains
            .lock()
            .unwrap()
            .insert("demo-shard-3".into());
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = cluster(3);
        c.status = Some(RuLakeClusterStatus::default());
        c.status.as_mut().unwrap().shards.admitted = 5;
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, Some(5)).await;
            assert_eq!(api.expect_event("default").await, "ShardDrained");
            assert_eq!(api.expect_event("default").await, "DrainFailed");
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(
                condition(&status.body, "Progressing"),
                ("True".into(), "DrainFailed".into())
            );
            assert_eq!(
                condition(&status.body, "Ready"),
                ("False".into(), "DrainFailed".into())
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let c = Arc::new(c);
        let error = reconcile(c.clone(), ctx.clone())
            .await
            .expect_err("a failed drain fails the reconcile");
        assert!(matches!(error, Error::Admin(_)), "{error}");
        // No StatefulSet patch: the mock would have seen it.
        let first = error_policy(c.clone(), &error, ctx.clone());
        let second = error_policy(c.clone(), &error, ctx.clone());
        assert_eq!(first, Action::requeue(Duration::from_secs(5)));
        assert_eq!(
            second,
            Action::requeue(Duration::from_secs(10)),
            "backoff doubles"
        );
        drop(ctx);
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["drain demo-shard-4", "drain demo-shard-3"]);
    }

    #[tokio::test]
    async fn scale_up_admits_each_new_shard_only_once_ready() {
        let fake = Arc::new(FakeAdmin::default());
        *fake.status.lock().unwrap() = Some(healthy(5));
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = cluster(5);
        c.status = Some(RuLakeClusterStatus::default());
        c.status.as_mut().unwrap().shards.admitted = 3;
        let seen = fake.clone();
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, Some(3)).await;
            let shard_sts = expect_children(&mut api, [3, 3, 2]).await;
            assert_eq!(shard_sts["spec"]["replicas"], 5, "grown first");
            assert!(
                seen.calls().is_empty(),
                "nothing admitted before the StatefulSet grew"
            );
            api.expect(Method::GET, &format!("{NS}/pods/demo-shard-3"))
                .await
                .respond(pod("demo-shard-3", true));
            assert_eq!(api.expect_event("default").await, "ShardAdmitted");
            api.expect(Method::GET, &format!("{NS}/pods/demo-shard-4"))
                .await
                .respond(pod("demo-shard-4", false));
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(status.body["status"]["shards"]["admitted"], 4);
            // The scale subresource's current size: pods that exist, not the spec.
            assert_eq!(status.body["status"]["shards"]["replicas"], 3);
            assert_eq!(
                condition(&status.body, "Progressing"),
                ("True".into(), "WaitingForShardReady".into())
            );
            assert_eq!(
                condition(&status.body, "Ready"),
                ("False".into(), "WaitingForShardReady".into())
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        reconcile(Arc::new(c), ctx).await.expect("reconcile");
        server.await.unwrap().done().await;
        assert_eq!(
            fake.calls(),
            ["admit demo-shard-3", "status"],
            "demo-shard-4 is not Ready"
        );
    }

    #[tokio::test]
    async fn failed_admission_is_reported_and_retried_soon() {
        for (code, reason) in [
            (tonic::Code::NotFound, "WaitingForShardRegistration"),
            (tonic::Code::Unavailable, "AdmitFailed"),
        ] {
            let fake = Arc::new(FakeAdmin::default());
            *fake.status.lock().unwrap() = Some(healthy(4));
            fake.failing_admits
                .lock()
                .unwrap()
                .insert("demo-shard-3".into(), code);
            let (ctx, mut api) = test_context(fake.clone());
            let mut c = cluster(4);
            c.status = Some(RuLakeClusterStatus::default());
            c.status.as_mut().unwrap().shards.admitted = 3;
            let server = tokio::spawn(async move {
                shard_lookup(&mut api, Some(4)).await;
                expect_children(&mut api, [3, 4, 2]).await;
                api.expect(Method::GET, &format!("{NS}/pods/demo-shard-3"))
                    .await
                    .respond(pod("demo-shard-3", true));
                if code != tonic::Code::NotFound {
                    assert_eq!(api.expect_event("default").await, "AdmitFailed");
                }
                let status = api.expect(Method::PATCH, STATUS).await;
                assert_eq!(status.body["status"]["shards"]["admitted"], 3);
                assert_eq!(
                    condition(&status.body, "Progressing"),
                    ("True".into(), reason.into())
                );
                status.respond(serde_json::to_value(cluster(3)).unwrap());
                api
            });
            let action = reconcile(Arc::new(c), ctx)
                .await
                .expect("reported, not failed");
            assert_eq!(action, Action::requeue(PROGRESS_POLL));
            server.await.unwrap().done().await;
            assert_eq!(fake.calls(), ["admit demo-shard-3", "status"]);
        }
    }

    #[tokio::test]
    async fn conditions_follow_the_cluster_state() {
        // (admin status, ready pods) → (Ready, Degraded) conditions.
        let dead = {
            let mut s = healthy(3);
            s.shards[1].live = false;
            s
        };
        let leaderless = pb::ClusterStatusResponse {
            leader_id: 0,
            ..healthy(3)
        };
        let cases = [
            (
                Some(healthy(3)),
                [3, 3, 2],
                ("True", "Serving"),
                ("False", "AsExpected"),
            ),
            (
                Some(dead),
                [3, 3, 2],
                ("False", "ShardsDown"),
                ("True", "ShardsDown"),
            ),
            (
                Some(leaderless),
                [3, 3, 2],
                ("False", "NoMetaLeader"),
                ("True", "NoMetaLeader"),
            ),
            (
                Some(healthy(3)),
                [2, 3, 2],
                ("False", "WaitingForPods"),
                ("False", "AsExpected"),
            ),
        ];
        for (admin_status, ready, want_ready, want_degraded) in cases {
            let fake = Arc::new(FakeAdmin::default());
            *fake.status.lock().unwrap() = admin_status;
            let (ctx, mut api) = test_context(fake);
            let mut c = cluster(3);
            c.status = Some(RuLakeClusterStatus::default());
            c.status.as_mut().unwrap().shards.admitted = 3;
            let server = tokio::spawn(async move {
                shard_lookup(&mut api, Some(3)).await;
                expect_children(&mut api, ready).await;
                let status = api.expect(Method::PATCH, STATUS).await;
                assert_eq!(
                    condition(&status.body, "Ready"),
                    (want_ready.0.into(), want_ready.1.into())
                );
                assert_eq!(
                    condition(&status.body, "Degraded"),
                    (want_degraded.0.into(), want_degraded.1.into())
                );
                assert_eq!(status.body["status"]["meta"]["ready"], ready[0]);
                status.respond(serde_json::to_value(cluster(3)).unwrap());
                api
            });
            reconcile(Arc::new(c), ctx).await.expect("reconcile");
            server.await.unwrap().done().await;
        }
    }

    #[tokio::test]
    async fn invalid_cache_memory_is_a_condition_not_a_crash_loop() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = cluster(3);
        c.spec.shards.cache_memory =
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("100m".into());
        let server = tokio::spawn(async move {
            assert_eq!(api.expect_event("default").await, "InvalidSpec");
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(
                condition(&status.body, "Ready"),
                ("False".into(), "InvalidSpec".into())
            );
            assert_eq!(
                condition(&status.body, "Degraded"),
                ("True".into(), "InvalidSpec".into())
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let action = reconcile(Arc::new(c), ctx)
            .await
            .expect("an invalid spec is not an error");
        assert_eq!(action, Action::await_change());
        server.await.unwrap().done().await;
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn api_errors_requeue_with_backoff() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake);
        let server = tokio::spawn(async move {
            api.expect(Method::GET, &format!("{APPS}/statefulsets/demo-shard"))
                .await
                .error(500, "InternalError");
            api
        });
        let c = Arc::new(cluster(3));
        let error = reconcile(c.clone(), ctx.clone())
            .await
            .expect_err("a 500 fails the reconcile");
        assert_eq!(error.metric_label(), "kube");
        assert_eq!(
            error_policy(c.clone(), &error, ctx.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        drop(ctx);
        server.await.unwrap().done().await;
    }
}
