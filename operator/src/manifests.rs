//! The Kubernetes objects a `RuLakeCluster` is made of, as pure functions of
//! the resource, so the reconciler only applies them and tests can inspect
//! them without an API server.
//!
//! Command lines: `rulake meta` takes the flags it has today (`--id`,
//! `--listen`, `--advertise`, `--peers`, `--data-dir`); its Raft id is the
//! pod's ordinal + 1, computed by a shell wrapper since Kubernetes cannot do
//! arithmetic on the pod name. `rulake shard` and `rulake coordinator` are
//! written against the flags the distributed roles are to take: `--listen`,
//! `--data-dir`, `--meta` (comma-separated member addresses), `--cache-bytes`
//! and `--node-id` (the pod name). Every role is assumed to serve
//! `/metrics`, `/healthz` and `/readyz` on `--metrics-listen`.
//!
//! Layout: names, labels and the small objects here; `pod` builds the one
//! pod template every role shares (so security settings, probes and TLS
//! cannot drift between roles); `security` the TLS and auth flags with
//! their Secret volumes, the issued-certificate Secrets and the
//! NetworkPolicies; `workloads` the StatefulSets and the Deployment;
//! `memory` the shard pods' memory request and limit, from the cache budget.

mod memory;
mod pod;
mod security;
#[cfg(test)]
mod tests;
mod workloads;

pub use memory::{shard_memory_bytes, shard_resources};
pub use security::{
    cluster_ca_secret_name, cluster_certs_secret_name, cluster_peers, network_policies,
    network_policy_name, owned_secret, CA_TRUSTED_SINCE,
};
pub use workloads::{
    coordinator_deployment, meta_statefulset, rollout_order, shard_statefulset, RolloutStep,
    PRE_STOP_SECONDS, SHARD_DRAIN_SECONDS, SHARD_GRACE_SECONDS,
};

use crate::admin::GRPC_PORT;
use crate::crd::RuLakeCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Port of the meta role's Raft and catalog service.
pub const RAFT_PORT: u16 = 7700;
/// The operator's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "rulake-operator";
/// Where a role keeps its data inside the container.
const DATA_DIR: &str = "/var/lib/rulake";

/// A RuLake role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The Raft catalog.
    Meta,
    /// Cache-holding shard nodes.
    Shard,
    /// The query front end.
    Coordinator,
}

impl Role {
    /// The role's name in labels and object names.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Meta => "meta",
            Role::Shard => "shard",
            Role::Coordinator => "coordinator",
        }
    }
}

/// Name of a role's workload (and its headless Service).
pub fn role_name(cluster: &RuLakeCluster, role: Role) -> String {
    format!("{}-{}", cluster.name_any(), role.as_str())
}

/// Name of the ConfigMap every role reads its environment from.
pub fn config_name(cluster: &RuLakeCluster) -> String {
    format!("{}-config", cluster.name_any())
}

/// The shard node id of ordinal `i` (its pod name).
pub fn shard_node_id(cluster: &RuLakeCluster, ordinal: i32) -> String {
    format!("{}-{ordinal}", role_name(cluster, Role::Shard))
}

/// Labels that select a role's pods.
pub fn selector_labels(cluster: &RuLakeCluster, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "rulake".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            role.as_str().to_string(),
        ),
    ])
}

/// `selector_labels` as a workload's or budget's selector.
fn role_selector(cluster: &RuLakeCluster, role: Role) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(cluster, role)),
        ..LabelSelector::default()
    }
}

/// `selector_labels` as a label-selector string (the scale subresource's).
pub fn selector_string(cluster: &RuLakeCluster, role: Role) -> String {
    selector_labels(cluster, role)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(cluster: &RuLakeCluster, role: Option<Role>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "rulake".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster.name_any()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "rulake".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
    ]);
    if let Some(role) = role {
        labels.insert("app.kubernetes.io/component".into(), role.as_str().into());
    }
    labels
}

fn meta(cluster: &RuLakeCluster, name: String, role: Option<Role>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.namespace(),
        labels: Some(labels(cluster, role)),
        owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Addresses of the meta members, `host:port` by stable pod DNS name.
pub fn meta_addresses(cluster: &RuLakeCluster) -> Vec<String> {
    let ns = cluster.namespace().unwrap_or_else(|| "default".into());
    let svc = role_name(cluster, Role::Meta);
    (0..cluster.spec.meta.replicas)
        .map(|i| format!("{svc}-{i}.{svc}.{ns}.svc:{RAFT_PORT}"))
        .collect()
}

/// Bytes in a Kubernetes quantity (`4Gi`, `512M`, `1e9`); `None` when it is
/// not a whole number of bytes.
pub fn quantity_bytes(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let scale: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            // Scientific notation, e.g. `1e9`.
            let value: f64 = s.parse().ok()?;
            return (value.is_finite() && value >= 0.0 && value.fract() == 0.0)
                .then_some(value as u64);
        }
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(scale);
    }
    let value: f64 = number.parse().ok()?;
    let bytes = value * scale as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes.fract() == 0.0).then_some(bytes as u64)
}

