//! A trace crosses coordinator → shard: the client's `traceparent` reaches
//! the coordinator's `grpc` span, the router carries it (the coordinator's
//! span as parent) to the shard over real gRPC on loopback, and the JSON
//! log lines of both sides carry the same `trace_id`.
//!
//! Both sides run the gRPC metrics layer their servers run in `rulake`;
//! the shard is a stand-in `ShardService` (the real one needs a catalog
//! and a lake, and the trace travels the same way), the coordinator's
//! public API a stand-in handler calling the real [`Router`].

use parking_lot::{Mutex, RwLock};
use rulake_catalog::store::AppliedState;
use rulake_catalog::{CollectionRecord, NodeRecord};
use rulake_coordinator::{Router, RouterConfig};
use rulake_metrics::{GrpcMetrics, Metrics};
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::shard_service_server::{ShardService, ShardServiceServer};
use rulake_telemetry::{LogFormat, TraceContext, TRACEPARENT};
use rulake_types::VectorId;
use std::collections::HashSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tower_layer::Layer;
use tower_service::Service;

/// Log lines, shared with the subscriber.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Which handler ran, in which trace context.
type Seen = Vec<(&'static str, Option<TraceContext>)>;

/// A shard that remembers the trace context each call arrived in.
#[derive(Clone, Default)]
struct StubShard {
    seen: Arc<Mutex<Seen>>,
}

impl StubShard {
    fn saw(&self, what: &'static str) {
        tracing::info!(what, "stub shard handled a call");
        self.seen.lock().push((what, rulake_telemetry::current()));
    }
}

#[tonic::async_trait]
impl ShardService for StubShard {
    async fn scan(&self, _: Request<pb::ScanRequest>) -> Result<Response<pb::ScanReply>, Status> {
        self.saw("scan");
        Err(Status::unimplemented("not in this test"))
    }

    async fn status(
        &self,
        _: Request<pb::ShardStatusRequest>,
    ) -> Result<Response<pb::ShardStatusReply>, Status> {
        Ok(Response::new(pb::ShardStatusReply {
            node_id: 1,
            ..Default::default()
        }))
    }

    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupReply>, Status> {
        self.saw("lookup");
        Ok(Response::new(pb::LookupReply {
            present: req.into_inner().ids,
        }))
    }

    async fn refresh(
        &self,
        _: Request<pb::ShardRefreshRequest>,
    ) -> Result<Response<pb::ShardRefreshReply>, Status> {
        self.saw("refresh");
        Ok(Response::new(pb::ShardRefreshReply {
            generation: "g1".into(),
        }))
    }

    async fn lineage(
        &self,
        _: Request<pb::ShardLineageRequest>,
    ) -> Result<Response<rulake_proto::v1::DescribeGenerationResponse>, Status> {
        self.saw("lineage");
        Err(Status::unimplemented("not in this test"))
    }
}

/// The coordinator's public handler, reduced to what matters here: it
/// calls the real router, which calls the shard.
#[derive(Clone)]
struct Front {
    router: Router,
    rec: CollectionRecord,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Service<http::Request<()>> for Front {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let (router, rec) = (self.router.clone(), self.rec.clone());
        Box::pin(async move {
            let g = router.refresh(&rec).await.expect("the shard refreshes");
            assert_eq!(g.0, "g1");
            let ids: HashSet<VectorId> = [VectorId::U64(7)].into();
            let found = router.lookup(&rec, &ids).await.expect("the shard looks up");
            assert_eq!(found, vec![VectorId::U64(7)]);
            tracing::info!("front answered");
            let mut r = http::Response::new(tonic::body::Body::empty());
            r.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("0"));
            Ok(r)
        })
    }
}

