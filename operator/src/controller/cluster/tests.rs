//! The cluster reconciler against the mocked API server and the fake
//! cluster: each scenario lists the exact requests one run makes.

use super::*;
use crate::fixtures::{
    admin_key_secret, cluster, condition, test_context, FakeAdmin, MockApi, ADMIN_KEY_HEADER,
};
use http::Method;
use rulake_proto::v1 as pb;
use serde_json::json;

mod backup;
mod disruption;
mod security;

use security::{expect_certs, StoredCerts};

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

/// Answers the shard StatefulSet lookup (absent, or of `replicas`), then
/// the admin key Secret's.
async fn shard_lookup(api: &mut MockApi, replicas: Option<i32>) {
    statefulset_lookup(api, replicas).await;
    api.expect(Method::GET, &format!("{NS}/secrets/demo-admin-key"))
        .await
        .respond(admin_key_secret());
}

/// Answers the shard StatefulSet lookup: absent, or of `replicas`.
async fn statefulset_lookup(api: &mut MockApi, replicas: Option<i32>) {
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

/// Expects the certificates of a new cluster issued, then every child
/// object in order, as a cluster without a ServiceMonitor has them;
/// returns the shard StatefulSet applied.
async fn expect_children(api: &mut MockApi, ready: [i32; 3]) -> serde_json::Value {
    expect_certs(api, StoredCerts::default(), &["ca", "certs"]).await;
    expect_workloads(api, ready).await
}

/// Every child object in order, after the certificates step.
async fn expect_workloads(api: &mut MockApi, ready: [i32; 3]) -> serde_json::Value {
    let applied = expect_each_child(api, ready, None).await;
    applied["statefulsets/demo-shard"].clone()
}

/// A StatefulSet apply the mocked API server refuses as invalid: its path
/// under the namespace, the object as it stands (answering the operator's
/// read after the refusal), and the Warning event's reason.
struct Refusal {
    path: &'static str,
    current: serde_json::Value,
    reason: &'static str,
}

/// Every child object in order, after the certificates step, refusing
/// `refused` if given; returns the applied bodies by path under the
/// namespace (`statefulsets/demo-shard`).
async fn expect_each_child(
    api: &mut MockApi,
    ready: [i32; 3],
    refused: Option<Refusal>,
) -> std::collections::BTreeMap<&'static str, serde_json::Value> {
    const NET: &str = "/apis/networking.k8s.io/v1/namespaces/default";
    let [meta, shards, coordinators] = ready;
    let steps = [
        (NS, "configmaps/demo-config", None),
        (NET, "networkpolicies/demo-meta-internal", None),
        (NET, "networkpolicies/demo-shard-internal", None),
        (NS, "services/demo-meta", None),
        (APPS, "statefulsets/demo-meta", Some(meta)),
        (POLICY, "poddisruptionbudgets/demo-meta", None),
        (NS, "services/demo-shard", None),
        (APPS, "statefulsets/demo-shard", Some(shards)),
        (POLICY, "poddisruptionbudgets/demo-shard", None),
        (APPS, "deployments/demo-coordinator", Some(coordinators)),
        (POLICY, "poddisruptionbudgets/demo-coordinator", None),
        (NS, "services/demo", None),
    ];
    let mut applied = std::collections::BTreeMap::new();
    for (prefix, path, ready) in steps {
        let full = format!("{prefix}/{path}");
        match &refused {
            Some(refusal) if refusal.path == path => {
                let call = api.expect(Method::PATCH, &full).await;
                applied.insert(path, call.body.clone());
                call.error(422, "Invalid");
                api.expect(Method::GET, &full)
                    .await
                    .respond(refusal.current.clone());
                assert_eq!(api.expect_event("default").await, refusal.reason);
            }
            _ => {
                applied.insert(path, expect_apply(api, &full, ready).await);
            }
        }
    }
    let meta_sts = &applied["statefulsets/demo-meta"];
    assert_eq!(meta_sts["spec"]["replicas"], 3);
    assert_eq!(meta_sts["spec"]["podManagementPolicy"], "Parallel");
    let shard_svc = &applied["services/demo-shard"];
    assert_eq!(shard_svc["spec"]["clusterIP"], "None");
    assert_eq!(shard_svc["spec"]["publishNotReadyAddresses"], true);
    applied
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
    assert_eq!(
        *fake.keys.lock().unwrap(),
        [Some(ADMIN_KEY_HEADER.to_string())],
        "the admin client sends the key of spec.auth.adminKeySecretRef"
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
            let path = "/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/demo";
            if installed {
                let sm = expect_apply(&mut api, path, None).await;
                assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
                assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
            } else {
                // Without the CRD the API server has no such resource.
                api.expect(Method::PATCH, path).await.not_found();
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
        assert_eq!(
            seen.calls(),
            ["status"],
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
        ["status", "admit demo-shard-3"],
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
        assert_eq!(fake.calls(), ["status", "admit demo-shard-3"]);
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
