//! The Helm chart, rendered with its default values, with
//! `ci/full-values.yaml` and in namespaced mode (`watchNamespace`): values
//! pass `values.schema.json`, every manifest parses into its Kubernetes
//! type without losing a field, RBAC grants only what the reconcilers use
//! (cluster-wide, or in one namespace only) and the leader Lease only in
//! the release namespace, the operator pod is probed and admits ingress on
//! its metrics port only, and the monitoring templates follow the files
//! that exist.
//!
//! helm itself is not available here; `support/helm.rs` says which subset
//! of Helm's template language the chart may use.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::helm::{chart_dir, documents, yaml, Chart};

fn full_values(chart: &Chart) -> Value {
    let text = std::fs::read_to_string(chart_dir().join("ci/full-values.yaml")).unwrap();
    chart.values_with(&yaml(&text))
}

/// Parses `doc` as `T` and checks nothing was dropped on the way: a
/// misspelt or misplaced field would be.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let parsed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(back, *doc, "fields lost parsing {}", doc["kind"]);
    parsed
}

/// Renders and type-checks every manifest; returns them by kind.
fn render(chart: &Chart, values: &Value) -> BTreeMap<String, Vec<Value>> {
    let validator =
        jsonschema::validator_for(&chart.schema).expect("values.schema.json is a schema");
    let errors: Vec<String> = validator
        .iter_errors(values)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "values do not pass values.schema.json: {errors:?}"
    );
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (path, out) in chart.render(values) {
        if path == "NOTES.txt" {
            assert!(out.contains("kubectl"), "NOTES.txt rendered: {out}");
            continue;
        }
        for doc in documents(&out) {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no kind"))
                .to_string();
            match kind.as_str() {
                "Deployment" => drop(typed::<Deployment>(&doc)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(&doc)),
                "ClusterRole" => drop(typed::<ClusterRole>(&doc)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&doc)),
                "Role" => drop(typed::<Role>(&doc)),
                "RoleBinding" => drop(typed::<RoleBinding>(&doc)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(&doc)),
                "ConfigMap" => drop(typed::<ConfigMap>(&doc)),
                "Pod" => drop(typed::<Pod>(&doc)),
                "PrometheusRule" => {
                    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                    let groups = doc["spec"]["groups"].as_array().expect("spec.groups");
                    assert!(
                        groups
                            .iter()
                            .all(|g| g["name"].is_string() && g["rules"].is_array()),
                        "{doc:#}"
                    );
                }
                other => panic!("{path}: unexpected kind {other}"),
            }
            let labels = &doc["metadata"]["labels"];
            assert_eq!(
                labels["app.kubernetes.io/part-of"], "rulake",
                "{path}: standard labels"
            );
            assert!(labels["helm.sh/chart"].is_string(), "{path}: chart label");
            by_kind.entry(kind).or_default().push(doc);
        }
    }
    by_kind
}

/// The rendered ClusterRole's (or Role's) rules grant exactly
/// `rulake_operator::rbac::RULES`: no verb, resource or object name more
/// (least privilege) or less (the mocked-API tests check every request the
/// reconcilers make against RULES, so a missing grant here would fail in a
/// real cluster).
fn assert_role_is_exactly_what_the_operator_uses(rules: &[PolicyRule]) {
    assert_role_grants_exactly(rules, rulake_operator::rbac::RULES);
}

/// The leader-election Role grants exactly `OWN_NAMESPACE_RULES`, in the
/// release namespace, bound to the operator's ServiceAccount.
fn assert_lease_role(out: &BTreeMap<String, Vec<Value>>) {
    let name = |doc: &Value| doc["metadata"]["name"].as_str().unwrap().to_string();
    let role = out["Role"]
        .iter()
        .find(|d| name(d) == "rulake-rulake-leader")
        .expect("the leader-election Role");
    let role: Role = typed(role);
    assert_eq!(role.metadata.namespace.as_deref(), Some("rulake-system"));
    assert_role_grants_exactly(
        &role.rules.unwrap(),
        rulake_operator::rbac::OWN_NAMESPACE_RULES,
    );
    let binding = out["RoleBinding"]
        .iter()
        .find(|d| name(d) == "rulake-rulake-leader")
        .expect("the leader-election RoleBinding");
    let binding: RoleBinding = typed(binding);
    assert_eq!(binding.role_ref.name, "rulake-rulake-leader");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("rulake-rulake", Some("rulake-system"))
    );
}

