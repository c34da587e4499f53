//! Test doubles: a mocked Kubernetes API server (tower-test) that tests
//! drive request by request, asserting each one, and a fake RuLake cluster
//! behind [`ClusterAdmin`].
//!
//! The fake cluster stands in for the admin API because the calls the
//! operator makes around scaling (DrainShard, AdmitShard, ClusterStatus of
//! a multi-node cluster) need the distributed roles, which a single
//! `rulake serve` process does not have.

use crate::admin::{AdminError, AdminFactory, AdminKey, ClusterAdmin};
use crate::controller::Context;
use crate::crd::*;
use async_trait::async_trait;
use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::client::Body;
use kube::Client;
use rulake_proto::v1 as pb;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The mocked API server's side of the client.
pub struct MockApi(Handle);

/// One request the operator made.
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path without the query string.
    pub path: String,
    /// Query string, if any.
    pub query: String,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl MockApi {
    /// Wraps the server side of a tower-test mock pair.
    pub fn from_handle(handle: Handle) -> Self {
        MockApi(handle)
    }

    /// The next request; fails the test if none comes within 5 s.
    pub async fn next(&mut self) -> Call {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .expect("the operator made no further request")
            .expect("the client went away before the expected request");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let apply = request
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
        assert_granted(method.as_str(), &path, &query, apply);
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Call {
            method,
            path,
            query,
            body,
            send,
        }
    }

    /// The next request, which must be `method path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request (body {})",
            call.body
        );
        call
    }

    /// Answers the next Event publication and returns its reason. A repeat
    /// of an Event (same object and reason) is a PATCH raising its series
    /// count instead of a POST.
    pub async fn expect_event(&mut self, ns: &str) -> String {
        let call = self.next().await;
        let events = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
        let is_event = match call.method {
            Method::POST => call.path == events,
            Method::PATCH => call.path.starts_with(&format!("{events}/")),
            _ => false,
        };
        assert!(
            is_event,
            "expected an Event, got {} {} ({})",
            call.method, call.path, call.body
        );
        let reason = call.body["reason"]
            .as_str()
            .expect("event reason")
            .to_string();
        call.echo();
        reason
    }

    /// Asserts that the operator makes no further request. Call after the
    /// reconcile returned and its client was dropped.
    pub async fn done(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

/// Every request the operator makes must be granted by its role
/// ([`crate::rbac::RULES`], which the chart's ClusterRole matches): a
/// reconciler that starts a new kind of call fails its tests until the
/// role grants it.
fn assert_granted(method: &str, path: &str, query: &str, apply: bool) {
    let (group, resource, verb, name) = crate::rbac::needs(method, path, query)
        .unwrap_or_else(|| panic!("not a Kubernetes API request: {method} {path}"));
    let mut verbs = vec![verb];
    // Server-side apply creates what does not exist yet.
    if apply && !resource.contains('/') {
        verbs.push("create".into());
    }
    for verb in verbs {
        assert!(
            crate::rbac::allows(&group, &resource, &verb, &name),
            "{method} {path}: the operator's role does not grant {verb:?} on {group}/{resource}; \
             add it to rbac::RULES and charts/rulake/templates/clusterrole.yaml"
        );
    }
}

impl Call {
    /// Answers 200 with `body`.
    pub fn respond(self, body: Value) {
        self.respond_status(200, body);
    }

    /// Answers `status` with `body`.
    pub fn respond_status(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("response");
        self.send.send_response(response);
    }

    /// Answers 200 with the request's own body (what an apply returns,
    /// less the fields the server fills).
    pub fn echo(self) {
        let body = self.body.clone();
        self.respond(body);
    }

    /// Answers with a Kubernetes error Status.
    pub fn error(self, code: u16, reason: &str) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("mock: {reason}"), "reason": reason, "code": code,
        });
        self.respond_status(code, status);
    }

    /// Answers 404 NotFound.
    pub fn not_found(self) {
        self.error(404, "NotFound");
    }
}

