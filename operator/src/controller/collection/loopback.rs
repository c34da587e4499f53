//! The collection reconciler against a real `rulake.v1` server on
//! loopback (the single-process server, over the embedded engine) instead
//! of the fake: its status codes are what makes create idempotent, and
//! its authentication layer is what the operator's admin key must pass.

use super::*;
use crate::admin::{AdminError, AdminFactory, AdminKey, ClusterAdmin, GrpcAdmin};
use crate::crd::ParquetSource;
use crate::fixtures::{admin_key_secret, cluster, collection, condition, MockApi};
use http::{Method, Request, Response};
use kube::client::Body;

struct Loopback(String);

impl AdminFactory for Loopback {
    fn admin(
        &self,
        _: &RuLakeCluster,
        key: Option<&AdminKey>,
    ) -> Result<Arc<dyn ClusterAdmin>, AdminError> {
        Ok(Arc::new(GrpcAdmin::connect_lazy_with(
            &self.0,
            Duration::from_secs(30),
            None,
            key,
        )?))
    }
}

/// The auth config of the loopback server: the fixture's admin key with
/// `admin:*`, and a reader.
fn auth_layer() -> rulake_auth::AuthLayer {
    let json = serde_json::json!({
        "api_keys": [
            { "name": "operator", "sha256": rulake_auth::key_digest("s3cret-admin-key"),
              "grants": ["admin:*"] },
            { "name": "reader", "sha256": rulake_auth::key_digest("reader-key"),
              "grants": ["read:*"] },
        ],
    });
    let config = rulake_auth::AuthConfig::from_json(&json.to_string(), std::path::Path::new("."))
        .expect("auth config");
    rulake_auth::AuthLayer::new(config)
}

/// A server holding nothing, and a Parquet lake of 200 vectors of
/// dimension 8 under a temporary directory; every call needs a key of
/// [`auth_layer`].
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
            .layer(auth_layer())
            .add_routes(rulake_api::router(api))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), dir, node)
}

async fn expect_admin_key(api: &mut MockApi) {
    api.expect(
        Method::GET,
        "/api/v1/namespaces/default/secrets/demo-admin-key",
    )
    .await
    .respond(admin_key_secret());
}

/// An admin client of the loopback server presenting `key`.
fn client(endpoint: &str, key: Option<&str>) -> GrpcAdmin {
    let key = key.map(|k| AdminKey::new(k.as_bytes()).unwrap());
    GrpcAdmin::connect_lazy_with(endpoint, Duration::from_secs(30), None, key.as_ref()).unwrap()
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
        expect_admin_key(&mut api).await;
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
    let admin = client(&endpoint, Some("s3cret-admin-key"));
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
            expect_admin_key(&mut api).await;
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

/// The server refuses the operator's calls without its key or with a key
/// that lacks `admin:*`; the key read from the Secret (trailing newline
/// and all) passes.
#[tokio::test]
async fn admin_calls_carry_the_key_the_server_checks() {
    let (endpoint, _lake, _node) = start().await;
    for (key, code) in [
        (None, tonic::Code::Unauthenticated),
        (Some("not-a-key"), tonic::Code::Unauthenticated),
        (Some("reader-key"), tonic::Code::PermissionDenied),
        (Some("s3cret-admin-key\n"), tonic::Code::NotFound),
    ] {
        let err = client(&endpoint, key)
            .drop_collection("nothing-here")
            .await
            .expect_err("no such collection");
        assert_eq!(err.code(), code, "key {key:?}: {err}");
    }
}
