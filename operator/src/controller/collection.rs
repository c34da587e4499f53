//! The `RuLakeCollection` reconciler.
//!
//! Apply: validate the spec against its cluster (what CEL cannot see, such
//! as the replication factor against the shard count), then create the
//! collection; `ALREADY_EXISTS` means it is there, so describe it and alter
//! what may change (consistency, rerank, nprobe, replication factor). A
//! collection of that name with a different source, dimension, metric or
//! partition count is a conflict, reported and left alone.
//!
//! Cleanup (the `rulake.io/collection` finalizer): drop the collection;
//! `NOT_FOUND` means it is already gone, and a cluster that no longer exists
//! has nothing to drop. Only then does the finalizer let the resource go.

use super::{key, requeue_with_backoff, Context};
use crate::crd::{
    set_condition, ConditionStatus, Consistency, ConsistencyMode, Metric, RuLakeCluster,
    RuLakeCollection, RuLakeCollectionSpec, RuLakeCollectionStatus, COLLECTION_FINALIZER,
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY,
};
use crate::manifests::FIELD_MANAGER;
use crate::{Error, Result};
use kube::api::{Api, Patch, PatchParams};
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

/// Reconciles one collection under its finalizer.
pub async fn reconcile(collection: Arc<RuLakeCollection>, ctx: Arc<Context>) -> Result<Action> {
    let ns = collection
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
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

/// Why a spec cannot be served: a CamelCase reason and a message.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

/// Checks what the schema cannot (or what a cluster without CEL support
/// would let through).
pub fn validate(spec: &RuLakeCollectionSpec, cluster: &RuLakeCluster) -> Result<(), Invalid> {
    let invalid = |reason, message: String| Err(Invalid { reason, message });
    if spec.dimension == 0 {
        return invalid("InvalidDimension", "dimension must be > 0".into());
    }
    if !(1..=4096).contains(&spec.partitions) {
        return invalid(
            "InvalidPartitions",
            format!("partitions must be 1..=4096, not {}", spec.partitions),
        );
    }
    let shards = u32::try_from(cluster.spec.shards.replicas).unwrap_or(0);
    if spec.replication_factor == 0 || spec.replication_factor > shards {
        return invalid(
            "ReplicationExceedsShards",
            format!(
                "replicationFactor {} must be between 1 and the cluster's {shards} shard replicas",
                spec.replication_factor
            ),
        );
    }
    let s = &spec.source;
    let kinds = [
        s.parquet.is_some(),
        s.delta.is_some(),
        s.iceberg.is_some(),
        s.managed.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return invalid(
            "InvalidSource",
            "set exactly one of parquet, delta, iceberg, managed".into(),
        );
    }
    if let Some(ice) = &s.iceberg {
        if ice.metadata_location.is_some() == ice.catalog_table.is_some() {
            return invalid(
                "InvalidSource",
                "iceberg: set exactly one of metadataLocation, catalogTable".into(),
            );
        }
    }
    if spec.consistency.mode == ConsistencyMode::Eventual
        && spec.consistency.max_staleness_seconds.unwrap_or(0) == 0
    {
        return invalid(
            "InvalidConsistency",
            "eventual consistency needs maxStalenessSeconds > 0".into(),
        );
    }
    Ok(())
}

/// The `rulake.v1` spec of a collection named `name`.
pub fn to_proto(name: &str, spec: &RuLakeCollectionSpec) -> pb::CollectionSpec {
    let s = &spec.source;
    let kind = if let Some(p) = &s.parquet {
        Some(pb::source::Kind::Parquet(pb::ParquetSource {
            url: p.url.clone(),
            id_column: p.id_column.clone(),
            vector_column: p.vector_column.clone(),
            options: p.options.clone().into_iter().collect(),
        }))
    } else if let Some(d) = &s.delta {
        Some(pb::source::Kind::Delta(pb::DeltaSource {
            table_url: d.table_url.clone(),
            id_column: d.id_column.clone(),
            vector_column: d.vector_column.clone(),
            version: d.version,
            options: d.options.clone().into_iter().collect(),
        }))
    } else if let Some(i) = &s.iceberg {
        let table = match (&i.metadata_location, &i.catalog_table) {
            (Some(location), _) => Some(pb::iceberg_source::Table::MetadataLocation(
                location.clone(),
            )),
            (None, Some(t)) => Some(pb::iceberg_source::Table::CatalogTable(
                pb::iceberg_source::CatalogTable {
                    catalog: t.catalog.clone(),
                    namespace: t.namespace.clone(),
                    table: t.table.clone(),
                    uri: t.uri.clone().unwrap_or_default(),
                },
            )),
            (None, None) => None,
        };
        Some(pb::source::Kind::Iceberg(pb::IcebergSource {
            table,
            id_column: i.id_column.clone(),
            vector_column: i.vector_column.clone(),
            snapshot_id: i.snapshot_id,
            options: i.options.clone().into_iter().collect(),
        }))
    } else {
        s.managed
            .as_ref()
            .map(|_| pb::source::Kind::Managed(pb::ManagedSource {}))
    };
    pb::CollectionSpec {
        name: name.to_string(),
        source: Some(pb::Source { kind }),
        dimension: spec.dimension,
        metric: metric(spec.metric) as i32,
        partitions: spec.partitions,
        replication_factor: spec.replication_factor,
        consistency: Some(consistency(&spec.consistency)),
        rerank: spec.rerank,
        nprobe: spec.nprobe,
    }
}

fn metric(m: Metric) -> pb::Metric {
    match m {
        Metric::L2 => pb::Metric::L2,
        Metric::Cosine => pb::Metric::Cosine,
        Metric::InnerProduct => pb::Metric::InnerProduct,
    }
}

fn consistency(c: &Consistency) -> pb::Consistency {
    let level = match c.mode {
        ConsistencyMode::Fresh => pb::consistency::Level::Fresh(pb::consistency::Fresh {}),
        ConsistencyMode::Eventual => pb::consistency::Level::Eventual(pb::consistency::Eventual {
            max_staleness_ms: c.max_staleness_seconds.unwrap_or(0).saturating_mul(1000),
        }),
    };
    pb::Consistency { level: Some(level) }
}

/// The fields that cannot change, by name, where `have` and `want` differ.
fn immutable_differences(
    have: &pb::CollectionSpec,
    want: &pb::CollectionSpec,
) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if have.source != want.source {
        differ.push("source");
    }
    if have.dimension != want.dimension {
        differ.push("dimension");
    }
    if have.metric != want.metric {
        differ.push("metric");
    }
    if have.partitions != want.partitions {
        differ.push("partitions");
    }
    differ
}

