//! The example manifests in `docs/examples/` are valid: each RuLake
//! resource passes its CRD's OpenAPI schema (strictly: an unknown field is
//! an error, as with `kubectl apply --validate=strict`) and parses into the
//! operator's types, the collection passes the operator's own checks
//! against the example cluster, and other objects parse into their
//! Kubernetes types.

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use rulake_operator::controller::collection::validate;
use rulake_operator::crd::{RuLakeCluster, RuLakeCollection};
use serde_json::{json, Value};
use std::path::PathBuf;
use support::helm::documents;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

fn load(name: &str) -> Vec<Value> {
    documents(&std::fs::read_to_string(examples().join(name)).unwrap())
}

/// Forbids fields a schema does not name, below `spec`, the way strict
/// field validation does.
fn strict(schema: &mut Value) {
    if let Some(obj) = schema.as_object_mut() {
        let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if obj.contains_key("properties") && !preserves && !obj.contains_key("additionalProperties")
        {
            obj.insert("additionalProperties".into(), json!(false));
        }
        for (_, v) in obj.iter_mut() {
            strict(v);
        }
    } else if let Some(items) = schema.as_array_mut() {
        items.iter_mut().for_each(strict);
    }
}

/// The `spec` schema of a CRD, strict.
fn spec_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let crd = serde_json::to_value(crd).unwrap();
    let mut schema =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
    strict(&mut schema);
    schema
}

fn errors(schema: &Value, doc: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("the CRD schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn examples_pass_the_crd_schemas_and_the_operator_checks() {
    let cluster_schema = spec_schema(&RuLakeCluster::crd());
    let collection_schema = spec_schema(&RuLakeCollection::crd());
    let mut clusters = Vec::new();
    let mut collections = Vec::new();
    for file in ["cluster.yaml", "collection.yaml"] {
        for doc in load(file) {
            match doc["kind"].as_str().unwrap() {
                "RuLakeCluster" => {
                    assert_eq!(doc["apiVersion"], "rulake.io/v1alpha1");
                    assert_eq!(
                        errors(&cluster_schema, &doc["spec"]),
                        Vec::<String>::new(),
                        "{file}"
                    );
                    clusters.push(serde_json::from_value::<RuLakeCluster>(doc).unwrap());
                }
                "RuLakeCollection" => {
                    assert_eq!(doc["apiVersion"], "rulake.io/v1alpha1");
                    assert_eq!(
                        errors(&collection_schema, &doc["spec"]),
                        Vec::<String>::new(),
                        "{file}"
                    );
                    collections.push(serde_json::from_value::<RuLakeCollection>(doc).unwrap());
                }
                "Secret" => drop(serde_json::from_value::<Secret>(doc).unwrap()),
                other => panic!("{file}: unexpected kind {other}"),
            }
        }
    }
    assert_eq!((clusters.len(), collections.len()), (1, 1));
    assert_eq!(
        collections[0].spec.cluster_ref.name,
        clusters[0].metadata.name.clone().unwrap()
    );
    assert_eq!(validate(&collections[0].spec, &clusters[0]), Ok(()));
    assert_eq!(clusters[0].spec.check_security(), Ok(()));
}

/// The example's auth config loads, and grants the operator key its
/// Secret holds `admin:*`: the example cluster's admin calls work as
/// written.
#[test]
fn the_example_auth_config_admits_the_example_operator_key() {
    let secrets: Vec<Secret> = load("cluster.yaml")
        .into_iter()
        .filter(|d| d["kind"] == "Secret")
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    let cluster: RuLakeCluster = serde_json::from_value(
        load("cluster.yaml")
            .into_iter()
            .find(|d| d["kind"] == "RuLakeCluster")
            .unwrap(),
    )
    .unwrap();
    let auth = cluster.spec.auth.unwrap();
    let value = |name: &str, key: &str| {
        let secret = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the example has no Secret {name}"));
        secret.string_data.as_ref().unwrap()[key].clone()
    };
    let config = auth.secret_ref.unwrap();
    let key_ref = auth.admin_key_secret_ref.unwrap();
    let config = rulake_auth::AuthConfig::from_json(
        &value(&config.name, &config.key),
        std::path::Path::new("."),
    )
    .expect("the example auth config loads");
    let key = value(&key_ref.name, &key_ref.key);
    let principal = config
        .authenticate(Some(&format!("Bearer {key}")))
        .expect("the operator key is accepted");
    assert!(principal.allows(rulake_auth::Perm::Admin, "any-collection"));
}

#[test]
fn the_schemas_reject_what_they_should() {
    let collection_schema = spec_schema(&RuLakeCollection::crd());
    let cluster_schema = spec_schema(&RuLakeCluster::crd());
    let collection = load("collection.yaml").remove(0)["spec"].clone();
    let cluster = load("cluster.yaml")
        .into_iter()
        .find(|d| d["kind"] == "RuLakeCluster")
        .unwrap()["spec"]
        .clone();
    let with = |base: &Value, pointer: &str, value: Value| {
        let mut doc = base.clone();
        *doc.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        doc
    };
    for (what, doc) in [
        ("dimension 0", with(&collection, "/dimension", json!(0))),
        ("partitions 0", with(&collection, "/partitions", json!(0))),
        (
            "unknown metric",
            with(&collection, "/metric", json!("hamming")),
        ),
        (
            "misspelt field",
            with(
                &collection,
                "/source/parquet",
                json!({ "url": "s3://x/", "idColumn": "id", "vectorColum": "v" }),
            ),
        ),
    ] {
        assert!(
            !errors(&collection_schema, &doc).is_empty(),
            "accepted {what}"
        );
    }
    for (what, doc) in [
        ("no shards", with(&cluster, "/shards/replicas", json!(0))),
        ("empty image", with(&cluster, "/image", json!(""))),
        ("unknown pull policy", {
            let mut doc = cluster.clone();
            doc["imagePullPolicy"] = json!("Sometimes");
            doc
        }),
    ] {
        assert!(!errors(&cluster_schema, &doc).is_empty(), "accepted {what}");
    }
}
