//! Nobody learns through the API what their grants do not cover, on a real
//! server behind the auth layer with four principals (`admin:*`,
//! `read:pub*`, `write:pub*`, `admin:teamb-*`):
//! - source options are write-only: no answer shows a value, whoever asks;
//! - alias listings and descriptions name only what the caller may read;
//! - reading through an alias needs `read` on its collection too, writing
//!   through one `write` on its collection too, and the refusal reads like
//!   any other (it does not name where the alias points); nothing is
//!   written.

mod support;

use pb::collection_service_client::CollectionServiceClient;
use pb::data_service_client::DataServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_api::{router, Api};
use rulake_auth::{key_digest, AuthConfig, AuthLayer};
use rulake_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::Code;

const DIM: usize = 4;
const ROOT: &str = "root-key";
const READER: &str = "reader-key";
const WRITER: &str = "writer-key";
const TEAMB: &str = "teamb-key";
/// Option values the server must never show again.
const REGION: &str = "eu-sentinel-region-7";
const PAYER: &str = "requester-sentinel-payer";
/// The collection readers of `pub*` may not see, and its vectors.
const HIDDEN: &str = "secret-x";
const HIDDEN_VECTORS: u64 = 3;

fn req<T>(cred: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {cred}").parse().unwrap());
    r
}

/// A running server and the data its collections read.
struct Scene {
    ch: Channel,
    node: rulake_coordinator::Embedded,
    _dir: tempfile::TempDir,
}

fn managed(name: &str) -> pb::CollectionSpec {
    pb::CollectionSpec {
        name: name.into(),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::Managed(pb::ManagedSource {})),
        }),
        dimension: DIM as u32,
        metric: pb::Metric::L2 as i32,
        partitions: 1,
        ..Default::default()
    }
}

/// `pub-lake`: a Parquet source with options the caller set.
fn parquet(url: &str) -> pb::CollectionSpec {
    pb::CollectionSpec {
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::Parquet(pb::ParquetSource {
                url: url.into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                options: [
                    ("aws_region".to_string(), REGION.to_string()),
                    ("request_payer".to_string(), PAYER.to_string()),
                ]
                .into(),
            })),
        }),
        ..managed("pub-lake")
    }
}

fn ingest_msgs(collection: &str, ids: std::ops::Range<u64>) -> Vec<pb::IngestRequest> {
    let records = ids
        .map(|id| pb::Record {
            id: Some(pb::VectorId {
                id: Some(pb::vector_id::Id::Num(id)),
            }),
            vector: Some(pb::Vector {
                values: vec![id as f32; DIM],
            }),
            ..Default::default()
        })
        .collect();
    vec![
        pb::IngestRequest {
            message: Some(pb::ingest_request::Message::Header(pb::IngestHeader {
                collection: collection.into(),
            })),
        },
        pb::IngestRequest {
            message: Some(pb::ingest_request::Message::Batch(pb::IngestBatch {
                records,
            })),
        },
    ]
}

