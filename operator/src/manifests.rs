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

use crate::admin::GRPC_PORT;
use crate::crd::{RuLakeCluster, StorageSpec};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretEnvSource, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeResourceRequirements,
};
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
/// Where TLS material is mounted.
const TLS_DIR: &str = "/etc/rulake/tls";

/// A RuLake role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    let data = BTreeMap::from([
        ("RULAKE_CLUSTER".to_string(), cluster.name_any()),
        ("RULAKE_META".to_string(), meta_addresses(cluster).join(",")),
        (
            "RULAKE_METRICS_LISTEN".to_string(),
            format!("0.0.0.0:{}", cluster.spec.monitoring.metrics_port),
        ),
    ]);
    ConfigMap {
        metadata: meta(cluster, config_name(cluster), None),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A digest of the ConfigMap's data, put on pod templates so a config
/// change rolls the pods.
fn config_checksum(cluster: &RuLakeCluster) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in config_map(cluster).data.unwrap_or_default() {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Environment sources: the cluster ConfigMap, then the object-store Secret.
fn env_from(cluster: &RuLakeCluster, with_credentials: bool) -> Vec<EnvFromSource> {
    let mut sources = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: config_name(cluster),
            optional: None,
        }),
        ..EnvFromSource::default()
    }];
    if let (true, Some(store)) = (with_credentials, &cluster.spec.object_store) {
        sources.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: store.credentials_secret_ref.name.clone(),
                optional: None,
            }),
            ..EnvFromSource::default()
        });
    }
    sources
}

fn pod_name_env() -> EnvVar {
    EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// TLS flags, volumes and mounts of a role's pod (empty without
/// `spec.tls`): the API's certificate on coordinators, the cluster's on
/// every role.
fn tls(cluster: &RuLakeCluster, role: Role) -> (Vec<String>, Vec<Volume>, Vec<VolumeMount>) {
    let Some(tls) = &cluster.spec.tls else {
        return Default::default();
    };
    let secret_volume = |name: &str, secret: &str| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            ..Default::default()
        }),
        ..Volume::default()
    };
    let mount = |name: &str, dir: &str| VolumeMount {
        name: name.into(),
        mount_path: format!("{TLS_DIR}/{dir}"),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let (mut args, mut volumes, mut mounts) = (Vec::new(), Vec::new(), Vec::new());
    let mut flags = |pairs: &[(&str, &str)]| {
        for (flag, file) in pairs {
            args.extend([flag.to_string(), format!("{TLS_DIR}/{file}")]);
        }
    };
    if role == Role::Coordinator {
        flags(&[
            ("--tls-cert", "server/tls.crt"),
            ("--tls-key", "server/tls.key"),
        ]);
        volumes.push(secret_volume("tls-server", &tls.server_secret_ref.name));
        mounts.push(mount("tls-server", "server"));
        if let Some(ca) = &tls.client_ca_secret_ref {
            flags(&[("--tls-client-ca", "client-ca/ca.crt")]);
            volumes.push(secret_volume("tls-client-ca", &ca.name));
            mounts.push(mount("tls-client-ca", "client-ca"));
        }
    }
    if let Some(secret) = &tls.cluster_secret_ref {
        flags(&[
            ("--cluster-ca", "cluster/ca.crt"),
            ("--cluster-cert", "cluster/tls.crt"),
            ("--cluster-key", "cluster/tls.key"),
        ]);
        volumes.push(secret_volume("tls-cluster", &secret.name));
        mounts.push(mount("tls-cluster", "cluster"));
    }
    (args, volumes, mounts)
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    }
}

fn claim(cluster: &RuLakeCluster, storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(labels(cluster, None)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    storage.size.clone(),
                )])),
                ..Default::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

struct PodParts {
    role: Role,
    command: Option<Vec<String>>,
    args: Vec<String>,
    ports: Vec<ContainerPort>,
    credentials: bool,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// A PVC named `data` backs the data directory; otherwise an emptyDir.
    persistent_data: bool,
}

