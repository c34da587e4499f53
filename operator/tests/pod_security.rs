//! Every pod the operator creates (meta and shard StatefulSets, the
//! coordinator Deployment) runs unprivileged with a read-only root
//! filesystem, for the example cluster and its variants (TLS with client
//! certificates, shards without persistent storage).

mod support;

use rulake_operator::crd::RuLakeCluster;
use rulake_operator::manifests;
use serde_json::{json, Value};
use support::helm::documents;
use support::pod_security::assert_hardened;

fn example_cluster() -> Value {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/cluster.yaml");
    documents(&std::fs::read_to_string(path).unwrap())
        .into_iter()
        .find(|d| d["kind"] == "RuLakeCluster")
        .expect("the example has a RuLakeCluster")
}

fn check(what: &str, cluster: &RuLakeCluster) {
    let pods = [
        (
            "meta",
            manifests::meta_statefulset(cluster).spec.unwrap().template,
        ),
        (
            "shard",
            manifests::shard_statefulset(cluster, 3, 1 << 30)
                .spec
                .unwrap()
                .template,
        ),
        (
            "coordinator",
            manifests::coordinator_deployment(cluster)
                .spec
                .unwrap()
                .template,
        ),
    ];
    for (role, template) in pods {
        assert_hardened(&format!("{what}: {role}"), &template.spec.unwrap());
    }
}

#[test]
fn every_pod_the_operator_creates_is_unprivileged_and_read_only() {
    let base = example_cluster();
    check("example", &serde_json::from_value(base.clone()).unwrap());

    let mut tls = base.clone();
    tls["spec"]["tls"] = json!({
        "serverSecretRef": {"name": "server-tls"},
        "clientCaSecretRef": {"name": "client-ca"},
    });
    check("tls", &serde_json::from_value(tls).unwrap());

    // Shards may keep their cache on an emptyDir (meta always has a PVC).
    let mut ephemeral = base;
    ephemeral["spec"]["shards"]
        .as_object_mut()
        .unwrap()
        .remove("storage");
    check("no storage", &serde_json::from_value(ephemeral).unwrap());
}
