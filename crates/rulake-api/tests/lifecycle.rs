//! Managed collections, deletes, aliases, deadlines and restarts against a
//! real server on loopback: what is committed survives and is searched
//! exactly; what is not committed is never seen.

mod support;

use support::code_of;

use pb::collection_service_client::CollectionServiceClient;
use pb::data_service_client::DataServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_datasets::ClusteredGaussian;
use rulake_index::exact;
use rulake_proto::v1 as pb;
use rulake_types::Metric;
use std::time::Duration;
use tonic::Code;

const DIM: usize = 8;

fn managed(name: &str, partitions: u32) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        spec: Some(pb::CollectionSpec {
            name: name.into(),
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::Managed(pb::ManagedSource {})),
            }),
            dimension: DIM as u32,
            metric: pb::Metric::L2 as i32,
            partitions,
            ..Default::default()
        }),
    }
}

/// A collection over the Parquet files in `dir`.
fn external(name: &str, dir: &std::path::Path) -> pb::CreateCollectionRequest {
    let mut req = managed(name, 1);
    req.spec.as_mut().unwrap().source = Some(pb::Source {
        kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
            url: dir.to_str().unwrap().into(),
            id_column: "id".into(),
            vector_column: "vector".into(),
            options: Default::default(),
        })),
    });
    req
}

fn records(ids: std::ops::Range<u64>, data: &[f32]) -> Vec<pb::Record> {
    ids.enumerate()
        .map(|(i, id)| pb::Record {
            id: Some(pb::VectorId {
                id: Some(pb::vector_id::Id::Num(id)),
            }),
            vector: Some(pb::Vector {
                values: data[i * DIM..(i + 1) * DIM].to_vec(),
            }),
            ..Default::default()
        })
        .collect()
}

fn header(collection: &str) -> pb::IngestRequest {
    pb::IngestRequest {
        message: Some(pb::ingest_request::Message::Header(pb::IngestHeader {
            collection: collection.into(),
        })),
    }
}

fn batch(records: Vec<pb::Record>) -> pb::IngestRequest {
    pb::IngestRequest {
        message: Some(pb::ingest_request::Message::Batch(pb::IngestBatch {
            records,
        })),
    }
}