/// The AlterCollection call that turns `have` into `want`, if any field that
/// may change differs. Unset rerank/nprobe in `want` mean "server default"
/// and are left alone.
pub fn alter_request(
    have: &pb::CollectionSpec,
    want: &pb::CollectionSpec,
) -> Option<pb::AlterCollectionRequest> {
    let mut req = pb::AlterCollectionRequest {
        name: want.name.clone(),
        ..Default::default()
    };
    let mut changed = false;
    if have.consistency != want.consistency {
        req.consistency = want.consistency;
        changed = true;
    }
    if want.rerank.is_some() && have.rerank != want.rerank {
        req.rerank = want.rerank;
        changed = true;
    }
    if want.nprobe.is_some() && have.nprobe != want.nprobe {
        req.nprobe = want.nprobe;
        changed = true;
    }
    if have.replication_factor != want.replication_factor {
        req.replication_factor = Some(want.replication_factor);
        changed = true;
    }
    changed.then_some(req)
}

async fn apply(collection: &RuLakeCollection, ctx: &Context) -> Result<Action> {
    let ns = collection
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = collection.name_any();
    let generation = collection.metadata.generation;
    let mut status = collection.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.partitions_total = collection.spec.partitions;

    let clusters: Api<RuLakeCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster_name = &collection.spec.cluster_ref.name;
    let Some(cluster) = clusters.get_opt(cluster_name).await? else {
        let message = format!("RuLakeCluster {cluster_name} not found in namespace {ns}");
        not_ready(&mut status, "ClusterNotFound", &message, generation);
        patch_status(collection, &ns, &status, ctx).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    if let Err(invalid) = validate(&collection.spec, &cluster) {
        ctx.event(
            collection,
            EventType::Warning,
            invalid.reason,
            "Validate",
            invalid.message.clone(),
        )
        .await;
        not_ready(&mut status, invalid.reason, &invalid.message, generation);
        set_condition(
            &mut status.conditions,
            CONDITION_DEGRADED,
            ConditionStatus::True,
            invalid.reason,
            &invalid.message,
            generation,
        );
        patch_status(collection, &ns, &status, ctx).await?;
        // Nothing changes until the spec (or its cluster, watched) does.
        return Ok(Action::await_change());
    }

    let admin = ctx.admins.admin(&cluster)?;
    let want = to_proto(&name, &collection.spec);
    let info = match admin.create_collection(want.clone()).await {
        Ok(info) => {
            ctx.event(
                collection,
                EventType::Normal,
                "Created",
                "Create",
                format!("created collection {name}"),
            )
            .await;
            info
        }
        Err(e) if e.code() == tonic::Code::AlreadyExists => {
            let info = admin.describe_collection(&name).await?;
            let have = info.spec.clone().unwrap_or_default();
            let differ = immutable_differences(&have, &want);
            if !differ.is_empty() {
                let message = format!(
                    "the cluster already has a collection {name} with a different {}; delete it or rename this resource",
                    differ.join(", ")
                );
                ctx.event(
                    collection,
                    EventType::Warning,
                    "ConflictingCollection",
                    "Create",
                    message.clone(),
                )
                .await;
                not_ready(&mut status, "ConflictingCollection", &message, generation);
                patch_status(collection, &ns, &status, ctx).await?;
                return Ok(Action::await_change());
            }
            match alter_request(&have, &want) {
                Some(req) => {
                    let info = admin.alter_collection(req).await?;
                    ctx.event(
                        collection,
                        EventType::Normal,
                        "Altered",
                        "Alter",
                        format!("altered collection {name}"),
                    )
                    .await;
                    info
                }
                None => info,
            }
        }
        // The cluster refuses this spec: retrying will not help, a spec
        // change will.
        Err(e)
            if matches!(
                e.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            let message = format!("the cluster refused the collection: {}", e);
            ctx.event(
                collection,
                EventType::Warning,
                "RejectedByCluster",
                "Create",
                message.clone(),
            )
            .await;
            not_ready(&mut status, "RejectedByCluster", &message, generation);
            set_condition(
                &mut status.conditions,
                CONDITION_DEGRADED,
                ConditionStatus::True,
                "RejectedByCluster",
                &message,
                generation,
            );
            patch_status(collection, &ns, &status, ctx).await?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            let message = format!("creating the collection: {e}");
            not_ready(&mut status, "ClusterUnavailable", &message, generation);
            patch_status(collection, &ns, &status, ctx).await?;
            return Err(e.into());
        }
    };

    let ready = record_info(&mut status, &info, generation);
    patch_status(collection, &ns, &status, ctx).await?;
    Ok(Action::requeue(if ready { RESYNC } else { PROGRESS_POLL }))
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
    let c = &mut status.conditions;
    let (ready, progressing, degraded, reason, message) = match state {
        pb::CollectionState::Ready => (
            true,
            false,
            false,
            "Serving",
            format!("serving generation {}", info.generation),
        ),
        pb::CollectionState::Loading => (
            false,
            true,
            false,
            "Loading",
            "no generation served yet".to_string(),
        ),
        pb::CollectionState::Degraded => {
            (true, false, true, "RefreshFailed", info.last_error.clone())
        }
        pb::CollectionState::Failed => (false, false, true, "LoadFailed", info.last_error.clone()),
        pb::CollectionState::Unspecified => (
            false,
            true,
            false,
            "Unknown",
            "the cluster did not say".to_string(),
        ),
    };
    set_condition(
        c,
        CONDITION_READY,
        ConditionStatus::from_bool(ready),
        reason,
        &message,
        generation,
    );
    set_condition(
        c,
        CONDITION_PROGRESSING,
        ConditionStatus::from_bool(progressing),
        reason,
        &message,
        generation,
    );
    set_condition(
        c,
        CONDITION_DEGRADED,
        ConditionStatus::from_bool(degraded),
        reason,
        &message,
        generation,
    );
    ready
}

fn not_ready(
    status: &mut RuLakeCollectionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    set_condition(
        &mut status.conditions,
        CONDITION_READY,
        ConditionStatus::False,
        reason,
        message,
        generation,
    );
    set_condition(
        &mut status.conditions,
        CONDITION_PROGRESSING,
        ConditionStatus::False,
        reason,
        message,
        generation,
    );
}

async fn cleanup(collection: &RuLakeCollection, ctx: &Context) -> Result<Action> {
    let ns = collection
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = collection.name_any();
    let clusters: Api<RuLakeCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cluster) = clusters.get_opt(&collection.spec.cluster_ref.name).await? else {
        // The cluster is gone, and its catalog with it.
        return Ok(Action::await_change());
    };
    match ctx.admins.admin(&cluster)?.drop_collection(&name).await {
        Ok(()) => {
            ctx.event(
                collection,
                EventType::Normal,
                "Dropped",
                "Drop",
                format!("dropped collection {name}"),
            )
            .await;
        }
        Err(e) if e.code() == tonic::Code::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Writes the status subresource by server-side apply.
async fn patch_status(
    collection: &RuLakeCollection,
    ns: &str,
    status: &RuLakeCollectionStatus,
    ctx: &Context,
) -> Result<()> {
    let api: Api<RuLakeCollection> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": "rulake.io/v1alpha1",
        "kind": "RuLakeCollection",
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&collection.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cluster, collection, condition, test_context, FakeAdmin, MockApi};
    use http::Method;
    use serde_json::{json, Value};

    const CLUSTER: &str = "/apis/rulake.io/v1alpha1/namespaces/default/rulakeclusters/demo";
    const ITEMS: &str = "/apis/rulake.io/v1alpha1/namespaces/default/rulakecollections/items";

    fn items_json() -> Value {
        serde_json::to_value(collection()).unwrap()
    }

    async fn expect_cluster_lookup(api: &mut MockApi, shards: Option<i32>) {
        let call = api.expect(Method::GET, CLUSTER).await;
        match shards {
            Some(n) => call.respond(serde_json::to_value(cluster(n)).unwrap()),
            None => call.not_found(),
        }
    }

    /// Expects the status patch and returns its body.
    async fn expect_status(api: &mut MockApi) -> Value {
        let call = api.expect(Method::PATCH, &format!("{ITEMS}/status")).await;
        assert!(call.query.contains("fieldManager=rulake-operator"));
        let body = call.body.clone();
        call.respond(items_json());
        body
    }

    #[tokio::test]
    async fn finalizer_is_added_before_anything_else() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = collection();
        c.metadata.finalizers = None;
        let server = tokio::spawn(async move {
            let call = api.expect(Method::PATCH, ITEMS).await;
            let ops = call.body.as_array().expect("a JSON patch").clone();
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "add" && op["value"] == json!(["rulake.io/collection"])),
                "adds the finalizer: {ops:?}"
            );
            call.respond(items_json());
            api
        });
        reconcile(Arc::new(c), ctx).await.expect("reconcile");
        server.await.unwrap().done().await;
        assert!(
            fake.calls().is_empty(),
            "nothing created before the finalizer is in place"
        );
    }

    #[tokio::test]
    async fn creates_the_collection_and_reports_loading() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            assert_eq!(api.expect_event("default").await, "Created");
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("False".into(), "Loading".into())
            );
            assert_eq!(
                condition(&status, "Progressing"),
                ("True".into(), "Loading".into())
            );
            assert_eq!(status["status"]["partitionsTotal"], 4);
            api
        });
        let action = reconcile(Arc::new(collection()), ctx)
            .await
            .expect("reconcile");
        assert_eq!(action, Action::requeue(PROGRESS_POLL));
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["create items"]);
        let created = fake.collections.lock().unwrap()["items"]
            .spec
            .clone()
            .unwrap();
        assert_eq!(created.dimension, 8);
        assert_eq!(created.metric, pb::Metric::Cosine as i32);
        assert_eq!(created.replication_factor, 2);
        assert!(
            matches!(created.source.unwrap().kind, Some(pb::source::Kind::Parquet(ref p)) if p.url == "s3://lake/items/")
        );
    }

    #[tokio::test]
    async fn existing_collection_is_described_and_altered_not_recreated() {
        let fake = Arc::new(FakeAdmin::default());
        let mut existing = to_proto("items", &collection().spec);
        existing.rerank = Some(10);
        fake.collections.lock().unwrap().insert(
            "items".into(),
            pb::CollectionInfo {
                spec: Some(existing),
                state: pb::CollectionState::Ready as i32,
                generation: "v7".into(),
                vector_count: 1000,
                partitions_warm: 4,
                ..Default::default()
            },
        );
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            assert_eq!(api.expect_event("default").await, "Altered");
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("True".into(), "Serving".into())
            );
            assert_eq!(status["status"]["generation"], "v7");
            assert_eq!(status["status"]["vectorCount"], 1000);
            assert_eq!(status["status"]["partitionsWarm"], 4);
            api
        });
        let action = reconcile(Arc::new(collection()), ctx)
            .await
            .expect("reconcile");
        assert_eq!(action, Action::requeue(RESYNC));
        server.await.unwrap().done().await;
        assert_eq!(
            fake.calls(),
            ["create items", "describe items", "alter items"]
        );
        assert_eq!(
            fake.collections.lock().unwrap()["items"]
                .spec
                .as_ref()
                .unwrap()
                .rerank,
            Some(40)
        );
    }

    #[tokio::test]
    async fn conflicting_collection_is_reported_and_left_alone() {
        let fake = Arc::new(FakeAdmin::default());
        let mut existing = to_proto("items", &collection().spec);
        existing.dimension = 16;
        fake.collections.lock().unwrap().insert(
            "items".into(),
            pb::CollectionInfo {
                spec: Some(existing),
                ..Default::default()
            },
        );
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            assert_eq!(api.expect_event("default").await, "ConflictingCollection");
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("False".into(), "ConflictingCollection".into())
            );
            api
        });
        let action = reconcile(Arc::new(collection()), ctx)
            .await
            .expect("a conflict is not an error");
        assert_eq!(action, Action::await_change());
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["create items", "describe items"]);
    }

    #[tokio::test]
    async fn replication_above_the_shard_count_is_an_invalid_spec_condition() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = collection();
        c.spec.replication_factor = 5;
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            assert_eq!(
                api.expect_event("default").await,
                "ReplicationExceedsShards"
            );
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("False".into(), "ReplicationExceedsShards".into())
            );
            assert_eq!(
                condition(&status, "Degraded"),
                ("True".into(), "ReplicationExceedsShards".into())
            );
            api
        });
        let action = reconcile(Arc::new(c), ctx)
            .await
            .expect("an invalid spec is not an error");
        assert_eq!(
            action,
            Action::await_change(),
            "waits for a change instead of looping"
        );
        server.await.unwrap().done().await;
        assert!(
            fake.calls().is_empty(),
            "the cluster is not asked to serve an invalid spec"
        );
    }

    #[tokio::test]
    async fn missing_cluster_is_a_condition() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, None).await;
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("False".into(), "ClusterNotFound".into())
            );
            api
        });
        reconcile(Arc::new(collection()), ctx)
            .await
            .expect("reconcile");
        server.await.unwrap().done().await;
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn unavailable_cluster_requeues_with_a_condition() {
        let fake = Arc::new(FakeAdmin::default());
        *fake.create_error.lock().unwrap() = Some(tonic::Code::Unavailable);
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            let status = expect_status(&mut api).await;
            assert_eq!(
                condition(&status, "Ready"),
                ("False".into(), "ClusterUnavailable".into())
            );
            api
        });
        let c = Arc::new(collection());
        let error = reconcile(c.clone(), ctx.clone())
            .await
            .expect_err("unavailable fails the reconcile");
        assert_eq!(error.metric_label(), "finalizer");
        assert_eq!(
            error_policy(c, &error, ctx.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        drop(ctx);
        server.await.unwrap().done().await;
    }

    fn deleting() -> RuLakeCollection {
        let mut c = collection();
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        c
    }

    #[tokio::test]
    async fn finalizer_drops_once_then_lets_go() {
        let fake = Arc::new(FakeAdmin::default());
        fake.collections
            .lock()
            .unwrap()
            .insert("items".into(), pb::CollectionInfo::default());
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            assert_eq!(api.expect_event("default").await, "Dropped");
            let call = api.expect(Method::PATCH, ITEMS).await;
            let ops = call.body.as_array().expect("a JSON patch").clone();
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
                "removes the finalizer: {ops:?}"
            );
            let mut released = serde_json::to_value(deleting()).unwrap();
            released["metadata"]["finalizers"] = json!([]);
            call.respond(released);
            api
        });
        reconcile(Arc::new(deleting()), ctx.clone())
            .await
            .expect("cleanup");
        // The next event shows the resource without our finalizer: nothing
        // more is dropped and no request is made.
        let mut released = deleting();
        released.metadata.finalizers = Some(vec![]);
        reconcile(Arc::new(released), ctx.clone())
            .await
            .expect("released");
        drop(ctx);
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["drop items"], "dropped exactly once");
    }

    #[tokio::test]
    async fn finalizer_treats_an_absent_collection_as_dropped() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            expect_cluster_lookup(&mut api, Some(3)).await;
            let call = api.expect(Method::PATCH, ITEMS).await;
            call.respond(serde_json::to_value(deleting()).unwrap());
            api
        });
        reconcile(Arc::new(deleting()), ctx)
            .await
            .expect("NOT_FOUND counts as dropped");
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["drop items"]);
    }

    #[tokio::test]
    async fn failed_cleanup_keeps_the_finalizer() {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let c = deleting();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, CLUSTER)
                .await
                .error(503, "ServiceUnavailable");
            api
        });
        let error = reconcile(Arc::new(c), ctx)
            .await
            .expect_err("cleanup failed");
        assert_eq!(error.metric_label(), "finalizer");
        // No finalizer patch: the mock would have seen it.
        server.await.unwrap().done().await;
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn validation_mirrors_the_schema() {
        let c = cluster(3);
        let ok = collection().spec;
        assert_eq!(validate(&ok, &c), Ok(()));
        let reason = |f: &dyn Fn(&mut RuLakeCollectionSpec)| {
            let mut s = collection().spec;
            f(&mut s);
            validate(&s, &c).unwrap_err().reason
        };
        assert_eq!(reason(&|s| s.dimension = 0), "InvalidDimension");
        assert_eq!(reason(&|s| s.partitions = 0), "InvalidPartitions");
        assert_eq!(
            reason(&|s| s.replication_factor = 4),
            "ReplicationExceedsShards"
        );
        assert_eq!(
            reason(&|s| s.source.managed = Some(Default::default())),
            "InvalidSource"
        );
        assert_eq!(reason(&|s| s.source.parquet = None), "InvalidSource");
        assert_eq!(
            reason(&|s| s.consistency = Consistency {
                mode: ConsistencyMode::Eventual,
                max_staleness_seconds: None
            }),
            "InvalidConsistency"
        );
    }

    #[test]
    fn an_iceberg_sql_catalog_table_reaches_the_api() {
        use crate::crd::{CatalogTable, IcebergSource};
        let mut spec = collection().spec;
        spec.source.parquet = None;
        spec.source.iceberg = Some(IcebergSource {
            metadata_location: None,
            catalog_table: Some(CatalogTable {
                catalog: "lake".into(),
                namespace: "ml.prod".into(),
                table: "items".into(),
                uri: Some("sqlite:///catalogs/lake.db".into()),
            }),
            id_column: "id".into(),
            vector_column: "embedding".into(),
            snapshot_id: None,
            options: Default::default(),
        });
        assert_eq!(validate(&spec, &cluster(3)), Ok(()));
        let Some(pb::source::Kind::Iceberg(i)) = to_proto("items", &spec).source.unwrap().kind
        else {
            panic!("not an Iceberg source")
        };
        assert_eq!(
            i.table,
            Some(pb::iceberg_source::Table::CatalogTable(
                pb::iceberg_source::CatalogTable {
                    catalog: "lake".into(),
                    namespace: "ml.prod".into(),
                    table: "items".into(),
                    uri: "sqlite:///catalogs/lake.db".into(),
                }
            ))
        );
    }

    #[test]
    fn alter_only_what_differs() {
        let want = to_proto("items", &collection().spec);
        assert_eq!(alter_request(&want, &want), None);
        let mut have = want.clone();
        have.replication_factor = 1;
        have.nprobe = Some(3);
        let req = alter_request(&have, &want).expect("replication differs");
        assert_eq!(req.replication_factor, Some(2));
        assert_eq!(req.nprobe, None, "unset nprobe keeps the server's value");
        assert_eq!(req.rerank, None);
    }
}

