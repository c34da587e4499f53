//! The limits that protect a server from one client, against a real server
//! on loopback: calls in flight per connection, and the size of one Ingest
//! stream. A refused call answers `RESOURCE_EXHAUSTED` at once, names the
//! limit, and changes nothing.

mod support;

use pb::collection_service_client::CollectionServiceClient;
use pb::data_service_client::DataServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_api::Limits;
use rulake_datasets::ClusteredGaussian;
use rulake_lake::{write_parquet_file, IdsRef};
use rulake_proto::v1 as pb;
use tonic::Code;

fn spec(name: &str, source: pb::source::Kind, dim: usize) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        spec: Some(pb::CollectionSpec {
            name: name.into(),
            source: Some(pb::Source { kind: Some(source) }),
            dimension: dim as u32,
            metric: pb::Metric::L2 as i32,
            partitions: 1,
            ..Default::default()
        }),
    }
}

fn exhaustive(queries: &[f32], dim: usize, k: u32) -> pb::BatchSearchRequest {
    pb::BatchSearchRequest {
        collection: "c".into(),
        queries: queries
            .chunks(dim)
            .map(|q| pb::Vector { values: q.to_vec() })
            .collect(),
        params: Some(pb::SearchParams {
            k,
            nprobe: Some(1 << 20),
            rerank: Some(1 << 20),
            ..Default::default()
        }),
    }
}

/// More calls in flight on one connection than the limit: the excess is
/// refused at once while the others run to completion; another connection
/// is served meanwhile; the connection is usable again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_per_connection_limit_are_refused_not_queued() {
    const DIM: usize = 32;
    const N: usize = 20_000;
    const LIMIT: usize = 2;
    const CALLS: usize = 6;
    let lake = tempfile::tempdir().unwrap();
    let data = ClusteredGaussian::new(DIM, 16, 0.3, 11).sample(N, 1);
    let ids: Vec<u64> = (0..N as u64).collect();
    write_parquet_file(
        &lake.path().join("p.parquet"),
        IdsRef::U64(&ids),
        &data,
        DIM,
        5000,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = support::serve(
        dir.path(),
        Limits {
            max_concurrent_per_connection: LIMIT,
            ..Limits::default()
        },
    )
    .await;
    CollectionServiceClient::new(server.channel.clone())
        .create_collection(spec(
            "c",
            pb::source::Kind::Parquet(pb::ParquetSource {
                url: lake.path().to_str().unwrap().into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                options: Default::default(),
            }),
            DIM,
        ))
        .await
        .unwrap();
    let queries = ClusteredGaussian::new(DIM, 16, 0.3, 11).sample(1024, 2);
    // Warm the cache, so the calls below are slow by their own work: 1,024
    // exact scans of 20,000 vectors each.
    let search = |ch: &tonic::transport::Channel| {
        let mut c = SearchServiceClient::new(ch.clone());
        let q = queries[..DIM].to_vec();
        async move { c.batch_search(exhaustive(&q, DIM, 10)).await }
    };
    search(&server.channel).await.unwrap();

    // All calls over the one connection of `server.channel`. On a loaded
    // machine an admitted batch can finish before every excess call has
    // reached the server (which then admits it, correctly); such a burst
    // proves nothing either way, so it is tried again.
    let mut clean = false;
    for _attempt in 0..5 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..CALLS {
            let mut c = SearchServiceClient::new(server.channel.clone());
            let req = exhaustive(&queries, DIM, 100);
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = c.batch_search(req).await;
                let _ = tx.send(r.map(|_| ()));
            });
        }
        drop(tx);
        let mut outcomes = Vec::new();
        while outcomes.len() < CALLS - LIMIT {
            outcomes.push(rx.recv().await.expect("every call answers"));
        }
        let first_refused = outcomes.iter().all(|r| r.is_err());
        if first_refused {
            // The connection is at its limit now; another one is not
            // limited by it.
            let other = support::connect(server.addr).await;
            search(&other).await.expect("a second connection is served");
        }
        while let Some(r) = rx.recv().await {
            outcomes.push(r);
        }
        assert_eq!(outcomes.len(), CALLS, "every call answers");
        for st in outcomes.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
            assert!(
                st.message().contains("--max-concurrent-per-connection")
                    && st.message().contains(&LIMIT.to_string()),
                "the refusal names the limit and what to do: {st:?}"
            );
        }
        let refused = outcomes.iter().filter(|r| r.is_err()).count();
        assert!(refused <= CALLS - LIMIT, "more refused than over the limit");
        if first_refused {
            // The admitted calls ran to completion.
            assert_eq!(refused, CALLS - LIMIT);
            clean = true;
            break;
        }
    }
    assert!(
        clean,
        "in five bursts the excess calls were never all refused while the admitted ones ran"
    );
    // Their slots are given back: the first connection is served again.
    for _ in 0..LIMIT + 1 {
        search(&server.channel).await.unwrap();
    }
    server.stop().await;
}

