//! The observability port has no authentication, so it must tell nothing
//! an attacker could use: against a real server (the API behind the auth
//! layer and the gRPC metrics layer, the real engine, `/readyz` and
//! `/metrics` read over TCP), a collection whose first load failed with an
//! error naming its path leaves `/readyz` saying only how many things wait,
//! and `/metrics` without the path, the file or any option value. The
//! details stay behind the API's authentication.

use pb::collection_service_client::CollectionServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_api::{router, Api, Limits};
use rulake_auth::{key_digest, AuthConfig, AuthLayer};
use rulake_metrics::engine::{shard_ready, EngineCollector};
use rulake_metrics::http::Endpoints;
use rulake_metrics::lake::LakeCollector;
use rulake_metrics::{GrpcMetrics, Metrics};
use rulake_proto::v1 as pb;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DIM: usize = 4;
/// Part of the lake's path on the server: never to be shown unauthenticated.
const LAKE_DIR: &str = "tenant-b-private-lake";
const FILE: &str = "part-0.parquet";
/// An option value: never to be shown to anyone.
const REGION: &str = "eu-sentinel-region-7";

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
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

fn req<T>(cred: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {cred}").parse().unwrap());
    r
}

fn spec(url: &str) -> pb::CollectionSpec {
    pb::CollectionSpec {
        name: "pub-lake".into(),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                url: url.into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                options: [("aws_region".to_string(), REGION.to_string())].into(),
            })),
        }),
        dimension: DIM as u32,
        metric: pb::Metric::L2 as i32,
        partitions: 1,
        ..Default::default()
    }
}

fn assert_tells_nothing(what: &str, body: &str, lake: &std::path::Path) {
    for secret in [LAKE_DIR, FILE, REGION, lake.to_str().unwrap()] {
        assert!(!body.contains(secret), "{what} shows {secret:?}:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_show_no_paths_urls_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"api_keys": [
            {{"name": "root", "sha256": "{}", "grants": ["admin:*"]}},
            {{"name": "reader", "sha256": "{}", "grants": ["read:pub*"]}}
        ]}}"#,
        key_digest("root-key"),
        key_digest("reader-key"),
    );
    let auth = AuthConfig::from_json(&config, dir.path()).unwrap();
    let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig::new(
        dir.path().join("data"),
    ))
    .await
    .unwrap();
    let engine = node.coordinator.engine().clone();

    // The server as `rulake serve` stacks it: metrics, auth, the API.
    let metrics = Metrics::new();
    metrics
        .register(Box::new(EngineCollector::new(engine.clone()).unwrap()))
        .unwrap();
    metrics
        .register(Box::new(LakeCollector::new().unwrap()))
        .unwrap();
    let e = engine.clone();
    let grpc = GrpcMetrics::new(&metrics, move |c| e.has_collection(c)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(grpc.layer())
            .layer(AuthLayer::new(auth))
            .add_routes(router(Api::new(
                node.coordinator.clone(),
                Limits::default(),
            )))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let port = rulake_metrics::http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = port.local_addr().unwrap();
    let shard = engine.clone();
    tokio::spawn(
        Endpoints::new(metrics)
            .ready_when(move || shard_ready(&shard))
            .serve(port, std::future::pending()),
    );
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // A collection over a lake directory, whose file is then spoiled, so
    // its first load fails with an error that names the file.
    let lake = dir.path().join(LAKE_DIR);
    std::fs::create_dir_all(&lake).unwrap();
    let ids: Vec<u64> = (0..20).collect();
    let flat: Vec<f32> = ids.iter().flat_map(|&i| vec![i as f32; DIM]).collect();
    rulake_lake::write_parquet_file(
        &lake.join(FILE),
        rulake_lake::IdsRef::U64(&ids),
        &flat,
        DIM,
        10,
    )
    .unwrap();
    let mut coll = CollectionServiceClient::new(ch.clone());
    coll.create_collection(req(
        "root-key",
        pb::CreateCollectionRequest {
            spec: Some(spec(lake.to_str().unwrap())),
        },
    ))
    .await
    .unwrap();
    std::fs::write(lake.join(FILE), b"not a parquet file at all").unwrap();
    let first_load = engine.refresh("pub-lake").await;
    assert!(first_load.is_err(), "{first_load:?}");
    // A query, so the gRPC families carry the collection and its error.
    let searched = SearchServiceClient::new(ch.clone())
        .search(req(
            "reader-key",
            pb::SearchRequest {
                collection: "pub-lake".into(),
                query: Some(pb::Vector {
                    values: vec![1.0; DIM],
                }),
                params: Some(pb::SearchParams {
                    k: 3,
                    ..Default::default()
                }),
            },
        ))
        .await;
    assert!(searched.is_err(), "{searched:?}");

    let (status, body) = get(http, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "not ready: 1 waiting\n");
    assert_tells_nothing("/readyz", &body, &lake);
    let (status, body) = get(http, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_tells_nothing("/metrics", &body, &lake);
    // What it may show: that the collection's source is failing.
    assert!(
        body.contains("rulake_collection_source_error{collection=\"pub-lake\"} 1"),
        "{body}"
    );

    // The details are behind authentication: a reader of the collection
    // sees why it failed (never an option value); nobody else does.
    let info = coll
        .describe_collection(req(
            "reader-key",
            pb::DescribeCollectionRequest {
                name: "pub-lake".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.state, pb::CollectionState::Failed as i32, "{info:?}");
    assert!(info.last_error.contains(FILE), "{info:?}");
    assert!(!format!("{info:?}").contains(REGION), "{info:?}");
    let anonymous = coll
        .describe_collection(pb::DescribeCollectionRequest {
            name: "pub-lake".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    node.shutdown().await;
}