/// The collection reconciler against a real `rulake.v1` server on
/// loopback (the single-process server, over the embedded engine) instead
/// of the fake: its status codes are what makes create idempotent.
#[cfg(test)]
mod loopback {
    use super::*;
    use crate::admin::{AdminError, AdminFactory, ClusterAdmin, GrpcAdmin};
    use crate::crd::ParquetSource;
    use crate::fixtures::{cluster, collection, condition, MockApi};
    use http::{Method, Request, Response};
    use kube::client::Body;

    struct Loopback(String);

    impl AdminFactory for Loopback {
        fn admin(&self, _: &RuLakeCluster) -> Result<Arc<dyn ClusterAdmin>, AdminError> {
            Ok(Arc::new(GrpcAdmin::connect_lazy(
                &self.0,
                Duration::from_secs(30),
            )?))
        }
    }

    /// A server holding nothing, and a Parquet lake of 200 vectors of
    /// dimension 8 under a temporary directory.
    async fn start() -> (String, tempfile::TempDir, rulake_coordinator::Embedded) {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u64> = (0..200).collect();
        let vectors: Vec<f32> = (0..200 * 8)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        rulake_lake::write_parquet_file(
            &dir.path().join("part-0.parquet"),
            rulake_lake::IdsRef::U64(&ids),
            &vectors,
            8,
            100,
        )
        .unwrap();
        // The embedded default (catalog, engine, coordinator) under the lake's directory.
        let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig::new(
            dir.path().join("node"),
        ))
        .await
        .unwrap();
        let api = rulake_api::Api::new(
            node.coordinator.clone(),
            rulake_api::Limits {
                max_batch: 8,
                ..Default::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(rulake_api::router(api))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (format!("http://{addr}"), dir, node)
    }

    fn context(endpoint: &str) -> (Arc<Context>, MockApi) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let ctx = Context::new(client, Arc::new(Loopback(endpoint.to_string())));
        (Arc::new(ctx), MockApi::from_handle(handle))
    }

