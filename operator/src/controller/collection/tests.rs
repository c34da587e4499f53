//! The collection reconciler against the mocked API server and the fake
//! cluster, and the pure spec checks.

use super::*;
use crate::crd::{Consistency, ConsistencyMode, RuLakeCollectionSpec};
use crate::fixtures::{
    admin_key_secret, cluster, collection, condition, test_context, FakeAdmin, MockApi,
    ADMIN_KEY_HEADER,
};
use http::Method;
use serde_json::{json, Value};

const CLUSTER: &str = "/apis/rulake.io/v1alpha1/namespaces/default/rulakeclusters/demo";
const ITEMS: &str = "/apis/rulake.io/v1alpha1/namespaces/default/rulakecollections/items";

fn items_json() -> Value {
    serde_json::to_value(collection()).unwrap()
}

/// Answers the cluster lookup (absent, or with `shards` shards) and, when
/// there is a cluster, the read of its admin key.
async fn expect_cluster_lookup(api: &mut MockApi, shards: Option<i32>) {
    let Some(n) = shards else {
        api.expect(Method::GET, CLUSTER).await.not_found();
        return;
    };
    expect_cluster_only(api, n).await;
    api.expect(
        Method::GET,
        "/api/v1/namespaces/default/secrets/demo-admin-key",
    )
    .await
    .respond(admin_key_secret());
}

/// Answers the cluster lookup with a cluster of `shards` shards.
async fn expect_cluster_only(api: &mut MockApi, shards: i32) {
    api.expect(Method::GET, CLUSTER)
        .await
        .respond(serde_json::to_value(cluster(shards)).unwrap());
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
    assert_eq!(
        *fake.keys.lock().unwrap(),
        [Some(ADMIN_KEY_HEADER.to_string())],
        "created with the cluster's admin key"
    );
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
        expect_cluster_only(&mut api, 3).await;
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
    let Some(pb::source::Kind::Iceberg(i)) = to_proto("items", &spec).source.unwrap().kind else {
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

#[test]
fn a_source_the_cluster_shows_without_option_values_is_unchanged() {
    fn options(spec: &mut pb::CollectionSpec) -> &mut std::collections::HashMap<String, String> {
        match spec.source.as_mut().and_then(|s| s.kind.as_mut()) {
            Some(pb::source::Kind::Parquet(p)) => &mut p.options,
            other => panic!("not a Parquet source: {other:?}"),
        }
    }
    let mut spec = collection().spec;
    if let Some(p) = spec.source.parquet.as_mut() {
        p.options = [("aws_region".to_string(), "eu-west-1".to_string())].into();
    }
    let want = to_proto("items", &spec);
    // The cluster answers with every option value redacted.
    let mut have = want.clone();
    options(&mut have).insert("aws_region".into(), "<redacted>".into());
    assert!(spec::immutable_differences(&have, &want).is_empty());
    // Another option is still another source.
    options(&mut have).insert("request_payer".into(), "<redacted>".into());
    assert_eq!(spec::immutable_differences(&have, &want), ["source"]);
}