/// A fake RuLake cluster: records every call, answers from its fields.
#[derive(Default)]
pub struct FakeAdmin {
    /// Calls in order, e.g. `drain demo-shard-4`.
    pub calls: Mutex<Vec<String>>,
    /// ClusterStatus reply; `None` answers UNAVAILABLE.
    pub status: Mutex<Option<pb::ClusterStatusResponse>>,
    /// Nodes whose drain fails with UNAVAILABLE.
    pub failing_drains: Mutex<HashSet<String>>,
    /// Nodes whose admission fails, with the code it fails with
    /// (`NotFound`: not registered yet).
    pub failing_admits: Mutex<HashMap<String, tonic::Code>>,
    /// Collections by name.
    pub collections: Mutex<HashMap<String, pb::CollectionInfo>>,
    /// When set, CreateCollection fails with this code.
    pub create_error: Mutex<Option<tonic::Code>>,
    /// The `authorization` value each admin client was made with.
    pub keys: Mutex<Vec<Option<String>>>,
    /// When set, CreateBackup fails with this code.
    pub backup_error: Mutex<Option<tonic::Code>>,
}

impl FakeAdmin {
    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl ClusterAdmin for FakeAdmin {
    async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, AdminError> {
        self.record("status".into());
        self.status
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| tonic::Status::unavailable("no coordinator is up").into())
    }

    async fn drain_shard(&self, node_id: &str) -> Result<pb::DrainShardResponse, AdminError> {
        self.record(format!("drain {node_id}"));
        if self.failing_drains.lock().unwrap().contains(node_id) {
            return Err(tonic::Status::unavailable("partitions not warm yet").into());
        }
        Ok(pb::DrainShardResponse {
            partitions_moved: 4,
            assignment_epoch: 9,
        })
    }

    async fn admit_shard(&self, node_id: &str) -> Result<pb::AdmitShardResponse, AdminError> {
        self.record(format!("admit {node_id}"));
        if let Some(code) = self.failing_admits.lock().unwrap().get(node_id) {
            return Err(tonic::Status::new(*code, "mock").into());
        }
        Ok(pb::AdmitShardResponse {
            partitions_assigned: 4,
            assignment_epoch: 10,
        })
    }

    async fn create_collection(
        &self,
        spec: pb::CollectionSpec,
    ) -> Result<pb::CollectionInfo, AdminError> {
        self.record(format!("create {}", spec.name));
        if let Some(code) = *self.create_error.lock().unwrap() {
            return Err(tonic::Status::new(code, "mock").into());
        }
        let mut collections = self.collections.lock().unwrap();
        if collections.contains_key(&spec.name) {
            return Err(tonic::Status::already_exists(spec.name).into());
        }
        let info = pb::CollectionInfo {
            spec: Some(spec.clone()),
            state: pb::CollectionState::Loading as i32,
            ..Default::default()
        };
        collections.insert(spec.name, info.clone());
        Ok(info)
    }

    async fn describe_collection(&self, name: &str) -> Result<pb::CollectionInfo, AdminError> {
        self.record(format!("describe {name}"));
        let collections = self.collections.lock().unwrap();
        collections
            .get(name)
            .cloned()
            .ok_or_else(|| tonic::Status::not_found(name).into())
    }

    async fn alter_collection(
        &self,
        req: pb::AlterCollectionRequest,
    ) -> Result<pb::CollectionInfo, AdminError> {
        self.record(format!("alter {}", req.name));
        let mut collections = self.collections.lock().unwrap();
        let info = collections
            .get_mut(&req.name)
            .ok_or_else(|| tonic::Status::not_found(&req.name))?;
        let spec = info.spec.get_or_insert_with(Default::default);
        if let Some(c) = req.consistency {
            spec.consistency = Some(c);
        }
        spec.rerank = req.rerank.or(spec.rerank);
        spec.nprobe = req.nprobe.or(spec.nprobe);
        spec.replication_factor = req.replication_factor.unwrap_or(spec.replication_factor);
        Ok(info.clone())
    }

    async fn drop_collection(&self, name: &str) -> Result<(), AdminError> {
        self.record(format!("drop {name}"));
        match self.collections.lock().unwrap().remove(name) {
            Some(_) => Ok(()),
            None => Err(tonic::Status::not_found(name).into()),
        }
    }

    async fn create_backup(&self, to: &str) -> Result<pb::BackupSummary, AdminError> {
        self.record(format!("backup {to}"));
        if let Some(code) = *self.backup_error.lock().unwrap() {
            return Err(tonic::Status::new(code, "mock").into());
        }
        Ok(pb::BackupSummary {
            location: to.to_string(),
            files: 3,
            bytes: 4096,
            collections: vec!["items".into()],
            created_unix_ms: 0,
        })
    }
}

