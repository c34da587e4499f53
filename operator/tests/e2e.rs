//! End-to-end against a real Kubernetes cluster (kind, k3d, ...). The test
//! is ignored by default, so a run without a cluster reports it as skipped,
//! never as passed; run it with `--run-ignored only` and `KUBECONFIG` set
//! (without a kubeconfig it then fails, saying so). See
//! docs/operations.md, "Testing against a real cluster".
//!
//! It installs the CRDs, runs the controllers in this process (watching
//! the test's namespace only, as the chart's namespaced mode does), and
//! checks what only an API server can: the CEL rules, the scale
//! subresource, owner references (issued certificates and NetworkPolicies
//! included), and that a finalizer and a failed drain hold things in
//! place. RuLake pods need not start: the operator cannot reach their
//! admin API from outside the cluster, which is the point of the drain
//! check (no drain, no shrink).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, Resource, ResourceExt};
use rulake_operator::admin::GrpcAdminFactory;
use rulake_operator::crd::{RuLakeCluster, RuLakeCollection, COLLECTION_FINALIZER};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const FIELD_MANAGER: &str = "rulake-e2e";

/// Every object of `kind` in an example file, moved to namespace `ns`.
fn examples<T: serde::de::DeserializeOwned>(file: &str, kind: &str, ns: &str) -> Vec<T> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if value["kind"] == kind {
            value["metadata"]["namespace"] = json!(ns);
            found.push(serde_json::from_value(value).unwrap());
        }
    }
    found
}

/// The one object of `kind` in an example file, moved to namespace `ns`.
fn example<T: serde::de::DeserializeOwned>(file: &str, kind: &str, ns: &str) -> T {
    examples(file, kind, ns)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {kind} in {file}"))
}

/// Polls `check` every second for up to `secs`.
async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: KUBECONFIG=... cargo nextest run -p rulake-operator --test e2e --run-ignored only"]
async fn e2e_requires_kubeconfig_operator_against_a_real_api_server() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to a cluster this test may create namespaces and CRDs in"
    );
    let client = Client::try_default().await.expect("a kubeconfig");
    let apply = PatchParams::apply(FIELD_MANAGER).force();

    // CRDs, as the chart installs them.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [RuLakeCluster::crd(), RuLakeCollection::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .expect("CRD applied");
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .expect("CRD established")
            .unwrap();
    }

    let ns = format!("rulake-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.clone());
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");

    let controller = tokio::spawn(rulake_operator::controller::run(
        client.clone(),
        Arc::new(GrpcAdminFactory {
            timeout: Duration::from_secs(5),
            tls: None,
        }),
        Some(ns.clone()),
    ));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for secret in examples::<Secret>("cluster.yaml", "Secret", &ns) {
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let clusters: Api<RuLakeCluster> = Api::namespaced(client.clone(), &ns);
    let mut cluster: RuLakeCluster = example("cluster.yaml", "RuLakeCluster", &ns);
    cluster.spec.monitoring.service_monitor = false;
    let cluster = clusters
        .create(&PostParams::default(), &cluster)
        .await
        .expect("cluster created");
    let uid = cluster.uid().unwrap();

    // Children appear, owned by the cluster.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    eventually("the cluster's objects", 90, || async {
        let (Ok(meta), Ok(shard), Ok(coord), Ok(svc), Ok(cm)) = (
            statefulsets.get("demo-meta").await,
            statefulsets.get("demo-shard").await,
            deployments.get("demo-coordinator").await,
            services.get("demo").await,
            config_maps.get("demo-config").await,
        ) else {
            return false;
        };
        let (Ok(ca), Ok(certs), Ok(np_meta), Ok(np_shard)) = (
            secrets.get("demo-cluster-ca").await,
            secrets.get("demo-cluster-certs").await,
            policies.get("demo-meta-internal").await,
            policies.get("demo-shard-internal").await,
        ) else {
            return false;
        };
        let owned = |m: &kube::api::ObjectMeta| {
            m.owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        };
        owned(meta.meta())
            && owned(shard.meta())
            && owned(coord.meta())
            && owned(svc.meta())
            && owned(cm.meta())
            && owned(ca.meta())
            && owned(certs.meta())
            && owned(np_meta.meta())
            && owned(np_shard.meta())
    })
    .await;
    assert_eq!(
        statefulsets
            .get("demo-shard")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(4)
    );
    eventually("a status with conditions", 60, || async {
        let c = clusters.get("demo").await.unwrap();
        c.status.is_some_and(|s| {
            s.observed_generation == c.metadata.generation && !s.conditions.is_empty()
        })
    })
    .await;

    // CEL: authentication is required.
    let err = clusters
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "auth": null } })),
        )
        .await
        .expect_err("spec.auth is required");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );

    // CEL: meta replicas are 3 or 5, and fixed.
    let err = clusters
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "meta": { "replicas": 5 } } })),
        )
        .await
        .expect_err("meta.replicas is immutable");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );

    // The scale subresource moves spec.shards.replicas; the operator then
    // has to drain demo-shard-3, which it cannot reach here, so the
    // StatefulSet must keep its 4 pods.
    clusters
        .patch_scale(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
        )
        .await
        .expect("scale subresource");
    assert_eq!(clusters.get("demo").await.unwrap().spec.shards.replicas, 3);
    eventually("a DrainFailed condition", 60, || async {
        let s = clusters
            .get("demo")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        s.conditions
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason == "DrainFailed")
    })
    .await;
    assert_eq!(
        statefulsets
            .get("demo-shard")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(4),
        "no drain, no shrink"
    );

    // The collection gets its finalizer; its immutable fields stay put.
    let collections: Api<RuLakeCollection> = Api::namespaced(client.clone(), &ns);
    let collection: RuLakeCollection = example("collection.yaml", "RuLakeCollection", &ns);
    collections
        .create(&PostParams::default(), &collection)
        .await
        .expect("collection created");
    eventually("the finalizer", 60, || async {
        collections
            .get("products")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == COLLECTION_FINALIZER)
    })
    .await;
    let err = collections
        .patch(
            "products",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "dimension": 1024 } })),
        )
        .await
        .expect_err("dimension is immutable");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );

    // Deleting it cannot drop it from an unreachable cluster: the finalizer
    // holds the resource.
    collections
        .delete("products", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = collections
        .get("products")
        .await
        .expect("held by the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());

    controller.abort();
    let release = json!({ "metadata": { "finalizers": null } });
    collections
        .patch("products", &PatchParams::default(), &Patch::Merge(release))
        .await
        .unwrap();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