/// `rules` grant exactly `table`.
fn assert_role_grants_exactly(rules: &[PolicyRule], table: &[rulake_operator::rbac::Rule]) {
    use std::collections::BTreeSet;
    type Grant = (String, String, String, Vec<String>);
    let mut granted: BTreeSet<Grant> = BTreeSet::new();
    for rule in rules.iter().cloned() {
        let names = rule.resource_names.clone().unwrap_or_default();
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                assert_ne!(resource, "*", "no wildcard resources");
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "no wildcard verbs");
                    let fresh = granted.insert((
                        group.clone(),
                        resource.clone(),
                        verb.clone(),
                        names.clone(),
                    ));
                    assert!(fresh, "{verb} on {group}/{resource} granted twice");
                }
            }
        }
    }
    let used: BTreeSet<Grant> = table
        .iter()
        .flat_map(|r| {
            r.verbs.iter().map(|v| {
                (
                    r.group.to_string(),
                    r.resource.to_string(),
                    v.to_string(),
                    r.names.iter().map(|n| n.to_string()).collect(),
                )
            })
        })
        .collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "the role differs from operator/src/rbac.rs: granted but unused {extra:?}, used but not granted {missing:?}"
    );
    assert!(
        !used
            .iter()
            .any(|(_, r, v, _)| r == "secrets" && (v == "list" || v == "watch")),
        "the operator never lists Secrets: it reads those a cluster names or owns"
    );
    assert!(
        !used
            .iter()
            .any(|(_, _, v, _)| v == "delete" || v == "update"),
        "the operator only applies and patches (garbage collection deletes through owner \
         references; the Lease is written by conditional patches)"
    );
}

fn kinds(by_kind: &BTreeMap<String, Vec<Value>>) -> Vec<(&str, usize)> {
    by_kind.iter().map(|(k, v)| (k.as_str(), v.len())).collect()
}

#[test]
fn default_values_render_the_operator_and_least_privilege_rbac() {
    let chart = Chart::load(&chart_dir());
    let values = chart.values.clone();
    let out = render(&chart, &values);
    assert_eq!(
        kinds(&out),
        [
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("Deployment", 1),
            ("NetworkPolicy", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("ServiceAccount", 1)
        ],
        "monitoring and the test hook are off by default"
    );
    assert_lease_role(&out);
    let deployment: Deployment = typed(&out["Deployment"][0]);
    assert_eq!(deployment.metadata.name.as_deref(), Some("rulake-rulake"));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate"),
        "a new operator pod waits for the Lease while the old one leads"
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("rulake-rulake"));
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("rulake/rulake:0.1.0"),
        "tag defaults to appVersion"
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    // Leader election, metrics and probes.
    let env = container.env.clone().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(
        value("RULAKE_OPERATOR_LEASE_NAME").value.as_deref(),
        Some("rulake-rulake")
    );
    assert_eq!(
        value("POD_NAMESPACE")
            .value_from
            .unwrap()
            .field_ref
            .unwrap()
            .field_path,
        "metadata.namespace",
        "the Lease lives in the operator's own namespace"
    );
    assert_eq!(
        value("RULAKE_OPERATOR_METRICS_LISTEN").value.as_deref(),
        Some("0.0.0.0:8080")
    );
    let ports = container.ports.clone().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("metrics"), 8080)
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.clone().unwrap().http_get.unwrap();
        (get.path.unwrap(), get.port)
    };
    let metrics_port =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into());
    assert_eq!(
        probe_path(&container.liveness_probe),
        ("/healthz".to_string(), metrics_port.clone())
    );
    assert_eq!(
        probe_path(&container.readiness_probe),
        ("/readyz".to_string(), metrics_port)
    );

    let role: ClusterRole = typed(&out["ClusterRole"][0]);
    assert_role_is_exactly_what_the_operator_uses(&role.rules.unwrap());
    let binding: ClusterRoleBinding = typed(&out["ClusterRoleBinding"][0]);
    assert_eq!(
        binding.subjects.unwrap()[0].namespace.as_deref(),
        Some("rulake-system")
    );
    assert!(
        !container
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "RULAKE_OPERATOR_WATCH_NAMESPACE"),
        "every namespace by default"
    );

    // The operator pod admits ingress on its metrics port only.
    let policy: NetworkPolicy = typed(&out["NetworkPolicy"][0]);
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels,
        spec_template_labels(&out["Deployment"][0]),
        "the policy selects the operator pod"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    let ports = ingress[0].ports.clone().unwrap();
    assert_eq!(
        ports
            .iter()
            .map(|p| p.port.clone().unwrap())
            .collect::<Vec<_>>(),
        [k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into())],
        "only the metrics port"
    );
}

