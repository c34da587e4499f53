//! Bounded work per search call, against a real server on loopback: the
//! limit on `k × queries × collections`, de-duplicated and capped
//! `FederatedSearch` names, and a deadline that stops a search's CPU work
//! rather than letting it run to the end. Each limit is tried at its edge:
//! the limit itself is served, one past it is refused with
//! `INVALID_ARGUMENT` naming the limit.

mod support;

use pb::collection_service_client::CollectionServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_api::Limits;
use rulake_datasets::ClusteredGaussian;
use rulake_lake::{write_parquet_file, IdsRef};
use rulake_proto::v1 as pb;
use std::time::{Duration, Instant};
use support::code_of;
use tonic::Code;

const DIM: usize = 32;

/// A server with `limits` over collections `names` of `rows` rows each (two
/// partitions, eventual consistency: no query waits on the lake).
struct Fixture {
    server: support::Server,
    _lake: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Fixture {
    async fn start(limits: Limits, names: &[&str], rows: usize) -> Fixture {
        let lake = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let server = support::serve(data.path(), limits).await;
        let mut coll = CollectionServiceClient::new(server.channel.clone());
        for (i, name) in names.iter().enumerate() {
            let dir = lake.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            let v = ClusteredGaussian::new(DIM, 16, 0.3, 11).sample(rows, i as u64 + 1);
            let ids: Vec<u64> = (0..rows as u64).collect();
            write_parquet_file(&dir.join("p.parquet"), IdsRef::U64(&ids), &v, DIM, 5000).unwrap();
            coll.create_collection(spec(name, dir.to_str().unwrap()))
                .await
                .unwrap();
        }
        Fixture {
            server,
            _lake: lake,
            _data: data,
        }
    }

    fn search(&self) -> SearchServiceClient<tonic::transport::Channel> {
        SearchServiceClient::new(self.server.channel.clone())
    }
}

fn spec(name: &str, url: &str) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        spec: Some(pb::CollectionSpec {
            name: name.into(),
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                    url: url.into(),
                    id_column: "id".into(),
                    vector_column: "vector".into(),
                    options: Default::default(),
                })),
            }),
            dimension: DIM as u32,
            metric: pb::Metric::L2 as i32,
            partitions: 2,
            consistency: Some(pb::Consistency {
                level: Some(pb::consistency::Level::Eventual(
                    pb::consistency::Eventual {
                        max_staleness_ms: 600_000,
                    },
                )),
            }),
            ..Default::default()
        }),
    }
}

fn queries(n: usize) -> Vec<pb::Vector> {
    ClusteredGaussian::new(DIM, 16, 0.3, 11)
        .sample(n, 77)
        .chunks(DIM)
        .map(|q| pb::Vector { values: q.to_vec() })
        .collect()
}

fn params(k: u32) -> Option<pb::SearchParams> {
    Some(pb::SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
        ..Default::default()
    })
}

fn one(k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: "a".into(),
        query: queries(1).pop(),
        params: params(k),
    }
}

fn batch(k: u32, n: usize) -> pb::BatchSearchRequest {
    pb::BatchSearchRequest {
        collection: "a".into(),
        queries: queries(n),
        params: params(k),
    }
}

fn federated(k: u32, names: &[&str]) -> pb::FederatedSearchRequest {
    pb::FederatedSearchRequest {
        collections: names.iter().map(|n| n.to_string()).collect(),
        query: queries(1).pop(),
        params: params(k),
    }
}

