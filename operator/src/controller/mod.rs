//! The controller loop: one reconciler per resource kind, sharing a
//! [`Context`].
//!
//! Both reconcilers are level-based: each run reads what exists, applies
//! what should exist by server-side apply under one field manager, and
//! writes the status. Failures requeue with an exponential backoff per
//! object; a spec that cannot be served is reported as a condition and
//! waits for the next change, so it never loops.
//!
//! Every run of either reconciler is counted and timed into the
//! operator's [`Metrics`] here, around the reconcile functions, so they
//! stay free of bookkeeping.
//!
//! What the two reconcilers do alike lives here, once: server-side apply
//! (`apply` for children, `patch_status` for either resource's status
//! subresource) under the one field manager, so the operator owns the same
//! fields however it wrote them, and `report_unservable`, the one way a
//! spec that cannot be served is reported, and `admin_for`, the admin
//! client with the operator's credential for a cluster.

pub mod cluster;
pub mod collection;

use crate::admin::{AdminFactory, AdminKey, ClusterAdmin};
use crate::crd::{
    set_condition, set_not_ready, ConditionStatus, HasConditions, RuLakeCluster, RuLakeCollection,
    CONDITION_DEGRADED,
};
use crate::manifests::FIELD_MANAGER;
use crate::metrics::{Controller as Kind, Metrics};
use crate::Error;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First retry delay after a failed reconcile.
const BACKOFF_MIN: Duration = Duration::from_secs(5);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Admin clients of RuLake clusters.
    pub admins: Arc<dyn AdminFactory>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// The operator's own metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context publishing events as `rulake-operator`, with metrics of
    /// its own (see [`Context::with_metrics`]).
    pub fn new(client: Client, admins: Arc<dyn AdminFactory>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            admins,
            metrics: Arc::new(Metrics::default()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The context recording into `metrics` (the ones `/metrics` serves).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, not
    /// fatal (events are best effort).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing event failed");
        }
    }

    /// The delay before retrying `key` after one more failure.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = BACKOFF_MIN
            .saturating_mul(1 << (*n).min(10))
            .min(BACKOFF_MAX);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets `key`'s failures after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The backoff key of an object.
fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The namespace of a namespaced resource, which the API server always sets.
pub(crate) fn namespace<K: Resource>(obj: &K) -> crate::Result<String> {
    obj.namespace()
        .ok_or(Error::MissingField("metadata.namespace"))
}

/// Server-side apply under the operator's one field manager, forcing
/// conflicts: the operator owns what it applies, children and status alike.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `obj` (named `name`) under the operator's field
/// manager.
pub(crate) async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> crate::Result<K>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    Ok(api.patch(name, &apply_params(), &Patch::Apply(obj)).await?)
}

/// What the shared status code needs of a resource, which both RuLake
/// resources are: namespaced, with a status subresource that holds the
/// conventional conditions.
pub(crate) trait StatusResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + HasStatus<Status: Serialize + HasConditions>
    + Clone
    + Debug
    + DeserializeOwned
{
}

impl StatusResource for RuLakeCluster {}
impl StatusResource for RuLakeCollection {}

/// Writes `status` as the status subresource of `obj`, for either resource,
/// by server-side apply under the operator's field manager. Only the
/// status is sent, so a spec edit made meanwhile is never overwritten.
pub(crate) async fn patch_status<K: StatusResource>(
    client: &Client,
    obj: &K,
    status: &K::Status,
) -> crate::Result<()> {
    let api: Api<K> = Api::namespaced(client.clone(), &namespace(obj)?);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// A spec the operator cannot serve as it stands. Retrying would only
/// fail again, so it is reported (a Warning event and conditions) and the
/// object waits for the next change instead of looping.
pub(crate) struct Unservable {
    /// CamelCase reason, for the event and the conditions.
    pub reason: &'static str,
    /// The event's action (what the operator was doing).
    pub action: &'static str,
    /// What to fix.
    pub message: String,
    /// Whether `Degraded` is set too: the resource is not as asked, as
    /// opposed to merely not there yet.
    pub degraded: bool,
}

/// Reports `why` on `obj` and writes `status` with Ready and Progressing
/// False (and Degraded True when `why.degraded`); waits for a change.
pub(crate) async fn report_unservable<K: StatusResource>(
    ctx: &Context,
    obj: &K,
    mut status: K::Status,
    why: Unservable,
) -> crate::Result<Action> {
    let Unservable {
        reason,
        action,
        message,
        degraded,
    } = why;
    ctx.event(obj, EventType::Warning, reason, action, message.clone())
        .await;
    let generation = obj.meta().generation;
    let conditions = status.conditions_mut();
    set_not_ready(conditions, reason, &message, generation);
    if degraded {
        set_condition(
            conditions,
            CONDITION_DEGRADED,
            ConditionStatus::True,
            reason,
            &message,
            generation,
        );
    }
    patch_status(&ctx.client, obj, &status).await?;
    Ok(Action::await_change())
}

/// The admin client of `cluster`, presenting the API key its
/// `spec.auth.adminKeySecretRef` names. A Secret or key that is missing or
/// unusable gives a client whose every call fails saying so, which the
/// reconcilers report like an unreachable cluster; a Kubernetes API error
/// fails the run.
pub(crate) async fn admin_for(
    ctx: &Context,
    cluster: &RuLakeCluster,
) -> crate::Result<Arc<dyn ClusterAdmin>> {
    let reference = cluster
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.admin_key_secret_ref.as_ref());
    let Some(reference) = reference else {
        return Ok(ctx.admins.admin(cluster, None)?);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace(cluster)?);
    let (name, key) = (&reference.name, &reference.key);
    let problem = match secrets.get_opt(name).await? {
        None => format!("the admin key Secret {name} (spec.auth.adminKeySecretRef) does not exist"),
        Some(secret) => match secret.data.as_ref().and_then(|d| d.get(key)) {
            None => format!("the admin key Secret {name} has no key {key}"),
            Some(value) => match AdminKey::new(&value.0) {
                Ok(admin_key) => return Ok(ctx.admins.admin(cluster, Some(&admin_key))?),
                Err(e) => format!("the admin key in Secret {name}, key {key}: {e}"),
            },
        },
    };
    Ok(crate::admin::unreachable(problem))
}

