//! Every RPC against every kind of caller, on a real server behind the
//! auth layer: no credential, a wrong key, an expired token, a token for
//! another audience, a token for another collection, a read-only key, a
//! write key and an admin key. Each gets the right code, and nothing the
//! refused calls asked for happens.

mod support;

use pb::admin_service_client::AdminServiceClient;
use pb::collection_service_client::CollectionServiceClient;
use pb::data_service_client::DataServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_api::{router, Api};
use rulake_auth::{key_digest, AuthConfig, AuthLayer};
use rulake_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const DIM: usize = 4;

fn token(sub: &str, grants: &[&str], exp_offset: i64, aud: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "sub": sub, "iss": "test-issuer", "aud": aud,
        "exp": now + exp_offset, "rulake": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn req<T>(cred: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(c) = cred {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {c}").parse().unwrap());
    }
    r
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    r.map(|_| Code::Ok).unwrap_or_else(|s| s.code())
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

fn record(id: u64) -> pb::Record {
    pb::Record {
        id: Some(pb::VectorId {
            id: Some(pb::vector_id::Id::Num(id)),
        }),
        vector: Some(pb::Vector {
            values: vec![id as f32; DIM],
        }),
        ..Default::default()
    }
}

fn ingest_msgs(collection: &str, ids: std::ops::Range<u64>) -> Vec<pb::IngestRequest> {
    vec![
        pb::IngestRequest {
            message: Some(pb::ingest_request::Message::Header(pb::IngestHeader {
                collection: collection.into(),
            })),
        },
        pb::IngestRequest {
            message: Some(pb::ingest_request::Message::Batch(pb::IngestBatch {
                records: ids.map(record).collect(),
            })),
        },
    ]
}

/// Which permission each call needs on `docs` (or cluster-wide).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Read,
    Write,
    Admin,
    ClusterAdmin,
    /// Answers every authenticated caller, filtered to what it may read.
    Listing,
}

/// Call RPC number `i` on `collection` as `cred`; returns its name, what
/// it needs and the code it got.
async fn call(ch: &Channel, i: usize, cred: Option<&str>, c: &str) -> (&'static str, Needs, Code) {
    let mut coll = CollectionServiceClient::new(ch.clone());
    let mut search = SearchServiceClient::new(ch.clone());
    let mut data = DataServiceClient::new(ch.clone());
    let mut admin = AdminServiceClient::new(ch.clone());
    let q = || pb::SearchParams {
        k: 3,
        ..Default::default()
    };
    let v = || pb::Vector {
        values: vec![1.0; DIM],
    };
    match i {
        0 => (
            "CreateCollection",
            Needs::Admin,
            code(
                coll.create_collection(req(
                    cred,
                    pb::CreateCollectionRequest {
                        spec: Some(managed(c)),
                    },
                ))
                .await,
            ),
        ),
        1 => (
            "DropCollection",
            Needs::Admin,
            code(
                coll.drop_collection(req(cred, pb::DropCollectionRequest { name: c.into() }))
                    .await,
            ),
        ),
        2 => (
            "ListCollections",
            Needs::Listing,
            code(
                coll.list_collections(req(cred, pb::ListCollectionsRequest {}))
                    .await,
            ),
        ),
        3 => (
            "DescribeCollection",
            Needs::Read,
            code(
                coll.describe_collection(req(
                    cred,
                    pb::DescribeCollectionRequest { name: c.into() },
                ))
                .await,
            ),
        ),
        4 => (
            "AlterCollection",
            Needs::Admin,
            code(
                coll.alter_collection(req(
                    cred,
                    pb::AlterCollectionRequest {
                        name: c.into(),
                        rerank: Some(3),
                        ..Default::default()
                    },
                ))
                .await,
            ),
        ),
        5 => (
            "CreateAlias",
            Needs::Admin,
            code(
                coll.create_alias(req(
                    cred,
                    pb::CreateAliasRequest {
                        alias: Some(pb::Alias {
                            alias: format!("{c}-alias"),
                            collection: c.into(),
                        }),
                    },
                ))
                .await,
            ),
        ),
        6 => (
            "DeleteAlias",
            Needs::Admin,
            code(
                coll.delete_alias(req(cred, pb::DeleteAliasRequest { alias: c.into() }))
                    .await,
            ),
        ),
        7 => (
            "SwitchAliases",
            Needs::Admin,
            code(
                coll.switch_aliases(req(
                    cred,
                    pb::SwitchAliasesRequest {
                        aliases: vec![pb::Alias {
                            alias: c.into(),
                            collection: c.into(),
                        }],
                    },
                ))
                .await,
            ),
        ),
        8 => (
            "ListAliases",
            Needs::Listing,
            code(
                coll.list_aliases(req(cred, pb::ListAliasesRequest {}))
                    .await,
            ),
        ),
        9 => (
            "Search",
            Needs::Read,
            code(
                search
                    .search(req(
                        cred,
                        pb::SearchRequest {
                            collection: c.into(),
                            query: Some(v()),
                            params: Some(q()),
                        },
                    ))
                    .await,
            ),
        ),
        10 => (
            "BatchSearch",
            Needs::Read,
            code(
                search
                    .batch_search(req(
                        cred,
                        pb::BatchSearchRequest {
                            collection: c.into(),
                            queries: vec![v()],
                            params: Some(q()),
                        },
                    ))
                    .await,
            ),
        ),
        11 => (
            "FederatedSearch",
            Needs::Read,
            code(
                search
                    .federated_search(req(
                        cred,
                        pb::FederatedSearchRequest {
                            collections: vec![c.into()],
                            query: Some(v()),
                            params: Some(q()),
                        },
                    ))
                    .await,
            ),
        ),
        // Ids 0..3 exist: an allowed ingest is refused as ALREADY_EXISTS and changes nothing.
        12 => (
            "Ingest",
            Needs::Write,
            code(
                data.ingest(req(cred, tokio_stream::iter(ingest_msgs(c, 0..3))))
                    .await,
            ),
        ),
        13 => (
            "Delete",
            Needs::Write,
            code(
                data.delete(req(
                    cred,
                    pb::DeleteRequest {
                        collection: c.into(),
                        ids: vec![],
                    },
                ))
                .await,
            ),
        ),
        14 => (
            "Refresh",
            Needs::Write,
            code(
                data.refresh(req(
                    cred,
                    pb::RefreshRequest {
                        collection: c.into(),
                    },
                ))
                .await,
            ),
        ),
        15 => (
            "CacheStats",
            Needs::ClusterAdmin,
            code(admin.cache_stats(req(cred, pb::CacheStatsRequest {})).await),
        ),
        16 => (
            "ClusterStatus",
            Needs::ClusterAdmin,
            code(
                admin
                    .cluster_status(req(cred, pb::ClusterStatusRequest {}))
                    .await,
            ),
        ),
        17 => (
            "DrainShard",
            Needs::ClusterAdmin,
            code(
                admin
                    .drain_shard(req(
                        cred,
                        pb::DrainShardRequest {
                            node_id: "x".into(),
                        },
                    ))
                    .await,
            ),
        ),
        18 => (
            "AdmitShard",
            Needs::ClusterAdmin,
            code(
                admin
                    .admit_shard(req(
                        cred,
                        pb::AdmitShardRequest {
                            node_id: "x".into(),
                        },
                    ))
                    .await,
            ),
        ),
        _ => unreachable!(),
    }
}

const CALLS: usize = 19;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_against_every_kind_of_caller() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt.secret"), SECRET).unwrap();
    let keys = [
        ("root", "admin-key-1", "admin:*"),
        ("reader", "reader-key-1", "read:docs"),
        ("writer", "writer-key-1", "write:docs"),
    ];
    let config = serde_json::json!({
        "api_keys": keys.iter().map(|(n, k, g)| serde_json::json!({
            "name": n, "sha256": key_digest(k), "grants": [g]
        })).collect::<Vec<_>>(),
        "jwt": {"algorithm": "HS256", "secret_file": "jwt.secret",
                "issuer": "test-issuer", "audience": "rulake"},
    });
    let auth = AuthConfig::from_json(&config.to_string(), dir.path()).unwrap();
    let node = rulake_coordinator::Embedded::start(rulake_coordinator::EmbeddedConfig::new(
        dir.path().join("data"),
    ))
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(AuthLayer::new(auth))
            .add_routes(router(Api::new(
                node.coordinator.clone(),
                support::limits(),
            )))
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // The admin sets the scene: docs with 3 vectors, and other.
    let root = Some("admin-key-1");
    let mut coll = CollectionServiceClient::new(ch.clone());
    for c in ["docs", "other"] {
        coll.create_collection(req(
            root,
            pb::CreateCollectionRequest {
                spec: Some(managed(c)),
            },
        ))
        .await
        .unwrap();
    }
    DataServiceClient::new(ch.clone())
        .ingest(req(root, tokio_stream::iter(ingest_msgs("docs", 0..3))))
        .await
        .unwrap();
    let snapshot = |ch: Channel| async move {
        let mut coll = CollectionServiceClient::new(ch);
        let list = coll
            .list_collections(req(root, pb::ListCollectionsRequest {}))
            .await
            .unwrap()
            .into_inner();
        let aliases = coll
            .list_aliases(req(root, pb::ListAliasesRequest {}))
            .await
            .unwrap()
            .into_inner();
        let state: Vec<(String, u64, Option<u32>)> = list
            .collections
            .into_iter()
            .map(|i| {
                let s = i.spec.unwrap();
                (s.name, i.vector_count, s.rerank)
            })
            .collect();
        (state, aliases.aliases)
    };
    let before = snapshot(ch.clone()).await;
    assert_eq!(before.0.len(), 2);

    let unauthenticated = [
        ("no credential", None),
        ("wrong key", Some("not-a-key".to_string())),
        (
            "expired token",
            Some(token("t", &["admin:*"], -3600, "rulake")),
        ),
        (
            "token for another audience",
            Some(token("t", &["admin:*"], 3600, "elsewhere")),
        ),
        (
            "token with a bad signature",
            Some(format!("{}x", token("t", &["admin:*"], 3600, "rulake"))),
        ),
    ];
    for (who, cred) in &unauthenticated {
        for i in 0..CALLS {
            let (rpc, _, got) = call(&ch, i, cred.as_deref(), "docs").await;
            assert_eq!(got, Code::Unauthenticated, "{who} calling {rpc}");
        }
    }
    // Callers with some right, and what each call needs.
    let other_token = token("other-reader", &["read:other"], 3600, "rulake");
    let callers: [(&str, &str, &str, &[Needs]); 3] = [
        (
            "token for another collection",
            other_token.as_str(),
            "other",
            &[Needs::Read],
        ),
        ("read-only key", "reader-key-1", "docs", &[Needs::Read]),
        (
            "write key",
            "writer-key-1",
            "docs",
            &[Needs::Read, Needs::Write],
        ),
    ];
    for (who, cred, granted, allowed) in callers {
        // A collection that does not exist is denied exactly like one that
        // does: the answer says nothing about existence.
        for c in ["docs", "other", "ghost"] {
            for i in 0..CALLS {
                let (rpc, needs, got) = call(&ch, i, Some(cred), c).await;
                let may = needs == Needs::Listing || (c == granted && allowed.contains(&needs));
                if may {
                    assert_ne!(got, Code::PermissionDenied, "{who} calling {rpc} on {c}");
                    assert_ne!(got, Code::Unauthenticated, "{who} calling {rpc} on {c}");
                } else {
                    assert_eq!(got, Code::PermissionDenied, "{who} calling {rpc} on {c}");
                }
            }
        }
    }
    // Listings show only what the caller may read.
    let seen = CollectionServiceClient::new(ch.clone())
        .list_collections(req(Some("reader-key-1"), pb::ListCollectionsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = seen
        .collections
        .into_iter()
        .map(|i| i.spec.unwrap().name)
        .collect();
    assert_eq!(names, vec!["docs".to_string()]);
    // A token with the right grant works like a key.
    let reader_token = token("r", &["read:doc*"], 3600, "rulake");
    assert_eq!(call(&ch, 9, Some(&reader_token), "docs").await.2, Code::Ok);
    // Health checks need no credential.
    tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open to probes");
    // Nothing the refused calls asked for happened.
    assert_eq!(snapshot(ch.clone()).await, before);
    node.shutdown().await;
}