/// The ConfigMap every role takes its environment from.
pub fn config_map(cluster: &RuLakeCluster) -> ConfigMap {
    let mut data = BTreeMap::from([
        ("RULAKE_CLUSTER".to_string(), cluster.name_any()),
        ("RULAKE_META".to_string(), meta_addresses(cluster).join(",")),
        (
            "RULAKE_METRICS_LISTEN".to_string(),
            format!("0.0.0.0:{}", cluster.spec.monitoring.metrics_port),
        ),
    ]);
    if !cluster.spec.source_allow.is_empty() {
        data.insert(
            "RULAKE_SOURCE_ALLOW".to_string(),
            cluster.spec.source_allow.join(","),
        );
    }
    ConfigMap {
        metadata: meta(cluster, config_name(cluster), None),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn headless_service(cluster: &RuLakeCluster, role: Role, main_port: (&str, i32)) -> Service {
    Service {
        metadata: meta(cluster, role_name(cluster, role), Some(role)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster, role)),
            ports: Some(vec![
                service_port(main_port.0, main_port.1),
                service_port("metrics", cluster.spec.monitoring.metrics_port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Headless Service giving meta members stable DNS names.
pub fn meta_service(cluster: &RuLakeCluster) -> Service {
    headless_service(cluster, Role::Meta, ("raft", i32::from(RAFT_PORT)))
}

/// Headless Service giving shard nodes stable DNS names.
pub fn shard_service(cluster: &RuLakeCluster) -> Service {
    headless_service(cluster, Role::Shard, ("grpc", i32::from(GRPC_PORT)))
}

/// The Service clients (and the operator) connect to: the coordinators.
pub fn client_service(cluster: &RuLakeCluster) -> Service {
    Service {
        metadata: meta(cluster, cluster.name_any(), Some(Role::Coordinator)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cluster, Role::Coordinator)),
            ports: Some(vec![
                service_port("grpc", i32::from(GRPC_PORT)),
                service_port("metrics", cluster.spec.monitoring.metrics_port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// How many pods of `role` may be voluntarily disrupted (evicted by a node
/// drain) at once. Meta: one, so a Raft group keeps its quorum with a
/// member to spare. Coordinators: one, so the client Service keeps
/// answering. Shards: one less than `replication`, the smallest
/// replication factor of the cluster's collections, so every partition
/// keeps a warm replica (a shard is Ready only once its partitions are
/// warm, so a returning pod counts as unavailable until it is); at least
/// one, so node drains can always proceed, which with replication 1
/// means a partition is cold until its node returns.
pub fn max_unavailable(role: Role, replication: Option<u32>) -> i32 {
    match role {
        Role::Meta | Role::Coordinator => 1,
        Role::Shard => {
            let r = i32::try_from(replication.unwrap_or(1)).unwrap_or(i32::MAX);
            r.saturating_sub(1).max(1)
        }
    }
}

/// The PodDisruptionBudget of `role` ([`max_unavailable`]). A pod that is
/// not Ready may always be evicted (`unhealthyPodEvictionPolicy:
/// AlwaysAllow`): it serves nothing, and keeping it would only block node
/// drains behind a pod that cannot start.
pub fn pod_disruption_budget(
    cluster: &RuLakeCluster,
    role: Role,
    replication: Option<u32>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(cluster, role_name(cluster, role), Some(role)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(role, replication))),
            selector: Some(role_selector(cluster, role)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The label naming a RuLake cluster on its scraped series, which the
/// chart's dashboards and alerts group by. Not `cluster`: many Prometheus
/// setups already use that for the Kubernetes cluster.
pub const CLUSTER_LABEL: &str = "rulake_cluster";

/// The prometheus-operator ServiceMonitor kind.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// A ServiceMonitor scraping the `metrics` port of every RuLake Service of
/// the cluster, labelling the series with [`CLUSTER_LABEL`].
pub fn service_monitor(cluster: &RuLakeCluster) -> DynamicObject {
    let mut metadata = meta(cluster, cluster.name_any(), None);
    let mut object_labels = metadata.labels.take().unwrap_or_default();
    object_labels.extend(cluster.spec.monitoring.service_monitor_labels.clone());
    metadata.labels = Some(object_labels);
    let mut obj = DynamicObject::new(&cluster.name_any(), &service_monitor_resource());
    obj.metadata = metadata;
    obj.data = serde_json::json!({
        "spec": {
            "selector": { "matchLabels": {
                "app.kubernetes.io/name": "rulake",
                "app.kubernetes.io/instance": cluster.name_any(),
            }},
            "endpoints": [{
                "port": "metrics", "path": "/metrics", "interval": "30s",
                // The dashboards and alerts group by cluster: its name
                // from the Service's instance label (`namespace` is
                // added by prometheus-operator itself).
                "relabelings": [{
                    "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
                    "targetLabel": CLUSTER_LABEL,
                }],
            }],
        }
    });
    obj
}