    fn items(lake: &tempfile::TempDir) -> RuLakeCollection {
        let mut c = collection();
        // The single-process server holds one replica of each partition.
        c.spec.replication_factor = 1;
        c.spec.source.parquet = Some(ParquetSource {
            url: lake.path().to_str().unwrap().to_string(),
            id_column: "id".into(),
            vector_column: "vector".into(),
            options: Default::default(),
        });
        c
    }

    /// One apply: cluster lookup, maybe an event, the status patch.
    async fn reconcile_once(
        c: &RuLakeCollection,
        endpoint: &str,
        event: Option<&'static str>,
    ) -> serde_json::Value {
        let (ctx, mut api) = context(endpoint);
        let reply = serde_json::to_value(c).unwrap();
        let server = tokio::spawn(async move {
            let lookup = api
                .expect(
                    Method::GET,
                    "/apis/rulake.io/v1alpha1/namespaces/default/rulakeclusters/demo",
                )
                .await;
            lookup.respond(serde_json::to_value(cluster(3)).unwrap());
            if let Some(reason) = event {
                assert_eq!(api.expect_event("default").await, reason);
            }
            let status = api
                .expect(
                    Method::PATCH,
                    "/apis/rulake.io/v1alpha1/namespaces/default/rulakecollections/items/status",
                )
                .await;
            let body = status.body.clone();
            status.respond(reply);
            (api, body)
        });
        reconcile(Arc::new(c.clone()), ctx)
            .await
            .expect("reconcile");
        let (api, body) = server.await.unwrap();
        api.done().await;
        body
    }