/// The `span` object of the log lines whose span has `path`, as
/// (message, span).
fn lines_of(
    logs: &[serde_json::Value],
    path: &str,
    trace: &str,
) -> Vec<(String, serde_json::Value)> {
    logs.iter()
        .filter(|l| l["span"]["path"] == path && l["span"]["trace_id"] == trace)
        .map(|l| {
            (
                l["fields"]["message"].as_str().unwrap_or("").to_owned(),
                l["span"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_logs_the_trace_id_the_client_sent_to_the_coordinator() {
    let logs = Lines::default();
    let sink = logs.clone();
    rulake_telemetry::init_to(LogFormat::Json, "info", move || sink.clone()).unwrap();

    // The shard: ShardService on loopback behind the metrics layer.
    let shard = StubShard::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let shard_metrics = GrpcMetrics::new(&Metrics::new(), |_| true).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(shard_metrics.layer())
            .add_service(ShardServiceServer::new(shard.clone()))
            .serve_with_incoming(incoming),
    );

    // The coordinator's view: one shard node serving the one partition.
    let rec = CollectionRecord::new("c", "s", 4);
    let mut view = AppliedState::default();
    view.catalog.nodes.insert(
        1,
        NodeRecord {
            id: 1,
            addr: addr.to_string(),
            capacity_bytes: 0,
            draining: false,
        },
    );
    view.catalog.assignment.epoch = 1;
    view.catalog
        .assignment
        .partitions
        .insert("c/0".into(), vec![1]);
    view.catalog.collections.insert("c".into(), rec.clone());
    let router = Router::start(Arc::new(RwLock::new(view)), RouterConfig::default());
    router.refresh_status().await;
    let front_metrics = GrpcMetrics::new(&Metrics::new(), |_| true).unwrap();
    let mut front = front_metrics.layer().layer(Front { router, rec });

    // A client call carrying a trace.
    let client =
        TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
    let call = http::Request::builder()
        .uri("/rulake.v1.CollectionService/RefreshCollection")
        .header(TRACEPARENT, client.to_string())
        .body(())
        .unwrap();
    front.call(call).await.unwrap();

    // The shard's handlers ran inside the client's trace.
    let seen = shard.seen.lock().clone();
    let kinds: Vec<_> = seen.iter().map(|(w, _)| *w).collect();
    assert_eq!(kinds, ["refresh", "lookup"]);
    for (what, ctx) in &seen {
        let ctx = ctx.unwrap_or_else(|| panic!("{what}: no trace context"));
        assert_eq!(ctx.trace_id, client.trace_id, "{what}");
        assert_ne!(ctx.span_id, client.span_id, "{what}: its own span");
    }

    // And the logs of both sides join on trace_id: the coordinator's span
    // continues the client's, each shard span's parent is the
    // coordinator's span.
    let trace = client.trace_id_hex();
    // A shard call's completion is logged when its trailers leave, which
    // may be just after the reply reached the router.
    let complete = |logs: &[serde_json::Value]| {
        logs.iter()
            .filter(|l| {
                l["span"]["trace_id"] == trace.as_str()
                    && l["fields"]["message"] == "grpc call completed"
            })
            .count()
            == 3
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !complete(&logs.json()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logs = logs.json();
    let front_lines = lines_of(
        &logs,
        "/rulake.v1.CollectionService/RefreshCollection",
        &trace,
    );
    let messages: Vec<&str> = front_lines.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        messages,
        ["front answered", "grpc call completed"],
        "{logs:#?}"
    );
    let front_span = &front_lines[0].1;
    assert_eq!(front_span["parent_id"], client.span_id_hex());
    let front_span_id = front_span["span_id"].as_str().unwrap();
    assert_ne!(front_span_id, client.span_id_hex());
    for method in ["Refresh", "Lookup"] {
        let lines = lines_of(
            &logs,
            &format!("/rulake.internal.v1.ShardService/{method}"),
            &trace,
        );
        let messages: Vec<&str> = lines.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            messages,
            ["stub shard handled a call", "grpc call completed"],
            "{method}: {logs:#?}"
        );
        for (_, span) in &lines {
            assert_eq!(span["parent_id"], front_span_id, "{method}");
            assert_ne!(span["span_id"], front_span_id, "{method}");
        }
    }

    // A client call without a trace: the coordinator starts one, and the
    // shard continues that one.
    shard.seen.lock().clear();
    let call = http::Request::builder()
        .uri("/rulake.v1.CollectionService/RefreshCollection")
        .body(())
        .unwrap();
    front.call(call).await.unwrap();
    let seen = shard.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    let started = seen[0].1.unwrap().trace_id;
    assert_ne!(started, client.trace_id);
    assert!(seen.iter().all(|(_, c)| c.unwrap().trace_id == started));
}