/// The status of a refused call, which must name `limit`.
fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, limit: &str) -> Code {
    let s = r.expect_err("the call is refused");
    assert!(s.message().contains(limit), "{s:?}");
    s.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_times_queries_times_collections_is_limited_at_its_edge() {
    let limits = Limits {
        max_batch: 64,
        max_k: 1000,
        max_search_hits: 100,
        ..Limits::default()
    };
    let f = Fixture::start(limits, &["a", "b", "c"], 500).await;
    let mut s = f.search();
    const LIMIT: &str = "max_search_hits";

    // Search: k × 1 × 1.
    assert_eq!(code_of(s.search(one(100)).await), Code::Ok);
    assert_eq!(
        refused(s.search(one(101)).await, LIMIT),
        Code::InvalidArgument
    );
    // BatchSearch: k × queries.
    assert_eq!(code_of(s.batch_search(batch(10, 10)).await), Code::Ok);
    assert_eq!(
        refused(s.batch_search(batch(10, 11)).await, LIMIT),
        Code::InvalidArgument
    );
    // FederatedSearch: k × collections.
    let three = ["a", "b", "c"];
    assert_eq!(
        code_of(s.federated_search(federated(33, &three)).await),
        Code::Ok
    );
    assert_eq!(
        refused(s.federated_search(federated(34, &three)).await, LIMIT),
        Code::InvalidArgument
    );
    // A name repeated counts once.
    assert_eq!(
        code_of(
            s.federated_search(federated(50, &["a", "b", "a", "b"]))
                .await
        ),
        Code::Ok
    );
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_names_are_deduplicated_then_limited_at_the_edge() {
    let limits = Limits {
        max_federated: 2,
        ..Limits::default()
    };
    let f = Fixture::start(limits, &["a", "b", "c"], 500).await;
    let mut s = f.search();
    assert_eq!(
        code_of(s.federated_search(federated(10, &["a", "b"])).await),
        Code::Ok
    );
    assert_eq!(
        refused(
            s.federated_search(federated(10, &["a", "b", "c"])).await,
            "max_federated"
        ),
        Code::InvalidArgument
    );
    // 20,001 names, two distinct: within the limit.
    let mut names = vec!["a"; 20_000];
    names.push("b");
    assert_eq!(
        code_of(s.federated_search(federated(10, &names)).await),
        Code::Ok
    );
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_named_20000_times_answers_as_if_named_once() {
    let f = Fixture::start(Limits::default(), &["a", "b"], 2000).await;
    let mut s = f.search();
    let once = s
        .federated_search(federated(10, &["a"]))
        .await
        .unwrap()
        .into_inner();
    let many = s
        .federated_search(federated(10, &["a"; 20_000]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(once.hits.len(), 10);
    assert_eq!(
        (once.partitions_answered, once.partitions_total),
        (2, 2),
        "{once:?}"
    );
    assert_eq!(many, once);
    // Through an alias too: the collection is searched once.
    CollectionServiceClient::new(f.server.channel.clone())
        .create_alias(pb::CreateAliasRequest {
            alias: Some(pb::Alias {
                alias: "al".into(),
                collection: "a".into(),
            }),
        })
        .await
        .unwrap();
    let both = s
        .federated_search(federated(10, &["a", "al", "a"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(both, once);
    f.server.stop().await;
}

/// A batch of 1,024 exhaustive queries, given a tenth of the time it takes:
/// the server stops the search at the deadline and answers
/// `DEADLINE_EXCEEDED` (before this limit it ran every query to the end and
/// answered OK, since a search never yields to the call's timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_a_search_already_running() {
    let f = Fixture::start(Limits::default(), &["a"], 20_000).await;
    let mut s = f.search();
    s.search(one(10)).await.unwrap(); // loads the partitions
    let req = || batch(100, 1024);
    let t = Instant::now();
    s.batch_search(req()).await.unwrap();
    let took = t.elapsed();

    let mut r = tonic::Request::new(req());
    r.set_timeout((took / 10).max(Duration::from_millis(5)));
    let status = s.batch_search(r).await.expect_err("past its deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("deadline"), "{status:?}");

    // The server is unharmed: a call with time to spare answers.
    let mut r = tonic::Request::new(one(10));
    r.set_timeout(Duration::from_secs(60));
    assert_eq!(code_of(s.search(r).await), Code::Ok);
    f.server.stop().await;
}
