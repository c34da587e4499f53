//! `RuLakeCluster`: one RuLake deployment (meta, shard and coordinator roles).

// Each `printcolumn(...)` repeats `type_` and friends; clippy takes the
// repeats for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{AuthSpec, PodOptions, TlsSpec};

/// Desired state of a RuLake cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rulake.io",
    version = "v1alpha1",
    kind = "RuLakeCluster",
    plural = "rulakeclusters",
    shortname = "rlc",
    namespaced,
    status = "RuLakeClusterStatus",
    derive = "PartialEq",
    doc = "A RuLake cluster: a Raft catalog (meta), cache-holding shard nodes and stateless coordinators.",
    scale(
        spec_replicas_path = ".spec.shards.replicas",
        status_replicas_path = ".status.shards.replicas",
        label_selector_path = ".status.shards.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".spec.shards.replicas"
    ),
    printcolumn(
        name = "Ready Shards",
        type_ = "integer",
        json_path = ".status.shards.ready"
    ),
    printcolumn(name = "Leader", type_ = "integer", json_path = ".status.metaLeader"),
    printcolumn(
        name = "Epoch",
        type_ = "integer",
        json_path = ".status.assignmentEpoch"
    ),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.backup.lastSuccessfulTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.auth)").message("spec.auth is required: name the auth config Secret (auth.secretRef, with auth.adminKeySecretRef), or set auth.allowAnonymous: true for development"))]
pub struct RuLakeClusterSpec {
    /// Container image holding the `rulake` binary, e.g. `rulake/rulake:0.1.0`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// When to pull the image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// Secrets in the cluster's namespace for pulling `image`, given to
    /// every role's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The Raft catalog group.
    pub meta: MetaSpec,
    /// Shard nodes: the caches of the lake's partitions.
    pub shards: ShardSpec,
    /// Coordinators: the query front end clients connect to.
    #[serde(default)]
    pub coordinators: CoordinatorSpec,
    /// Credentials for the object store holding the lake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
    /// Where managed collections' Parquet files go: an object-store prefix
    /// (`s3://bucket/rulake/`, `gs://...`, `az://...`) that every
    /// coordinator writes and every shard reads. Without it, coordinators
    /// write under their own data directory, which shard pods cannot read,
    /// so managed collections need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub managed_url: Option<String>,
    /// URL prefixes collections' sources may use (`s3://lake/tables/`,
    /// `gs://bucket/`), passed to coordinators and shards as
    /// `--source-allow`. The servers open nothing else a caller names;
    /// without it only managed collections can be created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub source_allow: Vec<String>,
    /// Authentication of the gRPC API. Required (an `Option` only so that
    /// objects stored before it existed still load and get a condition
    /// saying what to add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// TLS for the gRPC API (plaintext without `serverSecretRef`) and
    /// between the roles (mutual TLS with certificates the operator issues,
    /// unless `clusterSecretRef` names the user's or
    /// `insecureClusterPlaintext` turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Metrics scraping.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// Scheduled backups of the catalog and the managed files, which the
    /// operator asks a coordinator for (`CreateBackup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
}

/// When and where the operator backs the cluster up.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When, as a five-field cron expression read in UTC (`0 3 * * *`) or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// The parent location (a path or URL prefix, e.g.
    /// `s3://backups/rulake/`) under which each backup gets a location of
    /// its own, `<cluster>-<UTC time>`. Coordinators get it as
    /// `--backup-allow`, so it also allows restores from there.
    #[schemars(length(min = 1, max = 1024))]
    pub location: String,
    /// Stop scheduling backups (the field kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// The meta role: the Raft group holding the catalog and the placement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetaSpec {
    /// Raft voters: 3 or 5. Fixed at creation: the operator does not change
    /// Raft membership.
    #[x_kube(validation = Rule::new("self == 3 || self == 5").message("meta.replicas must be 3 or 5"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("meta.replicas is immutable"))]
    pub replicas: i32,
    /// Persistent volume of each member (Raft log and snapshots).
    /// Immutable: it is the StatefulSet's volume claim template, which
    /// Kubernetes does not let change (docs/operations.md says how to grow
    /// a volume in place).
    #[x_kube(validation = Rule::new("self == oldSelf").message("meta.storage is immutable: it is the StatefulSet's volume claim template (see docs/operations.md to grow volumes in place)"))]
    pub storage: StorageSpec,
    /// CPU and memory of each member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and identity of the members' pods.
    #[serde(flatten)]
    pub pod: PodOptions,
}