async fn ingest(
    ch: &tonic::transport::Channel,
    collection: &str,
    recs: Vec<pb::Record>,
) -> Result<pb::IngestResponse, tonic::Status> {
    let mut msgs = vec![header(collection)];
    for chunk in recs.chunks(500) {
        msgs.push(batch(chunk.to_vec()));
    }
    DataServiceClient::new(ch.clone())
        .ingest(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

fn exhaustive(collection: &str, q: &[f32], k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: collection.into(),
        query: Some(pb::Vector { values: q.to_vec() }),
        params: Some(pb::SearchParams {
            k,
            nprobe: Some(1 << 20),
            rerank: Some(1 << 20),
            ..Default::default()
        }),
    }
}

fn num(h: &pb::Hit) -> u64 {
    match h.id.as_ref().and_then(|i| i.id.clone()) {
        Some(pb::vector_id::Id::Num(n)) => n,
        other => panic!("not a numeric id: {other:?}"),
    }
}

async fn describe(ch: &tonic::transport::Channel, name: &str) -> pb::CollectionInfo {
    CollectionServiceClient::new(ch.clone())
        .describe_collection(pb::DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
}

/// Parquet files anywhere under `dir`.
fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_ingest_delete_alias_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = ClusteredGaussian::new(DIM, 6, 0.3, 11).sample(3000, 1);
    let queries = ClusteredGaussian::new(DIM, 6, 0.3, 11).sample(5, 2);
    let s = support::serve(dir.path(), support::limits()).await;
    let ch = s.channel.clone();
    let mut coll = CollectionServiceClient::new(ch.clone());
    coll.create_collection(managed("m", 2)).await.unwrap();
    let empty = describe(&ch, "m").await;
    assert_eq!(empty.vector_count, 0);

    // Two ingests: each one commit, one new generation.
    let a = ingest(&ch, "m", records(0..2000, &data)).await.unwrap();
    assert_eq!(a.records, 2000);
    let b = ingest(&ch, "m", records(2000..3000, &data[2000 * DIM..]))
        .await
        .unwrap();
    assert_eq!(b.records, 1000);
    assert_ne!(a.generation, b.generation);
    let info = describe(&ch, "m").await;
    assert_eq!(info.vector_count, 3000);
    assert_eq!(info.generation, b.generation);

    // An id the collection holds, or one repeated inside an ingest, is
    // refused whole: nothing of that ingest becomes visible.
    let dup = ingest(&ch, "m", records(2999..3100, &data)).await;
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);
    let mut twice = records(5000..5010, &data);
    twice.push(twice[0].clone());
    assert_eq!(
        ingest(&ch, "m", twice).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let mut wrong_dim = records(6000..6010, &data);
    wrong_dim[3].vector.as_mut().unwrap().values.pop();
    assert_eq!(
        ingest(&ch, "m", wrong_dim).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let info = describe(&ch, "m").await;
    assert_eq!(
        (info.vector_count, info.generation),
        (3000, b.generation.clone())
    );

    // Deletes take effect on the next query; absent ids are ignored.
    let deleted: Vec<u64> = (0..3000).step_by(7).collect();
    let del = DataServiceClient::new(ch.clone())
        .delete(pb::DeleteRequest {
            collection: "m".into(),
            ids: deleted
                .iter()
                .chain([900_000u64].iter())
                .map(|&n| pb::VectorId {
                    id: Some(pb::vector_id::Id::Num(n)),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.tombstones_added, deleted.len() as u64);
    let mut live = data.clone();
    for &d in &deleted {
        // Push deleted rows out of reach of the exact reference.
        live[d as usize * DIM..(d as usize + 1) * DIM].fill(1e6);
    }
    let mut search = SearchServiceClient::new(ch.clone());
    let mut before = Vec::new();
    for q in queries.chunks(DIM) {
        let got = search
            .search(exhaustive("m", q, 10))
            .await
            .unwrap()
            .into_inner();
        let want = exact::topk(&live, DIM, Metric::L2, q, 10);
        let ids: Vec<u64> = got.hits.iter().map(num).collect();
        assert_eq!(ids, want.iter().map(|w| w.0 as u64).collect::<Vec<_>>());
        assert!(ids.iter().all(|i| i % 7 != 0), "a deleted id came back");
        before.push(got.hits);
    }
    assert_eq!(
        describe(&ch, "m").await.vector_count,
        3000 - deleted.len() as u64
    );
    coll.create_alias(pb::CreateAliasRequest {
        alias: Some(pb::Alias {
            alias: "live".into(),
            collection: "m".into(),
        }),
    })
    .await
    .unwrap();

    // Restart on the same data directory.
    s.stop().await;
    let s = support::serve(dir.path(), support::limits()).await;
    let ch = s.channel.clone();
    let mut search = SearchServiceClient::new(ch.clone());
    let listed = CollectionServiceClient::new(ch.clone())
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collections.len(), 1);
    let aliases = CollectionServiceClient::new(ch.clone())
        .list_aliases(pb::ListAliasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        aliases.aliases,
        vec![pb::Alias {
            alias: "live".into(),
            collection: "m".into()
        }]
    );
    for (q, want) in queries.chunks(DIM).zip(&before) {
        let got = search
            .search(exhaustive("live", q, 10))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got.hits, want, "answers changed across the restart");
        assert_eq!(got.generation, b.generation);
    }
    let info = describe(&ch, "live").await;
    assert_eq!(info.vector_count, 3000 - deleted.len() as u64);
    assert_eq!(info.aliases, vec!["live".to_string()]);
    // More data after the restart lands as the next generation.
    let c = ingest(&ch, "m", records(10_000..10_100, &data))
        .await
        .unwrap();
    assert_ne!(c.generation, b.generation);
    assert_eq!(
        describe(&ch, "m").await.vector_count,
        3100 - deleted.len() as u64
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_expired_ingest_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let s = support::serve(dir.path(), support::limits()).await;
    let ch = s.channel.clone();
    CollectionServiceClient::new(ch.clone())
        .create_collection(managed("m", 1))
        .await
        .unwrap();
    let data = ClusteredGaussian::new(DIM, 4, 0.3, 3).sample(1000, 1);
    ingest(&ch, "m", records(0..1000, &data)).await.unwrap();
    let committed = describe(&ch, "m").await;
    let files_before = parquet_files(&dir.path().join("managed")).len();

    // Cancelled: more than a file's worth of rows streamed, then the
    // client goes away without ending the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = {
        let ch = ch.clone();
        tokio::spawn(async move {
            DataServiceClient::new(ch)
                .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        })
    };
    tx.send(header("m")).await.unwrap();
    let big = ClusteredGaussian::new(DIM, 4, 0.3, 3).sample(1000, 9);
    let rows = rulake_coordinator::ingest::FILE_ROWS as u64 + 1000;
    let mut sent = 0u64;
    while sent < rows {
        let recs: Vec<pb::Record> = records(100_000 + sent..100_000 + sent + 1000, &big);
        tx.send(batch(recs)).await.unwrap();
        sent += 1000;
    }
    // Wait until the server has written its first file.
    let mut waited = 0;
    while parquet_files(&dir.path().join("managed")).len() == files_before {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 400, "the ingest never wrote a file");
    }
    call.abort();
    drop(tx);
    let mut waited = 0;
    while parquet_files(&dir.path().join("managed")).len() != files_before {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 200, "a cancelled ingest left its files behind");
    }
    let after = describe(&ch, "m").await;
    assert_eq!(
        (after.vector_count, after.generation),
        (committed.vector_count, committed.generation.clone())
    );

    // Expired: a stream that never ends, under a 300 ms deadline.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header("m")).await.unwrap();
    tx.send(batch(records(200_000..200_010, &data)))
        .await
        .unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.set_timeout(Duration::from_millis(300));
    let err = DataServiceClient::new(ch.clone())
        .ingest(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    drop(tx);
    let after = describe(&ch, "m").await;
    assert_eq!(after.generation, committed.generation);
    assert_eq!(after.vector_count, committed.vector_count);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_switches_under_concurrent_searches_never_fail_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = support::serve(dir.path(), support::limits()).await;
    let ch = s.channel.clone();
    let mut coll = CollectionServiceClient::new(ch.clone());
    let data = ClusteredGaussian::new(DIM, 4, 0.3, 5).sample(500, 1);
    for (name, base) in [("a", 0u64), ("b", 10_000u64)] {
        coll.create_collection(managed(name, 2)).await.unwrap();
        ingest(&ch, name, records(base..base + 500, &data))
            .await
            .unwrap();
    }
    coll.create_alias(pb::CreateAliasRequest {
        alias: Some(pb::Alias {
            alias: "live".into(),
            collection: "a".into(),
        }),
    })
    .await
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (ch, stop, q) = (
            ch.clone(),
            stop.clone(),
            data[w * DIM..(w + 1) * DIM].to_vec(),
        );
        workers.push(tokio::spawn(async move {
            let mut search = SearchServiceClient::new(ch);
            let (mut from_a, mut from_b) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = search
                    .search(exhaustive("live", &q, 5))
                    .await
                    .expect("no query fails during a switch")
                    .into_inner();
                let ids: Vec<u64> = got.hits.iter().map(num).collect();
                // Every answer comes wholly from one collection.
                if ids.iter().all(|&i| i < 10_000) {
                    from_a += 1;
                } else {
                    assert!(ids.iter().all(|&i| i >= 10_000), "mixed answer {ids:?}");
                    from_b += 1;
                }
            }
            (from_a, from_b)
        }));
    }
    for i in 0..20 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        coll.switch_aliases(pb::SwitchAliasesRequest {
            aliases: vec![pb::Alias {
                alias: "live".into(),
                collection: target.into(),
            }],
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut a, mut b) = (0, 0);
    for w in workers {
        let (x, y) = w.await.unwrap();
        a += x;
        b += y;
    }
    assert!(a > 0 && b > 0, "searches saw both targets ({a}, {b})");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_and_data_rpc_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = support::serve(dir.path(), support::limits()).await;
    let ch = s.channel.clone();
    let mut coll = CollectionServiceClient::new(ch.clone());
    let mut data_svc = DataServiceClient::new(ch.clone());
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    coll.create_collection(managed("m", 1)).await.unwrap();
    let data = ClusteredGaussian::new(DIM, 4, 0.3, 5).sample(100, 1);
    ingest(&ch, "m", records(0..100, &data)).await.unwrap();

    // Alter: what may change does; what needs more nodes is refused.
    let altered = coll
        .alter_collection(pb::AlterCollectionRequest {
            name: "m".into(),
            rerank: Some(7),
            nprobe: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
        .spec
        .unwrap();
    assert_eq!((altered.rerank, altered.nprobe), (Some(7), Some(3)));
    assert_eq!(
        code_of(
            coll.alter_collection(pb::AlterCollectionRequest {
                name: "m".into(),
                replication_factor: Some(2),
                ..Default::default()
            })
            .await
        ),
        Code::FailedPrecondition
    );
    assert_eq!(
        code_of(
            coll.alter_collection(pb::AlterCollectionRequest {
                name: "nope".into(),
                rerank: Some(2),
                ..Default::default()
            })
            .await
        ),
        Code::NotFound
    );
    // Aliases: create, duplicate, dangling, delete.
    let alias = |a: &str, c: &str| pb::CreateAliasRequest {
        alias: Some(pb::Alias {
            alias: a.into(),
            collection: c.into(),
        }),
    };
    assert_eq!(code_of(coll.create_alias(alias("x", "m")).await), Code::Ok);
    assert_eq!(
        code_of(coll.create_alias(alias("x", "m")).await),
        Code::AlreadyExists
    );
    assert_eq!(
        code_of(coll.create_alias(alias("y", "nope")).await),
        Code::NotFound
    );
    assert_eq!(
        code_of(coll.create_alias(alias("bad alias!", "m")).await),
        Code::InvalidArgument
    );
    // A collection an alias points at cannot be dropped.
    assert_eq!(
        code_of(
            coll.drop_collection(pb::DropCollectionRequest { name: "m".into() })
                .await
        ),
        Code::FailedPrecondition
    );
    assert_eq!(
        code_of(
            coll.delete_alias(pb::DeleteAliasRequest { alias: "x".into() })
                .await
        ),
        Code::Ok
    );
    assert_eq!(
        code_of(
            coll.delete_alias(pb::DeleteAliasRequest { alias: "x".into() })
                .await
        ),
        Code::NotFound
    );
    // Data: refresh, ingest into an external source, a bad first message,
    // delete from a missing collection.
    let r = data_svc
        .refresh(pb::RefreshRequest {
            collection: "m".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.changed);
    let lake = tempfile::tempdir().unwrap();
    rulake_lake::write_parquet_file(
        &lake.path().join("p.parquet"),
        rulake_lake::IdsRef::U64(&[1, 2]),
        &data[..2 * DIM],
        DIM,
        10,
    )
    .unwrap();
    let ext = external("ext", lake.path());
    coll.create_collection(ext).await.unwrap();
    assert_eq!(
        ingest(&ch, "ext", records(10..20, &data))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let no_header = data_svc
        .ingest(tokio_stream::iter(vec![batch(records(0..1, &data))]))
        .await;
    assert_eq!(code_of(no_header), Code::InvalidArgument);
    assert_eq!(
        code_of(
            data_svc
                .delete(pb::DeleteRequest {
                    collection: "nope".into(),
                    ids: vec![],
                })
                .await
        ),
        Code::NotFound
    );
    // Admin: cache statistics and the cluster's status.
    let stats = admin
        .cache_stats(pb::CacheStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stats.nodes["local"].partitions >= 1);
    let st = admin
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.leader_id, 1);
    assert_eq!(st.members.len(), 1);
    assert!(st.applied_index > 0 && st.commit_index >= st.applied_index);
    assert_eq!(st.shards.len(), 1);
    assert_eq!(
        code_of(
            admin
                .drain_shard(pb::DrainShardRequest {
                    node_id: "local".into()
                })
                .await
        ),
        Code::FailedPrecondition
    );
    // Messages over the size limit (1 MiB here), unary and streamed.
    let huge = vec![0.5f32; 300_000];
    let err = SearchServiceClient::new(ch.clone())
        .search(exhaustive("m", &huge, 5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let big = vec![pb::Record {
        id: Some(pb::VectorId {
            id: Some(pb::vector_id::Id::Num(1)),
        }),
        vector: Some(pb::Vector { values: huge }),
        ..Default::default()
    }];
    let err = data_svc
        .ingest(tokio_stream::iter(vec![header("m"), batch(big)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Dropping a managed collection removes its files.
    coll.drop_collection(pb::DropCollectionRequest { name: "m".into() })
        .await
        .unwrap();
    assert!(parquet_files(&dir.path().join("managed")).is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_over_the_cache_budget_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig {
        cache_bytes: 4096,
        ..rulake_coordinator::EmbeddedConfig::new(dir.path())
    })
    .await
    .unwrap();
    let coord = node.coordinator.clone();
    let api = rulake_api::Api::new(coord, support::limits());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(rulake_api::router(api))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let data = ClusteredGaussian::new(DIM, 4, 0.3, 5).sample(2000, 1);
    let ids: Vec<u64> = (0..2000).collect();
    let lake = tempfile::tempdir().unwrap();
    rulake_lake::write_parquet_file(
        &lake.path().join("p.parquet"),
        rulake_lake::IdsRef::U64(&ids),
        &data,
        DIM,
        1000,
    )
    .unwrap();
    let ext = external("ext", lake.path());
    CollectionServiceClient::new(ch.clone())
        .create_collection(ext)
        .await
        .unwrap();
    let err = SearchServiceClient::new(ch.clone())
        .search(exhaustive("ext", &data[..DIM], 5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    node.shutdown().await;
}
