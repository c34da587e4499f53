//! The public API against a real tonic server on loopback: answers equal
//! the engine's, and every error reaches the client with its status code.

mod support;

use support::code_of;

use rulake_datasets::ClusteredGaussian;
use rulake_index::exact;
use rulake_lake::{write_parquet_file, IdsRef};
use rulake_proto::v1 as pb;
use rulake_types::Metric;
use tonic::Code;

const DIM: usize = 16;

struct Lake {
    _server: support::Server,
    _dir: tempfile::TempDir,
    _data_dir: tempfile::TempDir,
    channel: tonic::transport::Channel,
    data: Vec<f32>,
    url: String,
}

async fn start() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let g = ClusteredGaussian::new(DIM, 8, 0.2, 5);
    let data = g.sample(3000, 1);
    for f in 0..3 {
        let ids: Vec<u64> = (f * 1000..(f + 1) * 1000).map(|i| i as u64).collect();
        write_parquet_file(
            &dir.path().join(format!("part-{f}.parquet")),
            IdsRef::U64(&ids),
            &data[f * 1000 * DIM..(f + 1) * 1000 * DIM],
            DIM,
            500,
        )
        .unwrap();
    }
    let data_dir = tempfile::tempdir().unwrap();
    let server = support::serve(data_dir.path(), support::limits()).await;
    let url = dir.path().to_str().unwrap().to_string();
    Lake {
        channel: server.channel.clone(),
        _server: server,
        _dir: dir,
        _data_dir: data_dir,
        data,
        url,
    }
}

fn spec(name: &str, url: &str, dim: u32, partitions: u32) -> pb::CollectionSpec {
    pb::CollectionSpec {
        name: name.into(),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                url: url.into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                options: Default::default(),
            })),
        }),
        dimension: dim,
        metric: pb::Metric::L2 as i32,
        partitions,
        ..Default::default()
    }
}