/// The labels of a Deployment's pod template.
fn spec_template_labels(doc: &Value) -> Option<BTreeMap<String, String>> {
    let d: Deployment = typed(doc);
    d.spec.unwrap().template.metadata.unwrap().labels
}

/// `watchNamespace`: a Role and RoleBinding there, with the same rules,
/// nothing cluster-wide, and the operator told to watch that namespace
/// only.
#[test]
fn namespaced_mode_grants_a_role_in_that_namespace_only() {
    let chart = Chart::load(&chart_dir());
    let values = chart.values_with(&json!({ "watchNamespace": "search" }));
    let out = render(&chart, &values);
    assert_eq!(
        kinds(&out),
        [
            ("Deployment", 1),
            ("NetworkPolicy", 1),
            ("Role", 2),
            ("RoleBinding", 2),
            ("ServiceAccount", 1)
        ],
        "no ClusterRole, no ClusterRoleBinding"
    );
    assert_lease_role(&out);
    let in_search = |kind: &str| {
        out[kind]
            .iter()
            .find(|d| d["metadata"]["namespace"] == "search")
            .unwrap_or_else(|| panic!("no {kind} in the watched namespace"))
            .clone()
    };
    let role: Role = typed(&in_search("Role"));
    assert_eq!(role.metadata.namespace.as_deref(), Some("search"));
    assert_role_is_exactly_what_the_operator_uses(&role.rules.unwrap());
    let binding: RoleBinding = typed(&in_search("RoleBinding"));
    assert_eq!(binding.metadata.namespace.as_deref(), Some("search"));
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "rulake-rulake")
    );
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("rulake-rulake", Some("rulake-system")),
        "the operator's ServiceAccount, in the release namespace"
    );
    let deployment: Deployment = typed(&out["Deployment"][0]);
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(
        |e| e.name == "RULAKE_OPERATOR_WATCH_NAMESPACE" && e.value.as_deref() == Some("search")
    ));

    let off = chart.values_with(&json!({ "networkPolicy": { "enabled": false } }));
    assert!(!render(&chart, &off).contains_key("NetworkPolicy"));
}