struct FakeFactory(Arc<FakeAdmin>);

impl AdminFactory for FakeFactory {
    fn admin(
        &self,
        _: &RuLakeCluster,
        key: Option<&AdminKey>,
    ) -> Result<Arc<dyn ClusterAdmin>, AdminError> {
        let header = key.map(|k| k.header().to_str().unwrap().to_string());
        self.0.keys.lock().unwrap().push(header);
        Ok(self.0.clone())
    }
}

/// A client talking to a mocked API server.
pub fn mock_client() -> (Client, MockApi) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), MockApi(handle))
}

/// A context whose client talks to a mocked API server and whose admin
/// calls go to `fake`.
pub fn test_context(fake: Arc<FakeAdmin>) -> (Arc<Context>, MockApi) {
    let (client, api) = mock_client();
    let ctx = Context::new(client, Arc::new(FakeFactory(fake)));
    (Arc::new(ctx), api)
}

/// The admin key in [`admin_key_secret`], as the operator must send it.
pub const ADMIN_KEY_HEADER: &str = "Bearer s3cret-admin-key";

/// The Secret `demo-admin-key` the fixture cluster's
/// `auth.adminKeySecretRef` names (key `api-key`, with the trailing newline
/// a file made with `echo` has).
pub fn admin_key_secret() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "demo-admin-key", "namespace": "default" },
        // "s3cret-admin-key\n"
        "data": { "api-key": "czNjcmV0LWFkbWluLWtleQo=" },
    })
}

/// A cluster `demo` in `default` with `shards` shard replicas, secured as
/// the CRD's defaults and its required fields make it: an auth config
/// Secret, the operator's admin key, mutual TLS with issued certificates.
pub fn cluster(shards: i32) -> RuLakeCluster {
    let mut cluster = RuLakeCluster::new(
        "demo",
        RuLakeClusterSpec {
            image: "rulake/rulake:0.1.0".into(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            meta: MetaSpec {
                replicas: 3,
                storage: StorageSpec {
                    size: Quantity("1Gi".into()),
                    storage_class_name: None,
                },
                resources: None,
                pod: PodOptions::default(),
            },
            shards: ShardSpec {
                replicas: shards,
                cache_memory: Quantity("1Gi".into()),
                storage: None,
                resources: None,
                pod: PodOptions::default(),
            },
            coordinators: CoordinatorSpec::default(),
            object_store: None,
            managed_url: None,
            source_allow: vec!["s3://lake/".into()],
            auth: Some(AuthSpec {
                secret_ref: Some(SecretKeyRef {
                    name: "demo-auth".into(),
                    key: "auth.json".into(),
                }),
                allow_anonymous: false,
                admin_key_secret_ref: Some(SecretKeyRef {
                    name: "demo-admin-key".into(),
                    key: "api-key".into(),
                }),
            }),
            tls: None,
            monitoring: MonitoringSpec::default(),
            backup: None,
        },
    );
    cluster.metadata.namespace = Some("default".into());
    cluster.metadata.uid = Some("uid-demo".into());
    cluster.metadata.generation = Some(2);
    cluster
}

/// A collection `items` of cluster `demo` from Parquet on S3, with the
/// finalizer already in place.
pub fn collection() -> RuLakeCollection {
    let mut collection = RuLakeCollection::new(
        "items",
        RuLakeCollectionSpec {
            cluster_ref: ClusterRef {
                name: "demo".into(),
            },
            source: CollectionSource {
                parquet: Some(ParquetSource {
                    url: "s3://lake/items/".into(),
                    id_column: "id".into(),
                    vector_column: "embedding".into(),
                    options: Default::default(),
                }),
                ..Default::default()
            },
            dimension: 8,
            metric: Metric::Cosine,
            partitions: 4,
            replication_factor: 2,
            consistency: Consistency::default(),
            rerank: Some(40),
            nprobe: None,
            target_recall: None,
            payload_columns: Vec::new(),
            standing_filter: None,
        },
    );
    collection.metadata.namespace = Some("default".into());
    collection.metadata.uid = Some("uid-items".into());
    collection.metadata.generation = Some(1);
    collection.metadata.finalizers = Some(vec![COLLECTION_FINALIZER.into()]);
    collection
}

/// The condition `type_` in a status patch body.
pub fn condition(body: &Value, type_: &str) -> (String, String) {
    let c = body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {body}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}
