//! Where a role's pods run and as whom: the scheduling and identity fields
//! every role takes (`spec.meta`, `spec.shards`, `spec.coordinators`).
//!
//! They are per role, not per cluster, because the roles want different
//! things: shards hold the caches and belong on memory-rich nodes (often
//! tainted for them), meta members must spread so one node cannot take the
//! quorum, and only the roles that read the lake (shards, coordinators)
//! need a ServiceAccount a cloud maps to object-store credentials. Affinity
//! and topology spread name label selectors, which are per role anyway.
//!
//! The fields are flattened into the role's spec (`spec.shards.tolerations`,
//! not `spec.shards.pod.tolerations`), as users of other operators write
//! them, and are passed through to the pod template unchanged; the one
//! default the operator adds is a soft anti-affinity for meta members
//! (`crate::manifests`).

use k8s_openapi::api::core::v1::{Affinity, Toleration, TopologySpreadConstraint};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Scheduling and identity of one role's pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// Node affinity, pod affinity and anti-affinity of the role's pods.
    /// Meta members default to preferring distinct nodes
    /// (`kubernetes.io/hostname`) when this is unset; setting it replaces
    /// that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the role's pods spread over zones or nodes. Select the role's
    /// pods with `app.kubernetes.io/instance: <cluster>` and
    /// `app.kubernetes.io/component: <meta|shard|coordinator>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node labels the role's pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the role's pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the role's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Extra annotations on the role's pods. The operator's own
    /// (`rulake.io/...`) win over a key given here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// ServiceAccount the role's pods run as, e.g. one a cloud's workload
    /// identity maps to object-store credentials; the namespace's
    /// `default` when unset. RuLake never calls the Kubernetes API, so
    /// no API token is mounted either way (workload-identity webhooks
    /// project their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
}