#[test]
fn full_values_render_monitoring_and_the_test_hook() {
    let mut chart = Chart::load(&chart_dir());
    // Stand-ins for the dashboards and rules the chart ships, so the
    // templates are exercised whether or not those files exist yet.
    chart
        .files
        .retain(|path, _| !path.starts_with("dashboards/") && path != "prometheus/rules.yaml");
    chart.files.insert(
        "dashboards/RuLake_Overview.json".into(),
        r#"{"uid": "rulake-overview", "panels": []}"#.into(),
    );
    chart.files.insert(
        "dashboards/shards.json".into(),
        r#"{"uid": "rulake-shards", "panels": []}"#.into(),
    );
    chart
        .files
        .insert("dashboards/README.md".into(), "not a dashboard".into());
    chart.files.insert(
        "prometheus/rules.yaml".into(),
        "groups:\n  - name: rulake\n    rules:\n      - alert: RuLakeShardDown\n        expr: up{job=\"rulake\"} == 0\n        for: 5m\n".into(),
    );
    let values = full_values(&chart);
    let out = render(&chart, &values);
    assert_eq!(
        kinds(&out),
        [
            ("ClusterRole", 1),
            ("ClusterRoleBinding", 1),
            ("ConfigMap", 2),
            ("Deployment", 1),
            ("NetworkPolicy", 1),
            ("Pod", 1),
            ("PrometheusRule", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("ServiceAccount", 1)
        ]
    );
    let mut dashboards: Vec<ConfigMap> = out["ConfigMap"].iter().map(typed).collect();
    dashboards.sort_by_key(|c| c.metadata.name.clone());
    assert_eq!(
        dashboards[0].metadata.name.as_deref(),
        Some("lake-operator-dashboard-rulake-overview")
    );
    for d in &dashboards {
        let labels = d.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["grafana_dashboard"], "1");
        assert_eq!(labels["team"], "search");
        let (file, content) = d.data.as_ref().unwrap().iter().next().unwrap();
        assert!(file.ends_with(".json"));
        let dashboard: Value =
            serde_json::from_str(content).expect("dashboard JSON survives templating");
        assert!(dashboard["uid"].as_str().unwrap().starts_with("rulake-"));
    }
    let rule = &out["PrometheusRule"][0];
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["alert"],
        "RuLakeShardDown"
    );
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");

    let test: Pod = typed(&out["Pod"][0]);
    assert_eq!(
        test.metadata.annotations.as_ref().unwrap()["helm.sh/hook"],
        "test"
    );
    let test_container = test.spec.unwrap().containers.remove(0);
    let key = test_container.env.clone().unwrap().remove(0);
    assert_eq!(key.name, "RULAKE_API_KEY", "the test hook authenticates");
    let from = key.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("demo-reader", "api-key")
    );
    let command = test_container.command.clone().unwrap();
    assert_eq!(
        command,
        [
            "rulake-operator",
            "search",
            "--endpoint",
            "http://demo.rulake-system.svc:50051",
            "--collection",
            "items",
            "--k",
            "5"
        ]
    );

    let deployment: Deployment = typed(&out["Deployment"][0]);
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2), "a standby operator");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("rulake-op"));
    let port = &pod.containers[0].ports.clone().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("metrics"), 9102)
    );
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example.com/rulake:0.1.0-rc1")
    );
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
    assert_eq!(
        pod.tolerations.unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    let env = pod.containers[0].env.clone().unwrap();
    assert!(env
        .iter()
        .any(|e| e.name == "RULAKE_OPERATOR_ADMIN_TIMEOUT" && e.value.as_deref() == Some("600")));
    assert!(env
        .iter()
        .any(|e| e.name == "RULAKE_OPERATOR_METRICS_LISTEN"
            && e.value.as_deref() == Some("0.0.0.0:9102")));
    assert!(env
        .iter()
        .any(|e| e.name == "RULAKE_OPERATOR_LEASE_NAME"
            && e.value.as_deref() == Some("lake-operator")));
    // operator.apiTls: the Secret is mounted and the operator pointed at it.
    let dir = "/etc/rulake-operator/api-tls";
    for (name, file) in [
        ("RULAKE_OPERATOR_API_CA", "ca.crt"),
        ("RULAKE_OPERATOR_API_CERT", "tls.crt"),
        ("RULAKE_OPERATOR_API_KEY", "tls.key"),
    ] {
        let want = format!("{dir}/{file}");
        assert!(
            env.iter()
                .any(|e| e.name == name && e.value.as_deref() == Some(want.as_str())),
            "{name} is not {want}"
        );
    }
    let mount = &pod.containers[0].volume_mounts.clone().unwrap()[0];
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str()),
        ("api-tls", dir)
    );
    let volume = &pod.volumes.unwrap()[0];
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("rulake-operator-api-tls")
    );
}

/// `helm test` searches the cluster in its own namespace: test.namespace,
/// else the watched namespace, else the release namespace.
#[test]
fn the_test_hook_reaches_the_cluster_in_its_namespace() {
    let chart = Chart::load(&chart_dir());
    let endpoint = |overrides: Value| {
        let mut values = full_values(&chart);
        support::helm::merge(&mut values, &overrides);
        let out = render(&chart, &values);
        let pod: Pod = typed(&out["Pod"][0]);
        assert_eq!(
            pod.metadata.namespace.as_deref(),
            Some("rulake-system"),
            "the hook runs in the release namespace"
        );
        let command = pod.spec.unwrap().containers[0].command.clone().unwrap();
        command[command.iter().position(|a| a == "--endpoint").unwrap() + 1].clone()
    };
    assert_eq!(endpoint(json!({})), "http://demo.rulake-system.svc:50051");
    assert_eq!(
        endpoint(json!({ "watchNamespace": "search" })),
        "http://demo.search.svc:50051"
    );
    assert_eq!(
        endpoint(json!({ "watchNamespace": "search", "test": { "namespace": "lake" } })),
        "http://demo.lake.svc:50051"
    );
}