fn query(v: &[f32], k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "c".into(),
        query: Some(pb::Vector { values: v.to_vec() }),
        params: Some(pb::SearchParams {
            k,
            nprobe: Some(1 << 20),
            rerank: Some(1 << 20),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_grpc_equals_an_exact_scan() {
    let s = start().await;
    let mut coll = pb::collection_service_client::CollectionServiceClient::new(s.channel.clone());
    let mut search = pb::search_service_client::SearchServiceClient::new(s.channel.clone());
    let info = coll
        .create_collection(pb::CreateCollectionRequest {
            spec: Some(spec("c", &s.url, DIM as u32, 2)),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.spec.unwrap().dimension, DIM as u32);
    let g = ClusteredGaussian::new(DIM, 8, 0.2, 5);
    let queries = g.sample(10, 2);
    for q in queries.chunks(DIM) {
        let got = search.search(query(q, 10)).await.unwrap().into_inner();
        assert!(!got.partial);
        assert_eq!((got.partitions_answered, got.partitions_total), (2, 2));
        assert!(!got.generation.is_empty());
        let want = exact::topk(&s.data, DIM, Metric::L2, q, 10);
        let ids: Vec<u64> = got
            .hits
            .iter()
            .map(|h| match h.id.as_ref().unwrap().id {
                Some(pb::vector_id::Id::Num(n)) => n,
                _ => panic!("string id"),
            })
            .collect();
        assert_eq!(ids, want.iter().map(|w| w.0 as u64).collect::<Vec<_>>());
        for (h, w) in got.hits.iter().zip(&want) {
            assert!((h.distance - w.1).abs() <= 1e-4 * w.1.max(1.0));
        }
    }
    // BatchSearch answers each query as Search does.
    let batch = search
        .batch_search(pb::BatchSearchRequest {
            collection: "c".into(),
            queries: queries
                .chunks(DIM)
                .take(4)
                .map(|q| pb::Vector { values: q.to_vec() })
                .collect(),
            params: query(&queries[..DIM], 5).params,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.results.len(), 4);
    for (r, q) in batch.results.iter().zip(queries.chunks(DIM)) {
        let one = search.search(query(q, 5)).await.unwrap().into_inner();
        assert_eq!(r.hits, one.hits);
    }
    let listed = coll
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.collections.len(), 1);
    assert_eq!(
        listed.collections[0].state,
        pb::CollectionState::Ready as i32
    );
    assert_eq!(listed.collections[0].vector_count, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_reaches_the_client_with_its_code() {
    let s = start().await;
    let mut coll = pb::collection_service_client::CollectionServiceClient::new(s.channel.clone());
    let mut search = pb::search_service_client::SearchServiceClient::new(s.channel.clone());
    let create = |sp| pb::CreateCollectionRequest { spec: Some(sp) };
    assert_eq!(
        code_of(
            coll.create_collection(create(spec("c", &s.url, DIM as u32, 1)))
                .await
        ),
        Code::Ok
    );
    assert_eq!(
        code_of(
            coll.create_collection(create(spec("c", &s.url, DIM as u32, 1)))
                .await
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code_of(
            coll.create_collection(create(spec("bad name!", &s.url, 4, 1)))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(
            coll.create_collection(create(spec("zero", &s.url, 0, 1)))
                .await
        ),
        Code::InvalidArgument
    );
    let mut no_metric = spec("m", &s.url, 4, 1);
    no_metric.metric = 0;
    assert_eq!(
        code_of(coll.create_collection(create(no_metric)).await),
        Code::InvalidArgument
    );
    // A rejected create leaves nothing behind: the name is free again.
    assert_eq!(
        code_of(
            coll.create_collection(create(spec("zero", &s.url, 4, 1)))
                .await
        ),
        Code::Ok
    );
    let q = vec![0.1f32; DIM];
    assert_eq!(code_of(search.search(query(&q, 10)).await), Code::Ok);
    assert_eq!(
        code_of(search.search(query(&q[..DIM - 1], 10)).await),
        Code::InvalidArgument
    );
    let mut nan = q.clone();
    nan[3] = f32::NAN;
    assert_eq!(
        code_of(search.search(query(&nan, 10)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(search.search(query(&q, 0)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(search.search(query(&q, 1_000_000)).await),
        Code::InvalidArgument
    );
    let mut missing = query(&q, 10);
    missing.collection = "nope".into();
    assert_eq!(code_of(search.search(missing).await), Code::NotFound);
    let too_many = pb::BatchSearchRequest {
        collection: "c".into(),
        queries: vec![pb::Vector { values: q.clone() }; 9],
        params: query(&q, 10).params,
    };
    assert_eq!(
        code_of(search.batch_search(too_many).await),
        Code::InvalidArgument
    );
    // Federating collections of different dimensions is a precondition failure.
    let fed = pb::FederatedSearchRequest {
        collections: vec!["c".into(), "zero".into()],
        query: Some(pb::Vector { values: q.clone() }),
        params: query(&q, 10).params,
    };
    assert_eq!(
        code_of(search.federated_search(fed).await),
        Code::FailedPrecondition
    );
    // A lake whose only file is not Parquet: nothing to serve yet, and the
    // message names the file.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("part-0.parquet"), b"not parquet at all").unwrap();
    assert_eq!(
        code_of(
            coll.create_collection(create(spec(
                "gone",
                bad.path().to_str().unwrap(),
                DIM as u32,
                1
            )))
            .await
        ),
        Code::Ok
    );
    let mut gone = query(&q, 10);
    gone.collection = "gone".into();
    let err = search.search(gone).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("part-0.parquet"),
        "{}",
        err.message()
    );
    assert_eq!(
        code_of(
            coll.drop_collection(pb::DropCollectionRequest { name: "c".into() })
                .await
        ),
        Code::Ok
    );
    assert_eq!(
        code_of(
            coll.drop_collection(pb::DropCollectionRequest { name: "c".into() })
                .await
        ),
        Code::NotFound
    );
}