fn records(ids: std::ops::Range<u64>, dim: usize) -> Vec<pb::Record> {
    ids.map(|id| pb::Record {
        id: Some(pb::VectorId {
            id: Some(pb::vector_id::Id::Num(id)),
        }),
        vector: Some(pb::Vector {
            values: (0..dim).map(|j| (id as f32) * 0.001 + j as f32).collect(),
        }),
        ..Default::default()
    })
    .collect()
}

async fn ingest(
    ch: &tonic::transport::Channel,
    recs: Vec<pb::Record>,
) -> Result<pb::IngestResponse, tonic::Status> {
    let mut msgs = vec![pb::IngestRequest {
        message: Some(pb::ingest_request::Message::Header(pb::IngestHeader {
            collection: "m".into(),
        })),
    }];
    for chunk in recs.chunks(4000) {
        msgs.push(pb::IngestRequest {
            message: Some(pb::ingest_request::Message::Batch(pb::IngestBatch {
                records: chunk.to_vec(),
            })),
        });
    }
    DataServiceClient::new(ch.clone())
        .ingest(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn vector_count(ch: &tonic::transport::Channel) -> u64 {
    CollectionServiceClient::new(ch.clone())
        .describe_collection(pb::DescribeCollectionRequest { name: "m".into() })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
        .vector_count
}

/// Files anywhere under `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// An Ingest stream over the record limit is refused after the server has
/// already written a full file of it: the refusal commits nothing and
/// deletes that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_over_the_record_limit_commits_nothing_and_leaves_no_file() {
    const DIM: usize = 4;
    let limit = rulake_coordinator::ingest::FILE_ROWS as u64 + 1;
    let dir = tempfile::tempdir().unwrap();
    let server = support::serve(
        dir.path(),
        Limits {
            max_ingest_records: limit,
            ..Limits::default()
        },
    )
    .await;
    let ch = server.channel.clone();
    CollectionServiceClient::new(ch.clone())
        .create_collection(spec(
            "m",
            pb::source::Kind::Managed(pb::ManagedSource {}),
            DIM,
        ))
        .await
        .unwrap();
    ingest(&ch, records(0..1000, DIM)).await.unwrap();
    let managed = dir.path().join("managed");
    let before = files(&managed);
    assert!(!before.is_empty());
    assert_eq!(vector_count(&ch).await, 1000);

    let st = ingest(&ch, records(1000..1000 + limit + 10, DIM))
        .await
        .expect_err("over the limit");
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(
        st.message().contains("--max-ingest-records") && st.message().contains("nothing"),
        "{st:?}"
    );
    assert_eq!(vector_count(&ch).await, 1000, "nothing was committed");
    assert_eq!(files(&managed), before, "the refused ingest left no file");

    // Exactly the limit is accepted.
    let r = ingest(&ch, records(1000..1000 + limit, DIM)).await.unwrap();
    assert_eq!(r.records, limit);
    assert_eq!(vector_count(&ch).await, 1000 + limit);
    server.stop().await;
}

/// The byte limit counts vectors and ids; the refusal names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_over_the_byte_limit_is_refused_whole() {
    const DIM: usize = 4;
    // A u64 id and 4 floats: 24 bytes a record; room for 100.
    let dir = tempfile::tempdir().unwrap();
    let server = support::serve(
        dir.path(),
        Limits {
            max_ingest_bytes: 100 * 24,
            ..Limits::default()
        },
    )
    .await;
    let ch = server.channel.clone();
    CollectionServiceClient::new(ch.clone())
        .create_collection(spec(
            "m",
            pb::source::Kind::Managed(pb::ManagedSource {}),
            DIM,
        ))
        .await
        .unwrap();
    let st = ingest(&ch, records(0..101, DIM)).await.unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("--max-ingest-bytes"), "{st:?}");
    assert_eq!(vector_count(&ch).await, 0);
    assert_eq!(
        ingest(&ch, records(0..100, DIM)).await.unwrap().records,
        100
    );
    server.stop().await;
}
