//! `rulake-operator search`, the command of the chart's `helm test` hook,
//! against a real `rulake.v1` server on loopback: it passes on a collection
//! that answers and fails on one that does not exist.

use rulake_proto::v1 as pb;
use std::process::Command;

const DIM: usize = 8;

async fn start() -> (String, tempfile::TempDir, rulake_coordinator::Embedded) {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = (0..300).collect();
    let vectors: Vec<f32> = (0..300 * DIM)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    rulake_lake::write_parquet_file(
        &dir.path().join("part-0.parquet"),
        rulake_lake::IdsRef::U64(&ids),
        &vectors,
        DIM,
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

fn search(endpoint: &str, collection: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rulake-operator"))
        .args([
            "search",
            "--endpoint",
            endpoint,
            "--collection",
            collection,
            "--k",
            "5",
        ])
        .output()
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_passes_on_an_answering_collection_and_fails_otherwise() {
    let (endpoint, lake, _node) = start().await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let spec = pb::CollectionSpec {
        name: "items".into(),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                url: lake.path().to_str().unwrap().into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                options: Default::default(),
            })),
        }),
        dimension: DIM as u32,
        metric: pb::Metric::L2 as i32,
        partitions: 2,
        replication_factor: 1,
        ..Default::default()
    };
    pb::collection_service_client::CollectionServiceClient::new(channel)
        .create_collection(pb::CreateCollectionRequest { spec: Some(spec) })
        .await
        .expect("collection created");

    let ok = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || search(&endpoint, "items")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("items: 5 hits"), "{stdout}");
    assert!(stdout.contains("(2/2 partitions answered)"), "{stdout}");

    let missing = tokio::task::spawn_blocking(move || search(&endpoint, "nope"))
        .await
        .unwrap();
    assert!(
        !missing.status.success(),
        "a missing collection fails the test hook"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
}
