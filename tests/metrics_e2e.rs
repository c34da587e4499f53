//! Metric values move as they should, against real parts: a tonic server
//! on loopback serving the real API through the metrics layer, the real
//! engine and cache, a real single-member Raft group, and the HTTP
//! endpoints read over TCP.

use rulake_api::{router, Api, Limits};
use rulake_datasets::ClusteredGaussian;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{write_parquet_file, IdsRef, MemorySource};
use rulake_metrics::engine::{shard_ready, EngineCollector};
use rulake_metrics::http::Endpoints;
use rulake_metrics::raft::{meta_ready, RaftCollector};
use rulake_metrics::{GrpcMetrics, Metrics};
use rulake_proto::v1 as pb;
use rulake_types::{SearchParams, VectorId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DIM: usize = 16;

/// Stands in for the handlers' `set_collection` calls: names the collection
/// from a request header, inside the call's future as a handler would.
#[derive(Clone)]
struct NameFromHeader<S>(S);

impl<S, B> tower_service::Service<http::Request<B>> for NameFromHeader<S>
where
    S: tower_service::Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let name = req
            .headers()
            .get("x-collection")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let fut = self.0.call(req);
        Box::pin(async move {
            if let Some(n) = name {
                rulake_telemetry::set_collection(&n);
            }
            fut.await
        })
    }
}

#[derive(Clone)]
struct NameFromHeaderLayer;
impl<S> tower_layer::Layer<S> for NameFromHeaderLayer {
    type Service = NameFromHeader<S>;
    fn layer(&self, s: S) -> Self::Service {
        NameFromHeader(s)
    }
}

fn write_lake(dir: &std::path::Path) {
    let g = ClusteredGaussian::new(DIM, 8, 0.2, 5);
    let data = g.sample(2000, 1);
    let ids: Vec<u64> = (0..2000).collect();
    write_parquet_file(
        &dir.join("part-0.parquet"),
        IdsRef::U64(&ids),
        &data,
        DIM,
        500,
    )
    .unwrap();
}

