//! The CRDs shipped in the chart are exactly what the Rust types generate,
//! and carry the validation the operator relies on.

use kube::CustomResourceExt;
use rulake_operator::crd::{crd_files, RuLakeCluster, RuLakeCollection};
use std::path::PathBuf;

fn chart_crds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/rulake/crds")
}

#[test]
fn crds_match_the_chart() {
    for (name, generated) in crd_files().expect("CRD YAML") {
        let path = chart_crds().join(name);
        let shipped =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            shipped == generated,
            "{} drifted from the Rust types; regenerate with \
             `cargo run -p rulake-operator --bin crdgen -- charts/rulake/crds`",
            path.display()
        );
    }
    let mut shipped: Vec<_> = std::fs::read_dir(chart_crds())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        ["rulakeclusters.yaml", "rulakecollections.yaml"],
        "no stale CRD files"
    );
}

#[test]
fn cluster_crd_has_scale_status_and_validation() {
    let crd = serde_json::to_value(RuLakeCluster::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    let scale = &version["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.shards.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.shards.selector");
    assert!(version["subresources"]["status"].is_object());
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rules = spec["meta"]["properties"]["replicas"]["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("self == 3 || self == 5") && rules.contains("self == oldSelf"),
        "{rules}"
    );
    assert_eq!(spec["shards"]["properties"]["replicas"]["minimum"], 1.0);
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "rlc");
}

#[test]
fn collection_crd_validates_and_freezes_what_cannot_change() {
    let crd = serde_json::to_value(RuLakeCollection::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let props = &spec["properties"];
    assert_eq!(props["dimension"]["minimum"], 1.0);
    assert_eq!(props["partitions"]["minimum"], 1.0);
    assert_eq!(
        props["metric"]["enum"],
        serde_json::json!(["l2", "cosine", "innerProduct"])
    );
    for field in ["clusterRef", "source", "dimension", "metric", "partitions"] {
        let rules = props[field]["x-kubernetes-validations"].to_string();
        assert!(
            rules.contains("self == oldSelf"),
            "{field} is immutable: {rules}"
        );
    }
    assert!(props["source"]["x-kubernetes-validations"]
        .to_string()
        .contains("size() == 1"));
    let required = spec["required"].to_string();
    for field in ["clusterRef", "source", "dimension", "metric"] {
        assert!(required.contains(field), "{field} required: {required}");
    }
}

/// Authentication is required and its two development switches are
/// explicit: CEL refuses a cluster without `spec.auth`, with both an auth
/// Secret and anonymous access, with an auth Secret but no key for the
/// operator, and contradictory TLS settings. (The reconciler checks the
/// same with `check_security` for objects stored before these rules.)
#[test]
fn cluster_crd_requires_auth_and_guards_the_security_switches() {
    let crd = serde_json::to_value(RuLakeCluster::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = |v: &serde_json::Value| v["x-kubernetes-validations"].to_string();
    assert!(rules(spec).contains("has(self.auth)"), "{}", rules(spec));
    let props = &spec["properties"];
    let auth = rules(&props["auth"]);
    assert!(
        auth.contains("has(self.secretRef) != (has(self.allowAnonymous) && self.allowAnonymous)"),
        "{auth}"
    );
    assert!(
        auth.contains("!has(self.secretRef) || has(self.adminKeySecretRef)"),
        "{auth}"
    );
    let tls = rules(&props["tls"]);
    assert!(tls.contains("insecureClusterPlaintext"), "{tls}");
    assert!(
        tls.contains("!has(self.clientCaSecretRef) || has(self.serverSecretRef)"),
        "{tls}"
    );
    assert_eq!(
        props["tls"]["required"],
        serde_json::Value::Null,
        "mutual TLS needs no field: it is the default"
    );
    assert_eq!(
        props["auth"]["properties"]["secretRef"]["properties"]["key"]["pattern"],
        "^[-._a-zA-Z0-9]+$",
        "a Secret key, never a path"
    );
}

/// Storage is immutable (the StatefulSets' volume claim templates cannot
/// change, so the API server refuses the edit at once), and every role
/// takes the scheduling and identity fields, flattened into its spec.
#[test]
fn cluster_crd_freezes_storage_and_takes_scheduling_fields() {
    let crd = serde_json::to_value(RuLakeCluster::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let props = &spec["properties"];
    let meta_storage =
        props["meta"]["properties"]["storage"]["x-kubernetes-validations"].to_string();
    assert!(meta_storage.contains("self == oldSelf"), "{meta_storage}");
    let shards = props["shards"]["x-kubernetes-validations"].to_string();
    assert!(
        shards.contains("has(self.storage) == has(oldSelf.storage)")
            && shards.contains("self.storage == oldSelf.storage"),
        "shard storage can neither change nor come and go: {shards}"
    );
    for role in ["meta", "shards", "coordinators"] {
        let fields = &props[role]["properties"];
        for field in [
            "affinity",
            "topologySpreadConstraints",
            "nodeSelector",
            "tolerations",
            "priorityClassName",
            "podAnnotations",
            "serviceAccountName",
        ] {
            assert!(fields[field].is_object(), "{role}.{field}");
        }
        assert!(
            fields["affinity"]["properties"]["podAntiAffinity"].is_object(),
            "{role}: the full affinity schema"
        );
    }
    assert_eq!(
        props["imagePullSecrets"]["items"]["properties"]["name"]["type"],
        "string"
    );
}
