//! The workloads: a StatefulSet each for meta and shards (stable names and
//! volumes: a Raft member and a shard node are each one identity) and a
//! Deployment for the stateless coordinators.
//!
//! What differs per role beyond flags and ports: meta members prefer
//! distinct nodes unless the user gives an affinity (three voters on one
//! node lose the quorum with that node). How each role stops:
//!
//! - A coordinator pauses before SIGTERM (`PRE_STOP_SECONDS`) so the client
//!   Service drops the pod before it stops accepting calls, then finishes
//!   the calls in flight.
//! - A shard drains on SIGTERM itself (no preStop hook): it leaves routing
//!   (coordinators send new scans to other replicas), waits for the scans
//!   already sent, then exits, within `SHARD_DRAIN_SECONDS`. That moves no
//!   partition: a restarted shard (an upgrade, an eviction) comes back to
//!   the partitions it had. Only a scale-down moves partitions, through the
//!   operator's admin drain before the StatefulSet shrinks.
//! - The meta group keeps a silent shard's partitions where they are for
//!   `SHARD_GRACE_SECONDS` (longer than a pod takes to restart), so a
//!   rolling restart moves nothing; a shard gone for longer has its
//!   partitions placed elsewhere (docs/operations.md, "Disruptions").

use super::pod::{pod_template, port, PodParts};
use super::{labels, meta, meta_addresses, role_name, role_selector, Role, DATA_DIR, RAFT_PORT};
use crate::admin::GRPC_PORT;
use crate::crd::{RuLakeCluster, StorageSpec};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodTemplateSpec, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Seconds a coordinator keeps serving once asked to stop, before SIGTERM
/// (see the module doc).
pub const PRE_STOP_SECONDS: i64 = 5;

/// Longest a shard keeps answering after SIGTERM while coordinators route
/// around it (`rulake shard --drain-ms`); with replication 2 or more it is
/// quiet, and exits, after about 1.5 s.
pub const SHARD_DRAIN_SECONDS: i64 = 15;

/// How long the meta group waits for a silent shard before placing its
/// partitions elsewhere (`rulake meta --shard-grace-ms`): longer than a
/// shard pod takes to stop and start again, as Elasticsearch delays
/// re-allocation after a node leaves for a minute by default.
pub const SHARD_GRACE_SECONDS: i64 = 60;

// A shard's whole stop (drain, then the server's 10 s shutdown) leaves most
// of the grace period for its start.
const _: () = assert!(SHARD_GRACE_SECONDS >= 2 * (SHARD_DRAIN_SECONDS + 10));

/// The meta members' affinity when the user gives none: prefer nodes
/// without another member of the cluster. Preferred, not required, so a
/// cluster smaller than the group still schedules.
fn spread_meta_members(cluster: &RuLakeCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(role_selector(cluster, Role::Meta)),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
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
         --metrics-listen $RULAKE_METRICS_LISTEN --shard-grace-ms {grace_ms} \"$@\"",
        grace_ms = SHARD_GRACE_SECONDS * 1000
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
            options: &cluster.spec.meta.pod,
            default_affinity: Some(spread_meta_members(cluster)),
            pre_stop_seconds: None,
        },
    );
    let storage = Some(&cluster.spec.meta.storage);
    statefulset(
        cluster,
        Role::Meta,
        cluster.spec.meta.replicas,
        template,
        storage,
    )
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
                    // The node id is the pod name, as the admin API's drain
                    // and admission calls name the node.
                    "--node-id".into(),
                    "$(POD_NAME)".into(),
                    "--advertise".into(),
                    format!("$(POD_NAME).{svc}.{ns}.svc:{GRPC_PORT}"),
                    "--drain-ms".into(),
                    (SHARD_DRAIN_SECONDS * 1000).to_string(),
                ],
            ),
            ports: vec![port("grpc", i32::from(GRPC_PORT))],
            credentials: true,
            resources: Some(super::shard_resources(
                cluster.spec.shards.resources.clone(),
                cache_bytes,
            )),
            persistent_data: cluster.spec.shards.storage.is_some(),
            options: &cluster.spec.shards.pod,
            default_affinity: None,
            pre_stop_seconds: None,
        },
    );
    let storage = cluster.spec.shards.storage.as_ref();
    statefulset(cluster, Role::Shard, replicas, template, storage)
}

/// The StatefulSet of `role`, named like its headless Service, with a
/// `data` volume claim per pod when `storage` is given. Pods start in
/// parallel: meta members need each other for a quorum, and shard nodes
/// join placement one by one through admission anyway.
fn statefulset(
    cluster: &RuLakeCluster,
    role: Role,
    replicas: i32,
    template: PodTemplateSpec,
    storage: Option<&StorageSpec>,
) -> StatefulSet {
    let name = role_name(cluster, role);
    StatefulSet {
        metadata: meta(cluster, name.clone(), Some(role)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name),
            pod_management_policy: Some("Parallel".into()),
            selector: role_selector(cluster, role),
            template,
            volume_claim_templates: storage.map(|s| vec![claim(cluster, s)]),
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
            args: grpc_role_args("coordinator", coordinator_args(cluster)),
            ports: vec![port("grpc", i32::from(GRPC_PORT))],
            credentials: true,
            resources: cluster.spec.coordinators.resources.clone(),
            persistent_data: false,
            options: &cluster.spec.coordinators.pod,
            default_affinity: None,
            pre_stop_seconds: Some(PRE_STOP_SECONDS),
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
            selector: role_selector(cluster, Role::Coordinator),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The coordinator's own arguments: the managed URL, the backup location
/// and the audit log.
fn coordinator_args(cluster: &RuLakeCluster) -> Vec<String> {
    let mut args: Vec<String> = cluster
        .spec
        .managed_url
        .iter()
        .flat_map(|url| ["--managed-url".to_string(), url.clone()])
        .collect();
    if let Some(backup) = &cluster.spec.backup {
        args.extend(["--backup-allow".into(), backup.location.clone()]);
    }
    if let Some(audit) = &cluster.spec.coordinators.audit {
        // To standard output (logs go to standard error): a pod's files
        // die with it, its output stream is what the cluster collects.
        args.extend(["--audit-log".into(), "-".into()]);
        if audit.reads {
            args.push("--audit-reads".into());
        }
    }
    args
}

/// One pod a roll replaces: its role and its ordinal (for coordinators,
/// the index of one of the Deployment's pods).
pub type RolloutStep = (Role, i32);

/// The order a change of the pod template (a new image) replaces pods in,
/// one at a time, each once the one before is Ready again: the meta
/// members, then the shards, then the coordinators; within a StatefulSet
/// the highest ordinal first, which is what its `RollingUpdate` does.
/// Servers before their clients, so a newer catalog serves older shards
/// and coordinators during the roll, never the other way round. A shard
/// drains on SIGTERM and keeps its partitions; a coordinator pod is
/// replaced by a new one that is Ready before the old one stops (the
/// Deployment's default surge of one pod).
pub fn rollout_order(cluster: &RuLakeCluster, shards: i32) -> Vec<RolloutStep> {
    let down = |role, n: i32| (0..n).rev().map(move |i| (role, i));
    down(Role::Meta, cluster.spec.meta.replicas)
        .chain(down(Role::Shard, shards))
        .chain((0..cluster.spec.coordinators.replicas).map(|i| (Role::Coordinator, i)))
        .collect()
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
