//! What a role's pod gets for security: TLS and auth flags with the Secret
//! volumes behind them, the Secrets the operator issues for mutual TLS,
//! and the NetworkPolicies around the internal ports.
//!
//! Every Secret is mounted read-only, readable by the pod's group only
//! (mode 0440 with `fsGroup` 65532), and only where it is used: the API's
//! certificate and the auth config on coordinators, the cluster
//! certificate on every role. An issued cluster Secret holds every role's
//! key, so each role mounts only its own (`items`), under the same file
//! names a user's cert-manager Secret has, so the flags are the same in
//! both cases.

use super::{labels, meta, Role, RAFT_PORT};
use crate::admin::GRPC_PORT;
use crate::crd::{ClusterTls, RuLakeCluster};
use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Where TLS material is mounted.
pub(super) const TLS_DIR: &str = "/etc/rulake/tls";
/// Where the auth config Secret is mounted.
pub(super) const AUTH_DIR: &str = "/etc/rulake/auth";
/// Secret files: read-only, for the pod's group (`fsGroup`) only.
const SECRET_MODE: i32 = 0o440;
/// Annotation on the issued certificates' Secret: since when its CA bundle
/// has held the current CA (the certificates move to a new CA only once
/// every pod has had time to trust it).
pub const CA_TRUSTED_SINCE: &str = "rulake.io/ca-trusted-since";

/// Name of the Secret holding the cluster CA the operator issued (its key
/// included; never mounted).
pub fn cluster_ca_secret_name(cluster: &RuLakeCluster) -> String {
    format!("{}-cluster-ca", cluster.name_any())
}

/// Name of the Secret holding the CA bundle and each role's issued
/// certificate and key (`ca.crt`, `<role>.crt`, `<role>.key`).
pub fn cluster_certs_secret_name(cluster: &RuLakeCluster) -> String {
    format!("{}-cluster-certs", cluster.name_any())
}

/// An operator-owned Opaque Secret of the cluster.
pub fn owned_secret(
    cluster: &RuLakeCluster,
    name: String,
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let mut metadata = meta(cluster, name, None);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

/// Flags, volumes and mounts a role's pod gets from `spec.tls` and
/// `spec.auth`.
#[derive(Default)]
pub(super) struct Parts {
    pub args: Vec<String>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

impl Parts {
    fn secret(&mut self, volume: &str, secret: &str, items: Option<Vec<KeyToPath>>, dir: &str) {
        self.volumes.push(Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                default_mode: Some(SECRET_MODE),
                items,
                ..Default::default()
            }),
            ..Volume::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    fn flags(&mut self, dir: &str, pairs: &[(&str, &str)]) {
        for (flag, file) in pairs {
            self.args
                .extend([flag.to_string(), format!("{dir}/{file}")]);
        }
    }
}

/// The security parts of `role`'s pod: the API's TLS and authentication on
/// coordinators, mutual TLS on every role unless it is turned off.
pub(super) fn parts(cluster: &RuLakeCluster, role: Role) -> Parts {
    let mut parts = Parts::default();
    let spec = &cluster.spec;
    if role == Role::Coordinator {
        if let Some(server) = spec.api_tls() {
            let dir = format!("{TLS_DIR}/server");
            parts.flags(&dir, &[("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")]);
            parts.secret("tls-server", &server.name, None, &dir);
        }
        if let Some(ca) = spec
            .tls
            .as_ref()
            .and_then(|t| t.client_ca_secret_ref.as_ref())
        {
            let dir = format!("{TLS_DIR}/client-ca");
            parts.flags(&dir, &[("--tls-client-ca", "ca.crt")]);
            parts.secret("tls-client-ca", &ca.name, None, &dir);
        }
        let auth = spec.auth.as_ref();
        if let Some(secret) = auth.and_then(|a| a.secret_ref.as_ref()) {
            parts.flags(AUTH_DIR, &[("--auth-config", &secret.key)]);
            parts.secret("auth", &secret.name, None, AUTH_DIR);
        } else if auth.is_some_and(|a| a.allow_anonymous) {
            parts.args.push("--allow-anonymous".into());
        }
    }
    let dir = format!("{TLS_DIR}/cluster");
    let cluster_flags = [
        ("--cluster-ca", "ca.crt"),
        ("--cluster-cert", "tls.crt"),
        ("--cluster-key", "tls.key"),
    ];
    match spec.cluster_tls() {
        ClusterTls::Provided(secret) => {
            parts.flags(&dir, &cluster_flags);
            parts.secret("tls-cluster", &secret.name, None, &dir);
        }
        ClusterTls::Issued => {
            parts.flags(&dir, &cluster_flags);
            let item = |key: String, path: &str| KeyToPath {
                key,
                path: path.into(),
                mode: None,
            };
            let r = role.as_str();
            let items = vec![
                item("ca.crt".into(), "ca.crt"),
                item(format!("{r}.crt"), "tls.crt"),
                item(format!("{r}.key"), "tls.key"),
            ];
            let secret = cluster_certs_secret_name(cluster);
            parts.secret("tls-cluster", &secret, Some(items), &dir);
        }
        // The roles refuse to start without the files unless told, by
        // name, that plaintext is meant.
        ClusterTls::Plaintext => parts.args.push("--cluster-insecure".into()),
    }
    parts
}

/// Name of the NetworkPolicy guarding `role`'s internal port.
pub fn network_policy_name(cluster: &RuLakeCluster, role: Role) -> String {
    format!("{}-{}-internal", cluster.name_any(), role.as_str())
}

/// The pods of this cluster, whatever their role: the only peers allowed
/// on internal ports. The component must be one of the three roles, so
/// another pod of the same instance label (say, an operator release that
/// happens to share the cluster's name) is not a peer.
pub fn cluster_peers(cluster: &RuLakeCluster) -> LabelSelector {
    let mut match_labels = labels(cluster, None);
    match_labels.remove("app.kubernetes.io/part-of");
    LabelSelector {
        match_labels: Some(match_labels),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app.kubernetes.io/component".into(),
            operator: "In".into(),
            values: Some(
                [Role::Meta, Role::Shard, Role::Coordinator]
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect(),
            ),
        }]),
    }
}

/// The NetworkPolicies of a cluster: on meta pods the Raft and catalog
/// port, on shard pods the `ShardService` port, each admitted only from
/// the cluster's own pods in its namespace; the metrics port stays open
/// (Prometheus, probes). Coordinators get none: their public port is open
/// to every client anyway, and a policy selecting them would only switch
/// off whatever else the user's own policies allow.
pub fn network_policies(cluster: &RuLakeCluster) -> Vec<NetworkPolicy> {
    let metrics = cluster.spec.monitoring.metrics_port;
    [
        (Role::Meta, i32::from(RAFT_PORT)),
        (Role::Shard, i32::from(GRPC_PORT)),
    ]
    .into_iter()
    .map(|(role, internal)| {
        let port = |p: i32| NetworkPolicyPort {
            port: Some(IntOrString::Int(p)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        };
        NetworkPolicy {
            metadata: meta(cluster, network_policy_name(cluster, role), Some(role)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(super::role_selector(cluster, role)),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![
                    NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            pod_selector: Some(cluster_peers(cluster)),
                            ..NetworkPolicyPeer::default()
                        }]),
                        ports: Some(vec![port(internal)]),
                    },
                    NetworkPolicyIngressRule {
                        from: None,
                        ports: Some(vec![port(metrics)]),
                    },
                ]),
                ..NetworkPolicySpec::default()
            }),
        }
    })
    .collect()
}