    #[tokio::test]
    async fn a_spec_the_cluster_refuses_is_a_condition_not_a_retry_loop() {
        let (endpoint, lake, _node) = start().await;
        let mut c = items(&lake);
        c.spec.replication_factor = 2;
        let status = reconcile_once(&c, &endpoint, Some("RejectedByCluster")).await;
        assert_eq!(
            condition(&status, "Ready"),
            ("False".into(), "RejectedByCluster".into())
        );
        assert_eq!(
            condition(&status, "Degraded"),
            ("True".into(), "RejectedByCluster".into())
        );
    }

    #[tokio::test]
    async fn create_then_reconcile_again_against_a_real_server() {
        let (endpoint, lake, _node) = start().await;
        let c = items(&lake);
        let first = reconcile_once(&c, &endpoint, Some("Created")).await;
        let (ready, _) = condition(&first, "Ready");
        assert!(ready == "True" || ready == "False", "{first}");
        // Again: ALREADY_EXISTS, described, nothing to alter, no conflict
        // (the server's view of the spec matches ours field by field).
        let second = reconcile_once(&c, &endpoint, None).await;
        let (_, reason) = condition(&second, "Ready");
        assert!(
            reason == "Serving" || reason == "Loading",
            "no conflict on a second pass: {second}"
        );
        assert_eq!(second["status"]["partitionsTotal"], 4);

        // Cleanup drops it; a second drop finds nothing and still succeeds.
        let admin = GrpcAdmin::connect_lazy(&endpoint, Duration::from_secs(30)).unwrap();
        admin.describe_collection("items").await.expect("created");
        for _ in 0..2 {
            let (ctx, mut api) = context(&endpoint);
            let mut deleting = c.clone();
            deleting.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            let reply = serde_json::to_value(&deleting).unwrap();
            let server = tokio::spawn(async move {
                let lookup = api
                    .expect(
                        Method::GET,
                        "/apis/rulake.io/v1alpha1/namespaces/default/rulakeclusters/demo",
                    )
                    .await;
                lookup.respond(serde_json::to_value(cluster(3)).unwrap());
                let next = api.next().await;
                if next.method == Method::POST {
                    assert_eq!(next.body["reason"], "Dropped");
                    next.echo();
                    api.expect(
                        Method::PATCH,
                        "/apis/rulake.io/v1alpha1/namespaces/default/rulakecollections/items",
                    )
                    .await
                    .respond(reply);
                } else {
                    assert_eq!(
                        next.path,
                        "/apis/rulake.io/v1alpha1/namespaces/default/rulakecollections/items"
                    );
                    next.respond(reply);
                }
                api
            });
            reconcile(Arc::new(deleting), ctx).await.expect("cleanup");
            server.await.unwrap().done().await;
        }
        let gone = admin
            .describe_collection("items")
            .await
            .expect_err("dropped");
        assert_eq!(gone.code(), tonic::Code::NotFound);
    }
}
