//! The pod template every role runs in. One function builds it for all
//! three roles so that what must hold for each (a non-root, read-only,
//! capability-free container with no service-account token; probes on the
//! metrics port; the config checksum that rolls pods on a config change;
//! TLS and auth material, from `security`; the user's scheduling and
//! identity fields, passed through as given) is written once; a role only
//! says what differs (`PodParts`).

use super::{config_map, config_name, labels, security, selector_labels, Role, DATA_DIR};
use crate::crd::{PodOptions, RuLakeCluster};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretEnvSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

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

pub(super) fn port(name: &str, port: i32) -> ContainerPort {
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

/// How long a role may take to start before it is restarted: a shard
/// registers (up to 60 s while the catalog elects a leader) and then
/// catches up (up to 30 s) before `/healthz` answers; a meta member may
/// replay its log. Liveness starts only after this probe passed once, so
/// a slow start is never taken for a hang.
pub const STARTUP_SECONDS: i32 = 180;

fn startup_probe() -> Probe {
    let period = 5;
    Probe {
        failure_threshold: Some(STARTUP_SECONDS / period),
        ..http_probe("/healthz", 0, period)
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

/// How long a pod has to stop once asked: a coordinator's preStop pause or
/// a shard's drain (at most `SHARD_DRAIN_SECONDS`), then the server's own
/// shutdown (background work finishes within 10 s), with room to spare.
pub(super) const TERMINATION_GRACE_SECONDS: i64 = 60;

/// A preStop hook that waits `seconds` before Kubernetes sends SIGTERM.
fn pause_before_stop(seconds: i64) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sleep".into(), seconds.to_string()]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// A list field as the pod spec has it: absent rather than empty.
fn unless_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

pub(super) struct PodParts<'a> {
    pub role: Role,
    pub command: Option<Vec<String>>,
    pub args: Vec<String>,
    pub ports: Vec<ContainerPort>,
    pub credentials: bool,
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// A PVC named `data` backs the data directory; otherwise an emptyDir.
    pub persistent_data: bool,
    /// The role's scheduling and identity fields, from its spec.
    pub options: &'a PodOptions,
    /// The affinity when `options` has none.
    pub default_affinity: Option<Affinity>,
    /// Seconds a stopping pod keeps serving before SIGTERM, if any.
    pub pre_stop_seconds: Option<i64>,
}

pub(super) fn pod_template(cluster: &RuLakeCluster, parts: PodParts) -> PodTemplateSpec {
    let security::Parts {
        args: security_args,
        mut volumes,
        mut mounts,
    } = security::parts(cluster, parts.role);
    let mut args = parts.args;
    args.extend(security_args);
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
    let options = parts.options;
    let mut annotations = options.pod_annotations.clone();
    annotations.insert(
        "rulake.io/config-checksum".to_string(),
        config_checksum(cluster),
    );
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            affinity: options.affinity.clone().or(parts.default_affinity),
            topology_spread_constraints: unless_empty(&options.topology_spread_constraints),
            node_selector: (!options.node_selector.is_empty())
                .then(|| options.node_selector.clone()),
            tolerations: unless_empty(&options.tolerations),
            priority_class_name: options.priority_class_name.clone(),
            service_account_name: options.service_account_name.clone(),
            image_pull_secrets: unless_empty(&cluster.spec.image_pull_secrets),
            security_context: Some(pod_security()),
            // RuLake never calls the Kubernetes API: a token in the pod
            // would only be something to steal.
            automount_service_account_token: Some(false),
            // No `<SERVICE>_PORT`-style variables: they leak the
            // namespace's Services and could shadow `RULAKE_*` settings.
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            containers: vec![Container {
                name: "rulake".into(),
                image: Some(cluster.spec.image.clone()),
                image_pull_policy: cluster.spec.image_pull_policy.clone(),
                command: parts.command,
                args: Some(args),
                env: Some(vec![pod_name_env()]),
                env_from: Some(env_from(cluster, parts.credentials)),
                ports: Some(ports),
                startup_probe: Some(startup_probe()),
                readiness_probe: Some(http_probe("/readyz", 0, 5)),
                liveness_probe: Some(http_probe("/healthz", 0, 10)),
                lifecycle: parts.pre_stop_seconds.map(pause_before_stop),
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