/// The server, with `pub-lake` (Parquet, options), `pub-m` (managed, empty)
/// and `secret-x` (managed, 3 vectors); aliases `pub-alias` → `secret-x`,
/// `pub-ok` → `pub-m` and `secret-alias` → `pub-m`.
async fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        ("root", ROOT, "admin:*"),
        ("reader", READER, "read:pub*"),
        ("writer", WRITER, "write:pub*"),
        ("teamb", TEAMB, "admin:teamb-*"),
    ];
    let config = serde_json::json!({
        "api_keys": keys.iter().map(|(n, k, g)| serde_json::json!({
            "name": n, "sha256": key_digest(k), "grants": [g]
        })).collect::<Vec<_>>(),
    });
    let auth = AuthConfig::from_json(&config.to_string(), dir.path()).unwrap();
    let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig::new(
        dir.path().join("data"),
    ))
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(AuthLayer::new(auth))
            .add_routes(router(Api::new(
                node.coordinator.clone(),
                support::limits(),
            )))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let ch = support::connect(addr).await;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let ids: Vec<u64> = (0..20).collect();
    let flat: Vec<f32> = ids.iter().flat_map(|&i| vec![i as f32; DIM]).collect();
    rulake_lake::write_parquet_file(
        &lake.join("part-0.parquet"),
        rulake_lake::IdsRef::U64(&ids),
        &flat,
        DIM,
        10,
    )
    .unwrap();
    let mut coll = CollectionServiceClient::new(ch.clone());
    let created = coll
        .create_collection(req(
            ROOT,
            pb::CreateCollectionRequest {
                spec: Some(parquet(lake.to_str().unwrap())),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // Even the creator's own answer does not echo the values back.
    assert_redacted(&format!("{created:?}"));
    for c in ["pub-m", HIDDEN] {
        coll.create_collection(req(
            ROOT,
            pb::CreateCollectionRequest {
                spec: Some(managed(c)),
            },
        ))
        .await
        .unwrap();
    }
    DataServiceClient::new(ch.clone())
        .ingest(req(
            ROOT,
            tokio_stream::iter(ingest_msgs(HIDDEN, 0..HIDDEN_VECTORS)),
        ))
        .await
        .unwrap();
    for (alias, collection) in [
        ("pub-alias", HIDDEN),
        ("pub-ok", "pub-m"),
        ("secret-alias", "pub-m"),
    ] {
        coll.create_alias(req(
            ROOT,
            pb::CreateAliasRequest {
                alias: Some(pb::Alias {
                    alias: alias.into(),
                    collection: collection.into(),
                }),
            },
        ))
        .await
        .unwrap();
    }
    Scene {
        ch,
        node,
        _dir: dir,
    }
}

fn assert_redacted(text: &str) {
    assert!(
        !text.contains(REGION) && !text.contains(PAYER),
        "an option value is shown: {text}"
    );
}

/// A refusal's message with `name` replaced, to compare refusals of
/// different names.
fn shape(s: &tonic::Status, name: &str) -> String {
    s.message().replace(name, "<name>")
}

/// `answer` of `rpc` on `name` is `PERMISSION_DENIED` and names nothing
/// hidden; its [`shape`], to compare with other refusals.
fn refusal(rpc: &str, name: &str, answer: Result<String, tonic::Status>) -> String {
    let status = answer.expect_err(rpc);
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{rpc} {name}: {status:?}"
    );
    assert!(!status.message().contains(HIDDEN), "{rpc}: {status:?}");
    shape(&status, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_options_are_write_only_for_every_caller() {
    let s = scene().await;
    let mut coll = CollectionServiceClient::new(s.ch.clone());
    for cred in [ROOT, READER, WRITER] {
        let info = coll
            .describe_collection(req(
                cred,
                pb::DescribeCollectionRequest {
                    name: "pub-lake".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_redacted(&format!("{info:?}"));
        let spec = info.info.unwrap().spec.unwrap();
        let Some(pb::source::Kind::Parquet(p)) = spec.source.unwrap().kind else {
            panic!("not a Parquet source")
        };
        // The keys stay visible, so a caller knows what is set.
        let mut keys: Vec<_> = p.options.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["aws_region", "request_payer"]);
        assert!(p.options.values().all(|v| v == "<redacted>"), "{p:?}");
        let list = coll
            .list_collections(req(cred, pb::ListCollectionsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(!list.collections.is_empty());
        assert_redacted(&format!("{list:?}"));
    }
    // Altering returns the description too.
    let altered = coll
        .alter_collection(req(
            ROOT,
            pb::AlterCollectionRequest {
                name: "pub-lake".into(),
                rerank: Some(50),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_redacted(&format!("{altered:?}"));
    s.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_listings_and_descriptions_name_only_what_the_caller_may_read() {
    let s = scene().await;
    let mut coll = CollectionServiceClient::new(s.ch.clone());
    let aliases = |cred: &'static str| {
        let mut coll = coll.clone();
        async move {
            let mut a: Vec<(String, String)> = coll
                .list_aliases(req(cred, pb::ListAliasesRequest {}))
                .await
                .unwrap()
                .into_inner()
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.collection))
                .collect();
            a.sort();
            a
        }
    };
    let pair = |a: &str, c: &str| (a.to_string(), c.to_string());
    // The admin sees every alias; a `pub*` reader only the one whose name
    // and collection it may read: not `pub-alias`, which would name
    // `secret-x`, nor `secret-alias`.
    assert_eq!(
        aliases(ROOT).await,
        [
            pair("pub-alias", HIDDEN),
            pair("pub-ok", "pub-m"),
            pair("secret-alias", "pub-m")
        ]
    );
    assert_eq!(aliases(READER).await, [pair("pub-ok", "pub-m")]);
    // A team admin reads nothing here.
    assert_eq!(aliases(TEAMB).await, []);
    // `pub-m` as the reader sees it: only the alias it may read.
    let describe = |cred: &'static str, name: &'static str| {
        let mut coll = coll.clone();
        async move {
            coll.describe_collection(req(
                cred,
                pb::DescribeCollectionRequest { name: name.into() },
            ))
            .await
            .map(|r| r.into_inner().info.unwrap())
        }
    };
    let mut all = describe(ROOT, "pub-m").await.unwrap().aliases;
    all.sort();
    assert_eq!(all, ["pub-ok", "secret-alias"]);
    let seen = describe(READER, "pub-m").await.unwrap();
    assert_eq!(seen.aliases, ["pub-ok"]);
    let list = coll
        .list_collections(req(READER, pb::ListCollectionsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let text = format!("{list:?}");
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(list.collections.len(), 2, "{text}");
    s.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_through_an_alias_needs_read_on_its_collection() {
    let s = scene().await;
    let mut coll = CollectionServiceClient::new(s.ch.clone());
    let mut search = SearchServiceClient::new(s.ch.clone());
    let params = || {
        Some(pb::SearchParams {
            k: 3,
            ..Default::default()
        })
    };
    let query = || {
        Some(pb::Vector {
            values: vec![1.0; DIM],
        })
    };
    // Each read, through an alias the reader may name and of a name
    // outside its grants that does not exist.
    let mut refusals: Vec<(&str, String, String)> = Vec::new();
    for name in ["pub-alias", "secret-ghost"] {
        let answers = [
            (
                "DescribeCollection",
                coll.describe_collection(req(
                    READER,
                    pb::DescribeCollectionRequest { name: name.into() },
                ))
                .await
                .map(|r| format!("{r:?}")),
            ),
            (
                "Search",
                search
                    .search(req(
                        READER,
                        pb::SearchRequest {
                            collection: name.into(),
                            query: query(),
                            params: params(),
                        },
                    ))
                    .await
                    .map(|r| format!("{r:?}")),
            ),
            (
                "BatchSearch",
                search
                    .batch_search(req(
                        READER,
                        pb::BatchSearchRequest {
                            collection: name.into(),
                            queries: query().into_iter().collect(),
                            params: params(),
                        },
                    ))
                    .await
                    .map(|r| format!("{r:?}")),
            ),
            (
                "FederatedSearch",
                search
                    .federated_search(req(
                        READER,
                        pb::FederatedSearchRequest {
                            collections: vec!["pub-ok".into(), name.into()],
                            query: query(),
                            params: params(),
                        },
                    ))
                    .await
                    .map(|r| format!("{r:?}")),
            ),
        ];
        for (rpc, answer) in answers {
            refusals.push((rpc, name.to_string(), refusal(rpc, name, answer)));
        }
    }
    // The refusal through the alias reads exactly like the refusal of a
    // name that does not exist.
    let (through, ghost) = refusals.split_at(refusals.len() / 2);
    for (a, g) in through.iter().zip(ghost) {
        assert_eq!(a.2, g.2, "{} through the alias and of a ghost", a.0);
    }
    // Through an alias whose collection it may read, the reader reads.
    let info = coll
        .describe_collection(req(
            READER,
            pb::DescribeCollectionRequest {
                name: "pub-ok".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.info.unwrap().spec.unwrap().name, "pub-m");
    search
        .search(req(
            READER,
            pb::SearchRequest {
                collection: "pub-ok".into(),
                query: query(),
                params: params(),
            },
        ))
        .await
        .unwrap();
    s.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_through_an_alias_needs_write_on_its_collection() {
    let s = scene().await;
    let mut data = DataServiceClient::new(s.ch.clone());
    let mut refusals: Vec<(&str, String)> = Vec::new();
    for name in ["pub-alias", "secret-ghost"] {
        let answers = [
            (
                "Ingest",
                data.ingest(req(WRITER, tokio_stream::iter(ingest_msgs(name, 100..110))))
                    .await
                    .map(|r| format!("{r:?}")),
            ),
            (
                "Delete",
                data.delete(req(
                    WRITER,
                    pb::DeleteRequest {
                        collection: name.into(),
                        ids: (0..HIDDEN_VECTORS)
                            .map(|i| pb::VectorId {
                                id: Some(pb::vector_id::Id::Num(i)),
                            })
                            .collect(),
                    },
                ))
                .await
                .map(|r| format!("{r:?}")),
            ),
            (
                "Refresh",
                data.refresh(req(
                    WRITER,
                    pb::RefreshRequest {
                        collection: name.into(),
                    },
                ))
                .await
                .map(|r| format!("{r:?}")),
            ),
        ];
        for (rpc, answer) in answers {
            refusals.push((rpc, refusal(rpc, name, answer)));
        }
    }
    let (through, ghost) = refusals.split_at(refusals.len() / 2);
    assert_eq!(through, ghost);
    // Nothing reached the collection behind the alias: its vectors are all
    // there and nothing was added.
    let hidden = CollectionServiceClient::new(s.ch.clone())
        .describe_collection(req(
            ROOT,
            pb::DescribeCollectionRequest {
                name: HIDDEN.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(hidden.vector_count, HIDDEN_VECTORS);
    // Through an alias whose collection it may write, the writer writes.
    let n = data
        .ingest(req(WRITER, tokio_stream::iter(ingest_msgs("pub-ok", 0..5))))
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(n, 5);
    s.node.shutdown().await;
}