/// Runs `run`, one reconcile of a `kind` controller, counting and timing
/// it into the context's metrics.
async fn measured(
    kind: Kind,
    ctx: Arc<Context>,
    run: impl Future<Output = crate::Result<Action>>,
) -> crate::Result<Action> {
    let started = Instant::now();
    let result = run.await;
    let error = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.reconciled(kind, started.elapsed(), error);
    result
}

/// Runs both controllers until a termination signal, over every namespace
/// or, with `namespace`, over that one only (the chart's namespaced mode:
/// a Role there is all the operator holds), with metrics of their own.
pub async fn run(client: Client, admins: Arc<dyn AdminFactory>, namespace: Option<String>) {
    run_with_metrics(client, admins, namespace, Arc::new(Metrics::default())).await;
}

/// [`run`], recording into `metrics`.
pub async fn run_with_metrics(
    client: Client,
    admins: Arc<dyn AdminFactory>,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
) {
    fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let ctx = Arc::new(Context::new(client.clone(), admins).with_metrics(metrics));
    let clusters = scoped::<RuLakeCluster>(&client, ns);
    let collections = scoped::<RuLakeCollection>(&client, ns);
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=rulake-operator");

    let cluster_controller =
        Controller::new(clusters.clone(), watcher::Config::default().any_semantic())
            .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
            .owns(scoped::<Deployment>(&client, ns), owned.clone())
            .owns(scoped::<Service>(&client, ns), owned.clone())
            .owns(scoped::<ConfigMap>(&client, ns), owned.clone())
            .owns(scoped::<NetworkPolicy>(&client, ns), owned.clone())
            .owns(scoped::<PodDisruptionBudget>(&client, ns), owned)
            .shutdown_on_signal()
            .run(
                |c, ctx| measured(Kind::Cluster, ctx.clone(), cluster::reconcile(c, ctx)),
                cluster::error_policy,
                ctx.clone(),
            )
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                    Err(e) => tracing::warn!(error = %e, "cluster reconcile failed"),
                }
            });

    // A collection follows its cluster: when the cluster changes (say it
    // scales, which bounds the replication factor), its collections are
    // checked again. The controller's own cache finds them.
    let collection_controller =
        Controller::new(collections, watcher::Config::default().any_semantic());
    let store = collection_controller.store();
    let collection_controller = collection_controller
        .watches(
            clusters,
            watcher::Config::default(),
            move |cluster: RuLakeCluster| {
                store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.namespace() == cluster.namespace()
                            && c.spec.cluster_ref.name == cluster.name_any()
                    })
                    .map(|c| ObjectRef::from(c.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(
            |c, ctx| measured(Kind::Collection, ctx.clone(), collection::reconcile(c, ctx)),
            collection::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(collection = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "collection reconcile failed"),
            }
        });

    tokio::join!(cluster_controller, collection_controller);
}

/// Requeue after a failure, backing off per object.
fn requeue_with_backoff<K: Resource>(obj: &K, error: &crate::Error, ctx: &Context) -> Action {
    let delay = ctx.backoff(&key(obj));
    tracing::warn!(object = %key(obj), error = %error, kind = error.metric_label(), ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}