#[test]
fn monitoring_renders_nothing_without_its_files() {
    let mut chart = Chart::load(&chart_dir());
    chart
        .files
        .retain(|path, _| !path.starts_with("dashboards/") && !path.starts_with("prometheus/"));
    let values = full_values(&chart);
    let out = render(&chart, &values);
    assert!(
        !out.contains_key("ConfigMap"),
        "no dashboards, no ConfigMaps"
    );
    assert!(
        !out.contains_key("PrometheusRule"),
        "no rules file, no PrometheusRule"
    );
}

#[test]
fn the_chart_shipped_files_render_too() {
    // Whatever dashboards/ and prometheus/ hold right now must render.
    let chart = Chart::load(&chart_dir());
    let values = full_values(&chart);
    let out = render(&chart, &values);
    let dashboards = chart
        .files
        .keys()
        .filter(|p| p.starts_with("dashboards/") && p.ends_with(".json"))
        .count();
    assert_eq!(out.get("ConfigMap").map_or(0, Vec::len), dashboards);
}

/// Every shipped dashboard has `namespace` and `cluster` variables and
/// filters every query by both, so one cluster's panels never add in
/// another's series (ci/prometheus-check.sh evaluates the queries).
#[test]
fn dashboards_filter_by_namespace_and_cluster() {
    let chart = Chart::load(&chart_dir());
    let mut dashboards = 0;
    for (path, text) in &chart.files {
        if !(path.starts_with("dashboards/") && path.ends_with(".json")) {
            continue;
        }
        dashboards += 1;
        let d: Value = serde_json::from_str(text).unwrap();
        let names: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"namespace") && names.contains(&"cluster"),
            "{path}: {names:?}"
        );
        for panel in d["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    expr.contains(r#"namespace=~"$namespace""#)
                        && expr.contains(r#"rulake_cluster=~"$cluster""#),
                    "{path}: {} does not filter by namespace and cluster: {expr}",
                    panel["title"]
                );
            }
        }
    }
    assert!(dashboards >= 4, "{dashboards} dashboards");
}

#[test]
fn values_schema_rejects_bad_values() {
    let chart = Chart::load(&chart_dir());
    let validator = jsonschema::validator_for(&chart.schema).unwrap();
    for bad in [
        json!({ "image": { "pullPolicy": "Sometimes" } }),
        json!({ "operator": { "adminTimeoutSeconds": 0 } }),
        json!({ "monitoring": { "dashboards": { "enabld": true } } }),
        json!({ "replicaCount": 2 }),
        json!({ "watchNamespace": "Not_A_Namespace" }),
        json!({ "networkPolicy": { "enable": true } }),
        json!({ "operator": { "replicas": 0 } }),
        json!({ "operator": { "metricsPort": 0 } }),
        json!({ "test": { "namespace": "Not_A_Namespace" } }),
    ] {
        let values = chart.values_with(&bad);
        assert!(!validator.is_valid(&values), "accepted {bad}");
    }
}

/// The operator Deployment and the test-hook Pod run unprivileged with a
/// read-only root filesystem, like the pods the operator creates.
#[test]
fn every_pod_the_chart_renders_is_unprivileged_and_read_only() {
    let chart = Chart::load(&chart_dir());
    for values in [chart.values.clone(), full_values(&chart)] {
        let out = render(&chart, &values);
        for doc in &out["Deployment"] {
            let d: Deployment = typed(doc);
            support::pod_security::assert_hardened(
                "chart Deployment",
                &d.spec.unwrap().template.spec.unwrap(),
            );
        }
        for doc in out.get("Pod").into_iter().flatten() {
            let p: Pod = typed(doc);
            support::pod_security::assert_hardened("chart test Pod", &p.spec.unwrap());
        }
    }
}
