//! The `RuLakeCollection` reconciler.
//!
//! The collection lives in the cluster's catalog, not in Kubernetes, so the
//! reconciler talks to the cluster's admin API and must be idempotent
//! against it: every run asks to create, and `ALREADY_EXISTS` is the normal
//! answer once the collection is there.
//!
//! Apply, each step its own function:
//! 1. `find_cluster`: the cluster named by `clusterRef`; without it there
//!    is nothing to talk to, which is a condition, looked at again soon.
//! 2. `validate`: what the schema and CEL cannot see (the replication
//!    factor against the cluster's shard count); an invalid spec is
//!    reported and waits for a change.
//! 3. `create_or_update`: create; on `ALREADY_EXISTS` describe it and alter
//!    what may change (consistency, rerank, nprobe, replication factor). A
//!    collection of that name with a different source, dimension, metric
//!    or partition count is a conflict, reported and left alone: it may
//!    hold someone else's data.
//! 4. `record_info`: the status and conditions from the cluster's view.
//!
//! Cleanup (the `rulake.io/collection` finalizer): drop the collection;
//! `NOT_FOUND` means it is already gone, and a cluster that no longer
//! exists has nothing to drop. Only then does the finalizer let the
//! resource go, so a deleted resource never leaves a collection behind.

#[cfg(test)]
mod loopback;
mod spec;
#[cfg(test)]
mod tests;

pub use spec::{alter_request, to_proto, validate, Invalid};

use super::{admin_for, key, namespace, patch_status, report_unservable, requeue_with_backoff};
use super::{Context, Unservable};
use crate::admin::{AdminError, ClusterAdmin};
use crate::crd::{
    set_condition, set_not_ready, ConditionStatus, RuLakeCluster, RuLakeCollection,
    RuLakeCollectionStatus, COLLECTION_FINALIZER, CONDITION_DEGRADED, CONDITION_PROGRESSING,
    CONDITION_READY,
};
use crate::{Error, Result};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use rulake_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

/// How often a ready collection's status is refreshed.
const RESYNC: Duration = Duration::from_secs(60);
/// How soon a loading collection is looked at again.
const PROGRESS_POLL: Duration = Duration::from_secs(10);
/// How soon a collection whose cluster does not exist is looked at again.
const CLUSTER_POLL: Duration = Duration::from_secs(30);

/// Reconciles one collection under its finalizer.
pub async fn reconcile(collection: Arc<RuLakeCollection>, ctx: Arc<Context>) -> Result<Action> {
    let ns = namespace(collection.as_ref())?;
    let api: Api<RuLakeCollection> = Api::namespaced(ctx.client.clone(), &ns);
    let object_key = key(collection.as_ref());
    let action = finalizer(&api, COLLECTION_FINALIZER, collection, |event| async {
        match event {
            Finalizer::Apply(c) => apply(&c, &ctx).await,
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&object_key);
    Ok(action)
}

/// Requeues a failed collection with backoff.
pub fn error_policy(collection: Arc<RuLakeCollection>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_with_backoff(collection.as_ref(), error, &ctx)
}

impl From<Invalid> for Unservable {
    fn from(invalid: Invalid) -> Self {
        Unservable {
            reason: invalid.reason,
            action: "Validate",
            message: invalid.message,
            degraded: true,
        }
    }
}

async fn apply(collection: &RuLakeCollection, ctx: &Context) -> Result<Action> {
    let generation = collection.metadata.generation;
    let mut status = collection.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.partitions_total = collection.spec.partitions;

    let Some(cluster) = find_cluster(collection, ctx).await? else {
        let message = format!(
            "RuLakeCluster {} not found in namespace {}",
            collection.spec.cluster_ref.name,
            namespace(collection)?
        );
        set_not_ready(
            &mut status.conditions,
            "ClusterNotFound",
            &message,
            generation,
        );
        patch_status(&ctx.client, collection, &status).await?;
        return Ok(Action::requeue(CLUSTER_POLL));
    };
    if let Err(invalid) = validate(&collection.spec, &cluster) {
        // Nothing changes until the spec (or its cluster, watched) does.
        return report_unservable(ctx, collection, status, invalid.into()).await;
    }

    let admin = admin_for(ctx, &cluster).await?;
    let info = match create_or_update(collection, ctx, admin.as_ref()).await? {
        Outcome::Served(info) => info,
        Outcome::Unservable(why) => return report_unservable(ctx, collection, status, why).await,
        Outcome::Unavailable(e) => {
            let message = format!("creating the collection: {e}");
            set_not_ready(
                &mut status.conditions,
                "ClusterUnavailable",
                &message,
                generation,
            );
            patch_status(&ctx.client, collection, &status).await?;
            return Err(e.into());
        }
    };

    let ready = record_info(&mut status, &info, generation);
    patch_status(&ctx.client, collection, &status).await?;
    Ok(Action::requeue(if ready { RESYNC } else { PROGRESS_POLL }))
}

/// The cluster the collection belongs to, if it exists.
async fn find_cluster(
    collection: &RuLakeCollection,
    ctx: &Context,
) -> Result<Option<RuLakeCluster>> {
    let clusters: Api<RuLakeCluster> = Api::namespaced(ctx.client.clone(), &namespace(collection)?);
    Ok(clusters.get_opt(&collection.spec.cluster_ref.name).await?)
}

/// How asking the cluster for the collection went.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per reconcile, consumed at once: boxing buys nothing"
)]
enum Outcome {
    /// The collection exists as the spec asks; the cluster's view of it.
    Served(pb::CollectionInfo),
    /// The cluster cannot serve the spec as it stands.
    Unservable(Unservable),
    /// Creating failed for a reason a retry may cure.
    Unavailable(AdminError),
}