fn pod_template(cluster: &RuLakeCluster, parts: PodParts) -> PodTemplateSpec {
    let (tls_args, mut volumes, mut mounts) = tls(cluster, parts.role);
    let mut args = parts.args;
    args.extend(tls_args);
    let metrics_port = cluster.spec.monitoring.metrics_port;
    let mut ports = parts.ports;
    ports.push(port("metrics", metrics_port));
    mounts.push(mount("data", DATA_DIR));
    mounts.push(mount("tmp", "/tmp"));
    if !parts.persistent_data {
        volumes.push(empty_dir("data"));
    }
    volumes.push(empty_dir("tmp"));
    let mut pod_labels = labels(cluster, Some(parts.role));
    pod_labels.extend(selector_labels(cluster, parts.role));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(BTreeMap::from([(
                "rulake.io/config-checksum".to_string(),
                config_checksum(cluster),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            security_context: Some(pod_security()),
            termination_grace_period_seconds: Some(60),
            containers: vec![Container {
                name: "rulake".into(),
                image: Some(cluster.spec.image.clone()),
                image_pull_policy: cluster.spec.image_pull_policy.clone(),
                command: parts.command,
                args: Some(args),
                env: Some(vec![pod_name_env()]),
                env_from: Some(env_from(cluster, parts.credentials)),
                ports: Some(ports),
                readiness_probe: Some(http_probe("/readyz", 5, 5)),
                liveness_probe: Some(http_probe("/healthz", 15, 10)),
                resources: parts.resources,
                security_context: Some(container_security()),
                volume_mounts: Some(mounts),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
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

/// The meta StatefulSet: `meta.replicas` Raft voters, started in parallel
/// (an ordered start would wait forever for a quorum).
pub fn meta_statefulset(cluster: &RuLakeCluster) -> StatefulSet {
    let ns = cluster.namespace().unwrap_or_else(|| "default".into());
    let svc = role_name(cluster, Role::Meta);
    let peers = meta_addresses(cluster)
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    // The Raft id is the ordinal + 1 (ids start at 1). `$$` is how a
    // container command escapes `$(`, which Kubernetes would expand.
    let script = format!(
        "exec rulake meta --id $$(( ${{HOSTNAME##*-}} + 1 )) --listen 0.0.0.0:{RAFT_PORT} \
         --advertise ${{HOSTNAME}}.{svc}.{ns}.svc:{RAFT_PORT} --peers {peers} --data-dir {DATA_DIR}/meta \
         --metrics-listen $RULAKE_METRICS_LISTEN \"$@\""
    );
    let template = pod_template(
        cluster,
        PodParts {
            role: Role::Meta,
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                script,
                "rulake-meta".into(),
            ]),
            args: Vec::new(),
            ports: vec![port("raft", i32::from(RAFT_PORT))],
            credentials: false,
            resources: cluster.spec.meta.resources.clone(),
            persistent_data: true,
        },
    );
    StatefulSet {
        metadata: meta(cluster, svc.clone(), Some(Role::Meta)),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.spec.meta.replicas),
            service_name: Some(svc),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster, Role::Meta)),
                ..LabelSelector::default()
            },
            template,
            volume_claim_templates: Some(vec![claim(cluster, &cluster.spec.meta.storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Arguments of a role serving gRPC on [`GRPC_PORT`] (shard, coordinator):
/// where it listens and keeps its files, the meta group, the metrics port,
/// then `extra`.
fn grpc_role_args(role: &str, extra: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        role.into(),
        "--listen".into(),
        format!("0.0.0.0:{GRPC_PORT}"),
        "--data-dir".into(),
        DATA_DIR.into(),
        "--meta".into(),
        "$(RULAKE_META)".into(),
        "--metrics-listen".into(),
        "$(RULAKE_METRICS_LISTEN)".into(),
    ];
    args.extend(extra);
    args
}

/// The shard StatefulSet with `replicas` pods. The reconciler decides
/// `replicas`: it only shrinks after the removed nodes are drained.
pub fn shard_statefulset(cluster: &RuLakeCluster, replicas: i32, cache_bytes: u64) -> StatefulSet {
    let svc = role_name(cluster, Role::Shard);
    let ns = cluster.namespace().unwrap_or_else(|| "default".into());
    let template = pod_template(
        cluster,
        PodParts {
            role: Role::Shard,
            command: None,
            args: grpc_role_args(
                "shard",
                [
                    "--cache-bytes".into(),
                    cache_bytes.to_string(),
                    // The node id is the pod's ordinal + 1, as for meta members.
                    "--node-id".into(),
                    "$(POD_NAME)".into(),
                    "--advertise".into(),
                    format!("$(POD_NAME).{svc}.{ns}.svc:{GRPC_PORT}"),
                ],
            ),
            ports: vec![port("grpc", i32::from(GRPC_PORT))],
            credentials: true,
            resources: cluster.spec.shards.resources.clone(),
            persistent_data: cluster.spec.shards.storage.is_some(),
        },
    );
    StatefulSet {
        metadata: meta(cluster, svc.clone(), Some(Role::Shard)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(svc),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster, Role::Shard)),
                ..LabelSelector::default()
            },
            template,
            volume_claim_templates: cluster
                .spec
                .shards
                .storage
                .as_ref()
                .map(|s| vec![claim(cluster, s)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The coordinator Deployment.
pub fn coordinator_deployment(cluster: &RuLakeCluster) -> Deployment {
    let template = pod_template(
        cluster,
        PodParts {
            role: Role::Coordinator,
            command: None,
            args: grpc_role_args(
                "coordinator",
                cluster
                    .spec
                    .managed_url
                    .iter()
                    .flat_map(|url| ["--managed-url".to_string(), url.clone()]),
            ),
            ports: vec![port("grpc", i32::from(GRPC_PORT))],
            credentials: true,
            resources: cluster.spec.coordinators.resources.clone(),
            persistent_data: false,
        },
    );
    Deployment {
        metadata: meta(
            cluster,
            role_name(cluster, Role::Coordinator),
            Some(Role::Coordinator),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(cluster.spec.coordinators.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster, Role::Coordinator)),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// At most one pod of `role` voluntarily disrupted at a time: a Raft group
/// keeps its quorum, and shards lose at most one replica of a partition.
pub fn pod_disruption_budget(cluster: &RuLakeCluster, role: Role) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(cluster, role_name(cluster, role), Some(role)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster, role)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The prometheus-operator ServiceMonitor kind.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// Name of the CRD whose presence switches the ServiceMonitor on.
pub const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// A ServiceMonitor scraping the `metrics` port of every RuLake Service of
/// the cluster.
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
            "endpoints": [{ "port": "metrics", "path": "/metrics", "interval": "30s" }],
        }
    });
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_bytes() {
        let q = |s: &str| quantity_bytes(&Quantity(s.into()));
        assert_eq!(q("4Gi"), Some(4 << 30));
        assert_eq!(q("512Mi"), Some(512 << 20));
        assert_eq!(q("1.5Gi"), Some(3 << 29));
        assert_eq!(q("2G"), Some(2_000_000_000));
        assert_eq!(q("1e9"), Some(1_000_000_000));
        assert_eq!(q("1000"), Some(1000));
        assert_eq!(q("100m"), None, "milli-bytes are not bytes");
        assert_eq!(q("0.5"), None);
        assert_eq!(q("lots"), None);
    }

    /// Coordinators keep their files under the mounted data directory (the
    /// root filesystem is read-only) and write managed collections where
    /// shards can read them.
    #[test]
    fn coordinators_get_their_data_dir_and_the_managed_url() {
        let mut cluster = crate::fixtures::cluster(3);
        let args = |c: &RuLakeCluster| {
            coordinator_deployment(c)
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .containers[0]
                .args
                .clone()
                .unwrap()
        };
        let flag = |args: &[String], f: &str| {
            args.iter()
                .position(|a| a == f)
                .map(|i| args[i + 1].clone())
        };
        assert_eq!(
            flag(&args(&cluster), "--data-dir").as_deref(),
            Some(DATA_DIR)
        );
        assert_eq!(flag(&args(&cluster), "--managed-url"), None);
        cluster.spec.managed_url = Some("s3://lake/rulake-managed/".into());
        assert_eq!(
            flag(&args(&cluster), "--managed-url").as_deref(),
            Some("s3://lake/rulake-managed/")
        );
    }

    /// The API's certificate goes to coordinators only (meta and shard
    /// processes take no `--tls-cert`); the cluster's goes to every role.
    #[test]
    fn tls_flags_follow_the_role() {
        use crate::crd::{SecretRef, TlsSpec};
        let mut cluster = crate::fixtures::cluster(3);
        cluster.spec.tls = Some(TlsSpec {
            server_secret_ref: SecretRef { name: "api".into() },
            client_ca_secret_ref: None,
            cluster_secret_ref: Some(SecretRef {
                name: "members".into(),
            }),
        });
        let container = |t: PodTemplateSpec| t.spec.unwrap().containers.remove(0);
        let pods = [
            (
                Role::Meta,
                container(meta_statefulset(&cluster).spec.unwrap().template),
            ),
            (
                Role::Shard,
                container(
                    shard_statefulset(&cluster, 3, 1 << 30)
                        .spec
                        .unwrap()
                        .template,
                ),
            ),
            (
                Role::Coordinator,
                container(coordinator_deployment(&cluster).spec.unwrap().template),
            ),
        ];
        for (role, c) in pods {
            let args = c.args.unwrap_or_default();
            let has = |flag: &str| args.iter().any(|a| a == flag);
            for flag in ["--cluster-ca", "--cluster-cert", "--cluster-key"] {
                assert!(has(flag), "{role:?} lacks {flag}: {args:?}");
            }
            assert_eq!(
                has("--tls-cert"),
                role == Role::Coordinator,
                "{role:?}: {args:?}"
            );
            let mounts = c.volume_mounts.unwrap();
            assert!(mounts
                .iter()
                .any(|m| m.mount_path == format!("{TLS_DIR}/cluster")));
        }
    }
}
