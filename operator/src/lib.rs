//! RuLake's Kubernetes operator.
//!
//! It turns two custom resources into a running RuLake: a `RuLakeCluster`
//! becomes StatefulSets (meta, shards), a Deployment (coordinators),
//! Services, a ConfigMap, PodDisruptionBudgets, NetworkPolicies, the
//! Secrets of its mutual TLS and optionally a ServiceMonitor; a `RuLakeCollection` becomes a collection in that
//! cluster's catalog. Where Kubernetes objects are not enough (draining a
//! shard before its pod goes, admitting a new one into placement, creating
//! a collection) it calls the cluster's `rulake.v1` admin API.
//!
//! It is the only crate that depends on `kube` and `k8s-openapi`.
//!
//! # Layout
//! - [`crd`]: the resource types; `crdgen` prints their CRDs.
//! - [`admin`]: the calls into a RuLake cluster, behind a trait so tests
//!   can stand in for the cluster.
//! - [`controller`]: the two reconcilers and the controller loop.
//! - [`manifests`]: the Kubernetes objects a cluster is made of (pure
//!   functions of the spec), NetworkPolicies and Secret mounts included.
//! - [`certs`]: the cluster CA and role certificates the operator issues
//!   and rotates for mutual TLS between the roles.
//! - [`scale`]: the admin-side steps of a shard count change (drain
//!   before shrinking, admit once Ready), shared with the container harness.
//! - [`schedule`]: cron expressions of scheduled backups.
//! - [`rbac`]: the permissions the reconcilers need, which the chart's
//!   ClusterRole (or, watching one namespace, Role) grants exactly, and
//!   the leader Lease's, granted in the operator's own namespace.
//! - [`leader`]: leader election over a Lease, so one replica reconciles.
//! - [`metrics`] and [`endpoints`]: the operator's own reconcile metrics,
//!   served with its liveness and readiness on one HTTP port.
//! - `fixtures` (tests only): a mocked API server and a fake cluster.

/// The Kubernetes API types the manifests are made of, for crates that
/// read them (the container harness) without owning the dependency.
pub use k8s_openapi as k8s;

pub mod admin;
pub mod certs;
pub mod controller;
pub mod crd;
pub mod endpoints;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod rbac;
pub mod scale;
pub mod schedule;

#[cfg(test)]
mod fixtures;

/// Everything that can fail while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The RuLake cluster's API failed a call.
    #[error("rulake API: {0}")]
    Admin(#[from] admin::AdminError),
    /// Adding or removing the collection finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A resource lacks something the API server always sets.
    #[error("resource has no {0}")]
    MissingField(&'static str),
    /// Issuing the cluster's certificates failed.
    #[error("cluster certificates: {0}")]
    Certificates(#[source] certs::CertError),
    /// A child object could not be serialised.
    #[error("serialising {kind}: {source}")]
    Serialize {
        /// The object's kind.
        kind: &'static str,
        /// What went wrong.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A low-cardinality label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin(_) => "admin",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
            Error::Certificates(_) => "certificates",
            Error::Serialize { .. } => "serialize",
        }
    }
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;