/// Creates the collection, or brings the existing one to the spec.
async fn create_or_update(
    collection: &RuLakeCollection,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
) -> Result<Outcome> {
    let name = collection.name_any();
    let want = to_proto(&name, &collection.spec);
    match admin.create_collection(want.clone()).await {
        Ok(info) => {
            let note = format!("created collection {name}");
            ctx.event(collection, EventType::Normal, "Created", "Create", note)
                .await;
            Ok(Outcome::Served(info))
        }
        Err(e) if e.code() == tonic::Code::AlreadyExists => {
            update_existing(collection, ctx, admin, want).await
        }
        // The cluster refuses this spec: retrying will not help, a spec
        // change will.
        Err(e)
            if matches!(
                e.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            Ok(Outcome::Unservable(Unservable {
                reason: "RejectedByCluster",
                action: "Create",
                message: format!("the cluster refused the collection: {e}"),
                degraded: true,
            }))
        }
        Err(e) => Ok(Outcome::Unavailable(e)),
    }
}

/// Alters the existing collection `want.name` where it may change, or
/// reports a conflict where it may not.
async fn update_existing(
    collection: &RuLakeCollection,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    want: pb::CollectionSpec,
) -> Result<Outcome> {
    let name = &want.name;
    let info = admin.describe_collection(name).await?;
    let have = info.spec.clone().unwrap_or_default();
    let differ = spec::immutable_differences(&have, &want);
    if !differ.is_empty() {
        return Ok(Outcome::Unservable(Unservable {
            reason: "ConflictingCollection",
            action: "Create",
            message: format!(
                "the cluster already has a collection {name} with a different {}; delete it or rename this resource",
                differ.join(", ")
            ),
            degraded: false,
        }));
    }
    let Some(req) = alter_request(&have, &want) else {
        return Ok(Outcome::Served(info));
    };
    let info = admin.alter_collection(req).await?;
    let note = format!("altered collection {name}");
    ctx.event(collection, EventType::Normal, "Altered", "Alter", note)
        .await;
    Ok(Outcome::Served(info))
}

/// Fills the status from the cluster's view; returns whether it is Ready.
fn record_info(
    status: &mut RuLakeCollectionStatus,
    info: &pb::CollectionInfo,
    generation: Option<i64>,
) -> bool {
    status.generation = (!info.generation.is_empty()).then(|| info.generation.clone());
    status.vector_count = info.vector_count;
    status.partitions_warm = info.partitions_warm;
    let state =
        pb::CollectionState::try_from(info.state).unwrap_or(pb::CollectionState::Unspecified);
    // (Ready, Progressing, Degraded), the reason and the message.
    let (holds, reason, message) = match state {
        pb::CollectionState::Ready => (
            [true, false, false],
            "Serving",
            format!("serving generation {}", info.generation),
        ),
        pb::CollectionState::Loading => (
            [false, true, false],
            "Loading",
            "no generation served yet".to_string(),
        ),
        pb::CollectionState::Degraded => (
            [true, false, true],
            "RefreshFailed",
            info.last_error.clone(),
        ),
        pb::CollectionState::Failed => {
            ([false, false, true], "LoadFailed", info.last_error.clone())
        }
        pb::CollectionState::Unspecified => (
            [false, true, false],
            "Unknown",
            "the cluster did not say".to_string(),
        ),
    };
    let types = [CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED];
    for (type_, holds) in types.into_iter().zip(holds) {
        set_condition(
            &mut status.conditions,
            type_,
            ConditionStatus::from_bool(holds),
            reason,
            &message,
            generation,
        );
    }
    holds[0]
}

async fn cleanup(collection: &RuLakeCollection, ctx: &Context) -> Result<Action> {
    let name = collection.name_any();
    let Some(cluster) = find_cluster(collection, ctx).await? else {
        // The cluster is gone, and its catalog with it.
        return Ok(Action::await_change());
    };
    match admin_for(ctx, &cluster).await?.drop_collection(&name).await {
        Ok(()) => {
            let note = format!("dropped collection {name}");
            ctx.event(collection, EventType::Normal, "Dropped", "Drop", note)
                .await;
        }
        Err(e) if e.code() == tonic::Code::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