fn with_name<T>(msg: T, name: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-collection", name.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_counted_and_timed_by_method_collection_and_code() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig::new(
        dir.path().join("data"),
    ))
    .await
    .unwrap();
    let engine = Arc::new(node.coordinator.engine().clone());
    let metrics = Metrics::new();
    let e = engine.clone();
    let grpc = GrpcMetrics::new(&metrics, move |c| e.has_collection(c)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(grpc.layer())
            .layer(NameFromHeaderLayer)
            .add_routes(router(Api::new(
                node.coordinator.clone(),
                Limits::default(),
            )))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut coll = pb::collection_service_client::CollectionServiceClient::new(channel.clone());
    let mut search = pb::search_service_client::SearchServiceClient::new(channel.clone());
    let mut data = pb::data_service_client::DataServiceClient::new(channel);
    coll.create_collection(with_name(
        pb::CreateCollectionRequest {
            spec: Some(pb::CollectionSpec {
                name: "c".into(),
                source: Some(pb::Source {
                    kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                        url: dir.path().to_str().unwrap().into(),
                        id_column: "id".into(),
                        vector_column: "vector".into(),
                        options: Default::default(),
                    })),
                }),
                dimension: DIM as u32,
                metric: pb::Metric::L2 as i32,
                partitions: 2,
                ..Default::default()
            }),
        },
        "c",
    ))
    .await
    .unwrap();

    let search_labels = |collection: &'static str, code: &'static str| {
        [
            ("service", "rulake.v1.SearchService"),
            ("method", "Search"),
            ("collection", collection),
            ("code", code),
        ]
    };
    let count = |name: &str, l: &[(&str, &str)]| metrics.sample(name, l).unwrap_or(0.0);
    let req = |name: &str| {
        with_name(
            pb::SearchRequest {
                collection: name.into(),
                query: Some(pb::Vector {
                    values: vec![0.1; DIM],
                }),
                params: Some(pb::SearchParams {
                    k: 5,
                    nprobe: None,
                    rerank: None,
                    ..Default::default()
                }),
            },
            name,
        )
    };
    let ok = search_labels("c", "OK");
    assert_eq!(count("rulake_grpc_requests_total", &ok), 0.0);
    for i in 1..=3 {
        search.search(req("c")).await.unwrap();
        assert_eq!(count("rulake_grpc_requests_total", &ok), f64::from(i));
        assert_eq!(
            count("rulake_grpc_request_duration_seconds_count", &ok),
            f64::from(i)
        );
    }
    assert!(count("rulake_grpc_request_duration_seconds_sum", &ok) > 0.0);

    // An error answered at once (grpc-status in the headers), for a
    // collection that does not exist: its name never becomes a label.
    let err = search.search(req("no-such")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let nf = search_labels("_unknown", "NOT_FOUND");
    assert_eq!(count("rulake_grpc_requests_total", &nf), 1.0);
    assert_eq!(
        count("rulake_grpc_request_duration_seconds_count", &nf),
        1.0
    );
    assert!(!metrics.encode().unwrap().contains("no-such"));

    // A client-streaming call counts when it completes.
    let err = data
        .ingest(futures::stream::iter(vec![pb::IngestRequest::default()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        count(
            "rulake_grpc_requests_total",
            &[
                ("service", "rulake.v1.DataService"),
                ("method", "Ingest"),
                ("code", "INVALID_ARGUMENT")
            ]
        ),
        1.0
    );
    assert_eq!(
        metrics.sample("rulake_grpc_requests_in_flight", &[]),
        Some(0.0)
    );
}

fn memory_collection(e: &RuLake, name: &str, rows: usize) {
    let g = ClusteredGaussian::new(DIM, 8, 0.2, 5);
    let m = MemorySource::new(name, DIM);
    m.add(
        g.sample(rows, 1)
            .chunks(DIM)
            .enumerate()
            .map(|(i, x)| (VectorId::U64(i as u64), x.to_vec())),
    )
    .unwrap();
    e.register_source(name, m).unwrap();
    e.create_collection(CollectionSpec::new(name, name, DIM))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_misses_hits_and_evictions_move_under_a_small_budget() {
    let e = RuLake::new(CacheConfig {
        budget_bytes: 200_000,
        persist_dir: None,
    });
    let metrics = Metrics::new();
    metrics
        .register(Box::new(EngineCollector::new(e.clone()).unwrap()))
        .unwrap();
    memory_collection(&e, "x", 1000);
    memory_collection(&e, "y", 1000);
    let v = |n: &str| metrics.sample(n, &[]).unwrap();
    let q = vec![0.1; DIM];
    let p = SearchParams::k(3);
    assert_eq!(
        (v("rulake_cache_hits_total"), v("rulake_cache_misses_total")),
        (0.0, 0.0)
    );

    e.search("x", &q, p).await.unwrap();
    let hits = v("rulake_cache_hits_total");
    assert!(hits >= 1.0);
    assert_eq!(v("rulake_cache_builds_total"), 1.0);
    assert!(v("rulake_cache_build_seconds_total") > 0.0);
    assert_eq!(
        metrics.sample("rulake_collection_partitions_warm", &[("collection", "x")]),
        Some(1.0)
    );

    // y does not fit beside x: x is evicted.
    e.search("y", &q, p).await.unwrap();
    assert_eq!(v("rulake_cache_evictions_total"), 1.0);
    assert_eq!(
        metrics.sample("rulake_collection_partitions_warm", &[("collection", "x")]),
        Some(0.0)
    );
    assert!(v("rulake_cache_bytes") <= v("rulake_cache_budget_bytes"));

    // x again: a miss (rebuilt), then hits.
    let misses = v("rulake_cache_misses_total");
    e.search("x", &q, p).await.unwrap();
    assert_eq!(v("rulake_cache_misses_total"), misses + 1.0);
    let hits = v("rulake_cache_hits_total");
    e.search("x", &q, p).await.unwrap();
    assert_eq!(v("rulake_cache_hits_total"), hits + 1.0);
    assert_eq!(v("rulake_cache_misses_total"), misses + 1.0);

    // Fan-out and the recall families are there from the first scrape.
    assert_eq!(v("rulake_search_queries_total"), 4.0);
    assert_eq!(v("rulake_search_partitions_searched_total"), 4.0);
    assert_eq!(v("rulake_search_retries_total"), 0.0);

    // A dropped collection's series go with it.
    e.drop_collection("y").unwrap();
    assert_eq!(
        metrics.sample("rulake_collection_partitions", &[("collection", "y")]),
        None
    );
    assert_eq!(
        metrics.sample("rulake_collection_partitions", &[("collection", "x")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_estimate_is_exported_per_collection() {
    let e = RuLake::with_recall(
        CacheConfig::default(),
        rulake_engine::RecallConfig {
            sample_fraction: 1.0,
            max_scans_per_second: f64::INFINITY,
            ..Default::default()
        },
    );
    let metrics = Metrics::new();
    metrics
        .register(Box::new(EngineCollector::new(e.clone()).unwrap()))
        .unwrap();
    memory_collection(&e, "x", 1000);
    e.search("x", &[0.1; DIM], SearchParams::k(5))
        .await
        .unwrap();
    let t = Instant::now();
    while e.recall_stats().measured < 1 {
        assert!(t.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let want = e.recall_estimates()["x"].recall;
    assert_eq!(
        metrics.sample("rulake_recall_estimate", &[("collection", "x")]),
        Some(want)
    );
    assert_eq!(
        metrics.sample("rulake_recall_measured_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.sample("rulake_recall_dropped_total", &[("reason", "budget")]),
        Some(0.0)
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_until_collections_are_warm_and_metrics_are_served() {
    let e = RuLake::new(CacheConfig::default());
    let metrics = Metrics::new();
    metrics
        .register(Box::new(EngineCollector::new(e.clone()).unwrap()))
        .unwrap();
    let listener = rulake_metrics::http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shard = e.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Endpoints::new(metrics)
            .ready_when(move || shard_ready(&shard))
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    // No collection: nothing to warm.
    assert_eq!(get(addr, "/readyz").await.0, 200);
    memory_collection(&e, "x", 1000);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    // A count, never the collection's name (the port is open).
    assert_eq!(body, "not ready: 1 waiting\n");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    e.refresh("x").await.unwrap();
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE rulake_cache_hits_total counter"),
        "{body}"
    );
    assert!(
        body.contains("rulake_collection_partitions_warm{collection=\"x\"} 1"),
        "{body}"
    );
    assert_eq!(get(addr, "/nope").await.0, 404);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_metrics_follow_a_real_member_and_meta_is_ready_with_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = rulake_catalog::CatalogConfig::new(1, addr, dir.path().to_path_buf());
    let node = rulake_catalog::CatalogNode::start(&cfg).await.unwrap();
    tokio::spawn({
        let node = node.clone();
        async move { node.serve(listener, std::future::pending()).await }
    });
    let metrics = Metrics::new();
    metrics
        .register(Box::new(RaftCollector::start(node.clone()).unwrap()))
        .unwrap();
    assert!(meta_ready(&node).is_err());
    assert_eq!(metrics.sample("rulake_raft_has_leader", &[]), Some(0.0));
    let peers = [(1u64, addr.to_string())].into_iter().collect();
    assert!(node.bootstrap(&peers).await.unwrap());
    let t = Instant::now();
    loop {
        let v = |n: &str| metrics.sample(n, &[]).unwrap();
        if v("rulake_raft_is_leader") == 1.0
            && v("rulake_raft_committed_index") >= 1.0
            && v("rulake_raft_apply_lag") == 0.0
        {
            assert_eq!(v("rulake_raft_has_leader"), 1.0);
            assert_eq!(v("rulake_raft_leader_id"), 1.0);
            assert!(v("rulake_raft_term") >= 1.0);
            assert!(v("rulake_raft_applied_index") >= 1.0);
            assert_eq!(v("rulake_raft_voters"), 1.0);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{}",
            metrics.encode().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(meta_ready(&node), Ok(()));
}

#[test]
fn placement_replaces_the_node_list_on_each_assignment() {
    let metrics = Metrics::new();
    let p = rulake_metrics::placement::PlacementMetrics::new(&metrics).unwrap();
    p.set_assignment(3, [("shard-0", 4), ("shard-1", 2)], 0);
    p.set_assignment(4, [("shard-0", 3), ("shard-2", 3)], 2);
    assert_eq!(metrics.sample("rulake_placement_epoch", &[]), Some(4.0));
    assert_eq!(
        metrics.sample("rulake_placement_node_partitions", &[("node", "shard-2")]),
        Some(3.0)
    );
    assert_eq!(
        metrics.sample("rulake_placement_node_partitions", &[("node", "shard-1")]),
        None
    );
    assert_eq!(
        metrics.sample("rulake_placement_moves_total", &[]),
        Some(2.0)
    );
}

/// A handler stand-in: answers with the trace context an outgoing call
/// from it would carry, its status in the headers (trailers-only form).
#[derive(Clone)]
struct EchoTrace;

impl tower_service::Service<http::Request<()>> for EchoTrace {
    type Response = http::Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        Box::pin(async {
            rulake_telemetry::set_collection("c");
            let mut r = http::Response::new(http_body_util::Empty::new());
            let mut h = http::HeaderMap::new();
            rulake_telemetry::inject(&mut h, &rulake_telemetry::outgoing());
            r.headers_mut().extend(h);
            r.headers_mut().insert("grpc-status", "5".parse().unwrap());
            Ok(r)
        })
    }
}

#[tokio::test]
async fn calls_continue_the_callers_trace_and_trailers_only_errors_count_at_once() {
    use rulake_telemetry::{extract, TraceContext, TRACEPARENT};
    use tower_layer::Layer;
    use tower_service::Service;
    let metrics = Metrics::new();
    let grpc = GrpcMetrics::new(&metrics, |c| c == "c").unwrap();
    let mut svc = grpc.layer().layer(EchoTrace);
    let caller = TraceContext::new_root();
    let req = http::Request::builder()
        .uri("/rulake.v1.SearchService/Search")
        .header(TRACEPARENT, caller.to_string())
        .body(())
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    let sent = extract(resp.headers()).expect("an outgoing traceparent");
    assert_eq!(sent.trace_id, caller.trace_id);
    assert_ne!(sent.span_id, caller.span_id);
    // Counted before the (empty) body is read: the status was in the headers.
    let l = [
        ("method", "Search"),
        ("collection", "c"),
        ("code", "NOT_FOUND"),
    ];
    assert_eq!(metrics.sample("rulake_grpc_requests_total", &l), Some(1.0));
    drop(resp);
    assert_eq!(metrics.sample("rulake_grpc_requests_total", &l), Some(1.0));

    // Without a caller's trace, a new one starts.
    let req = http::Request::builder()
        .uri("/rulake.v1.SearchService/Search")
        .body(())
        .unwrap();
    let resp = svc.call(req).await.unwrap();
    assert_ne!(extract(resp.headers()).unwrap().trace_id, caller.trace_id);
    assert_eq!(metrics.sample("rulake_grpc_requests_total", &l), Some(2.0));
}

type Frames = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>
            + Send,
    >,
>;

/// Answers every call with the body `make` returns and no status header.
#[derive(Clone)]
struct Streaming(fn() -> Frames);

impl tower_service::Service<http::Request<()>> for Streaming {
    type Response = http::Response<http_body_util::StreamBody<Frames>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(http_body_util::StreamBody::new(
            (self.0)(),
        ))))
    }
}

#[tokio::test]
async fn streamed_calls_count_at_their_trailers_or_as_cancelled_when_dropped() {
    use http_body_util::BodyExt;
    use tower_layer::Layer;
    use tower_service::Service;
    let metrics = Metrics::new();
    let grpc = GrpcMetrics::new(&metrics, |_| false).unwrap();
    let req = || {
        http::Request::builder()
            .uri("/rulake.v1.SearchService/Export")
            .body(())
            .unwrap()
    };
    let count = |code: &str| {
        metrics
            .sample("rulake_grpc_requests_total", &[("code", code)])
            .unwrap_or(0.0)
    };

    let mut ok = grpc.layer().layer(Streaming(|| {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        Box::pin(futures::stream::iter(vec![
            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"m1"))),
            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"m2"))),
            Ok(http_body::Frame::trailers(t)),
        ]))
    }));
    let mut body = ok.call(req()).await.unwrap().into_body();
    // Not over until the trailers pass.
    body.frame().await.unwrap().unwrap();
    assert_eq!(count("OK"), 0.0);
    assert_eq!(
        metrics.sample("rulake_grpc_requests_in_flight", &[]),
        Some(1.0)
    );
    while body.frame().await.is_some() {}
    assert_eq!(count("OK"), 1.0);
    assert_eq!(
        metrics.sample("rulake_grpc_requests_in_flight", &[]),
        Some(0.0)
    );

    let mut stuck = grpc
        .layer()
        .layer(Streaming(|| Box::pin(futures::stream::pending())));
    let resp = stuck.call(req()).await.unwrap();
    assert_eq!(count("CANCELLED"), 0.0);
    drop(resp);
    assert_eq!(count("CANCELLED"), 1.0);
    assert_eq!(
        metrics.sample(
            "rulake_grpc_request_duration_seconds_count",
            &[("collection", "_unknown"), ("code", "CANCELLED")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_reads_through_the_engine_are_exported_per_source_kind() {
    use rulake_lake::{ParquetSource, ParquetSourceConfig};
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let size = std::fs::metadata(dir.path().join("part-0.parquet"))
        .unwrap()
        .len() as f64;
    let metrics = Metrics::new();
    metrics
        .register(Box::new(
            rulake_metrics::lake::LakeCollector::new().unwrap(),
        ))
        .unwrap();
    let v = |name: &str, kind: &str| {
        metrics
            .sample(name, &[("kind", kind)])
            .unwrap_or_else(|| panic!("no {name}{{kind={kind:?}}}"))
    };
    const BYTES: &str = "rulake_lake_read_bytes_total";
    const REQUESTS: &str = "rulake_lake_read_requests_total";
    const ERRORS: &str = "rulake_lake_read_errors_total";

    // The label set is closed and known before anything is read: the
    // object kinds for bytes and requests, the memory source for errors.
    for kind in ["parquet", "delta", "iceberg", "managed"] {
        v(BYTES, kind);
        v(REQUESTS, kind);
        v(ERRORS, kind);
    }
    v(ERRORS, "memory");
    assert_eq!(metrics.sample(BYTES, &[("kind", "memory")]), None);
    let text = metrics.encode().unwrap();
    for line in text.lines().filter(|l| l.starts_with("rulake_lake_")) {
        let labels = &line[line.find('{').unwrap()..line.find('}').unwrap() + 1];
        assert!(
            labels.starts_with("{kind=\"") && labels.matches('=').count() == 1,
            "{line}"
        );
    }
    assert!(text.contains("# TYPE rulake_lake_read_bytes_total counter"));

    // Loading a collection reads the file's footer and row groups.
    let (bytes, requests, errors) = (
        v(BYTES, "parquet"),
        v(REQUESTS, "parquet"),
        v(ERRORS, "parquet"),
    );
    let e = RuLake::new(CacheConfig::default());
    let src = ParquetSource::open(ParquetSourceConfig::new(
        dir.path().to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    e.register_source("lake", Arc::new(src)).unwrap();
    e.create_collection(CollectionSpec::new("c", "lake", DIM))
        .unwrap();
    e.refresh("c").await.unwrap();
    assert!(v(BYTES, "parquet") - bytes >= size, "{size} bytes of file");
    // A footer and four row groups.
    assert!(v(REQUESTS, "parquet") - requests >= 5.0);
    assert_eq!(v(ERRORS, "parquet"), errors, "nothing failed");

    // A corrupt file appears: the engine's next listing fails, and that
    // is a parquet read error.
    std::fs::write(dir.path().join("part-1.parquet"), b"not parquet at all").unwrap();
    assert!(e.refresh("c").await.is_err());
    assert!(v(ERRORS, "parquet") - errors >= 1.0);
}