/// The shard role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.storage) == has(oldSelf.storage) && (!has(self.storage) || self.storage == oldSelf.storage)").message("shards.storage is immutable, and cannot be added or removed: it is the StatefulSet's volume claim template (see docs/operations.md to grow volumes in place)"))]
pub struct ShardSpec {
    /// Shard nodes. Scaling down drains the highest-numbered nodes first.
    #[schemars(range(min = 1, max = 1024))]
    pub replicas: i32,
    /// Memory each node may spend on RaBitQ caches (`--cache-bytes`). Keep
    /// it below the container's memory limit.
    pub cache_memory: Quantity,
    /// Persistent volume of each node (the persisted partition cache);
    /// an emptyDir when unset. Immutable, like `meta.storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// CPU and memory of each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and identity of the shard pods.
    #[serde(flatten)]
    pub pod: PodOptions,
}

/// The coordinator role.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorSpec {
    /// Coordinator pods behind the client Service.
    #[schemars(range(min = 1, max = 256))]
    pub replicas: i32,
    /// CPU and memory of each coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The audit log: when set, every coordinator writes one hash-chained
    /// JSON line per call that changes something (and per refusal) to its
    /// standard output, for the cluster's log collector
    /// (docs/security.md, "Audit log").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSpec>,
    /// Scheduling and identity of the coordinator pods.
    #[serde(flatten)]
    pub pod: PodOptions,
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        Self {
            replicas: 2,
            resources: None,
            audit: None,
            pod: PodOptions::default(),
        }
    }
}

/// What the coordinators' audit log records.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// Record reads (searches, describes) too, not only changes and
    /// refusals.
    #[serde(default)]
    pub reads: bool,
}

/// A persistent volume claim template.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, e.g. `10Gi`.
    pub size: Quantity,
    /// Storage class; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// A Secret in the cluster's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Object-store access for every role that reads the lake.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// A Secret whose keys become environment variables of the shard and
    /// coordinator containers, e.g. `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`.
    pub credentials_secret_ref: SecretRef,
}

/// Metrics scraping.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Port of `/metrics`, `/healthz` and `/readyz` on every pod.
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
    /// Create a prometheus-operator ServiceMonitor (only when that CRD is
    /// installed; otherwise a condition says it was skipped).
    pub service_monitor: bool,
    /// Extra labels on the ServiceMonitor, to match a Prometheus's
    /// `serviceMonitorSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_monitor_labels: BTreeMap<String, String>,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            metrics_port: 9090,
            service_monitor: false,
            service_monitor_labels: BTreeMap::new(),
        }
    }
}

/// Observed state of a RuLake cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuLakeClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Meta members.
    #[serde(default)]
    pub meta: RoleStatus,
    /// Shard nodes; `replicas` and `selector` back the scale subresource.
    #[serde(default)]
    pub shards: ShardStatus,
    /// Coordinators.
    #[serde(default)]
    pub coordinators: RoleStatus,
    /// Raft id of the catalog's leader, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_leader: Option<u64>,
    /// Epoch of the partition assignment in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_epoch: Option<u64>,
    /// Scheduled backups, when `spec.backup` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
}

/// What the backup schedule did last and will do next.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The slot of the last backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last backup that succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Where the last backup that succeeded is (`rulake backup restore
    /// --from` takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_location: Option<String>,
    /// Files of the last backup that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_files: Option<u64>,
    /// Bytes of the last backup that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_bytes: Option<u64>,
    /// Why the last backup (or the schedule) failed; cleared by the next
    /// success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The next slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
}

/// Pod counts of one role.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Pods the workload runs.
    pub replicas: i32,
    /// Pods passing their readiness probe.
    pub ready: i32,
}

/// Shard counts, and how far placement has caught up with them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Pods the shard StatefulSet runs.
    pub replicas: i32,
    /// Pods passing their readiness probe.
    pub ready: i32,
    /// Shard ordinals `0..admitted` are in placement (admitted through the
    /// admin API); higher ordinals are waiting to be admitted or drained.
    pub admitted: i32,
    /// Label selector of the shard pods, for the scale subresource.
    #[serde(default)]
    pub selector: String,
}
