//! The target of the attack suite and the attacker's tools: a `rulake serve`
//! with four principals over a lake of two tenants, a trap listener that
//! counts connections, and the listening ports of a process.

use pb::collection_service_client::CollectionServiceClient;
use pb::data_service_client::DataServiceClient;
use pb::search_service_client::SearchServiceClient;
use rulake_proto::v1 as pb;
use rulake_tests::Served;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// `admin:*`.
pub const ADMIN: &str = "key-admin-0123456789";
/// `read:pub*`.
pub const READER: &str = "key-reader-0123456789";
/// `write:pub*`.
pub const WRITER: &str = "key-writer-0123456789";
/// `admin:teamb-*`: the attacker.
pub const TEAMB: &str = "key-teamb-0123456789";
/// Ids of the other tenant's managed collection `secret-a`.
pub const SECRET_IDS: std::ops::Range<u64> = 900_000..900_040;
const DIM: usize = 4;

/// A served target: data directory, lake and server.
pub struct Target {
    _dir: tempfile::TempDir,
    /// Everything lives under here (symlinks resolved).
    pub root: PathBuf,
    /// The allowed lake (`--source-allow file://<lake>/`), holding the
    /// auth config too: the fence must hold inside an allowed prefix.
    pub lake: PathBuf,
    /// The server's data directory.
    pub data: PathBuf,
    /// The server.
    pub server: Served,
    flags: Vec<String>,
}

fn auth_json() -> String {
    let key = |name: &str, key: &str, grant: &str| {
        format!(
            r#"{{"name": "{name}", "sha256": "{}", "grants": ["{grant}"]}}"#,
            rulake_auth::key_digest(key)
        )
    };
    format!(
        r#"{{"api_keys": [{}, {}, {}, {}]}}"#,
        key("admin", ADMIN, "admin:*"),
        key("reader", READER, "read:pub*"),
        key("writer", WRITER, "write:pub*"),
        key("teamb", TEAMB, "admin:teamb-*"),
    )
}

impl Target {
    /// Start the server and give it two tenants' collections: `pub-docs`
    /// over the lake and the managed `secret-a`.
    pub fn start() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let lake = root.join("lake");
        let data = root.join("data");
        std::fs::create_dir_all(lake.join("pub")).unwrap();
        std::fs::write(lake.join("auth.json"), auth_json()).unwrap();
        let ids: Vec<u64> = (0..200).collect();
        let flat: Vec<f32> = (0..200 * DIM).map(|i| (i % 17) as f32).collect();
        rulake_lake::write_parquet_file(
            &lake.join("pub/part-0.parquet"),
            rulake_lake::IdsRef::U64(&ids),
            &flat,
            DIM,
            50,
        )
        .unwrap();
        let flags = vec![
            "--auth-config".into(),
            lake.join("auth.json").display().to_string(),
            "--source-allow".into(),
            format!("file://{}/", lake.display()),
        ];
        let server = Served::start_with(&data, &flags);
        let t = Target {
            _dir: dir,
            root,
            lake,
            data,
            server,
            flags,
        };
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(t.seed()));
        t
    }

    async fn seed(&self) {
        let pub_docs = parquet(
            "pub-docs",
            &format!("file://{}/pub/", self.lake.display()),
            BTreeMap::new(),
        );
        assert_eq!(self.create(ADMIN, pub_docs).await.code(), Code::Ok);
        let secret = spec("secret-a", pb::source::Kind::Managed(pb::ManagedSource {}));
        assert_eq!(self.create(ADMIN, secret).await.code(), Code::Ok);
        let records = SECRET_IDS
            .map(|id| pb::Record {
                id: Some(pb::VectorId {
                    id: Some(pb::vector_id::Id::Num(id)),
                }),
                vector: Some(pb::Vector {
                    values: vec![id as f32 / 1e5; DIM],
                }),
                ..Default::default()
            })
            .collect();
        let msgs = vec![
            pb::IngestRequest {
                message: Some(pb::ingest_request::Message::Header(pb::IngestHeader {
                    collection: "secret-a".into(),
                })),
            },
            pb::IngestRequest {
                message: Some(pb::ingest_request::Message::Batch(pb::IngestBatch {
                    records,
                })),
            },
        ];
        DataServiceClient::new(self.channel().await)
            .ingest(as_(ADMIN, futures::stream::iter(msgs)))
            .await
            .expect("ingest secret-a");
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.server.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// CreateCollection as `key`; the status (`Ok` on success).
    pub async fn create(&self, key: &str, spec: pb::CollectionSpec) -> Status {
        let got = CollectionServiceClient::new(self.channel().await)
            .create_collection(as_(key, pb::CreateCollectionRequest { spec: Some(spec) }))
            .await;
        got.err().unwrap_or_else(|| Status::ok(""))
    }

    /// The ids a search of `collection` returns to `key`.
    pub async fn search(&self, key: &str, collection: &str) -> Result<Vec<u64>, Status> {
        let req = pb::SearchRequest {
            collection: collection.into(),
            query: Some(pb::Vector {
                values: vec![9.0; DIM],
            }),
            params: Some(pb::SearchParams {
                k: 100,
                ..Default::default()
            }),
        };
        let reply = SearchServiceClient::new(self.channel().await)
            .search(as_(key, req))
            .await?
            .into_inner();
        Ok(reply
            .hits
            .iter()
            .filter_map(|h| match h.id.as_ref()?.id.as_ref()? {
                pb::vector_id::Id::Num(n) => Some(*n),
                pb::vector_id::Id::Str(_) => None,
            })
            .collect())
    }

    /// DescribeCollection as `key`.
    pub async fn describe(&self, key: &str, name: &str) -> pb::CollectionInfo {
        CollectionServiceClient::new(self.channel().await)
            .describe_collection(as_(
                key,
                pb::DescribeCollectionRequest { name: name.into() },
            ))
            .await
            .expect("describe")
            .into_inner()
            .info
            .expect("info")
    }

    /// The collections `key` sees.
    pub async fn names(&self, key: &str) -> Vec<String> {
        CollectionServiceClient::new(self.channel().await)
            .list_collections(as_(key, pb::ListCollectionsRequest {}))
            .await
            .expect("list")
            .into_inner()
            .collections
            .into_iter()
            .filter_map(|c| c.spec.map(|s| s.name))
            .collect()
    }

    /// The server still answers: listings, and searches of both tenants.
    pub async fn assert_healthy(&self) {
        let names = self.names(ADMIN).await;
        assert!(names.contains(&"pub-docs".to_owned()), "{names:?}");
        let pub_hits = self
            .search(READER, "pub-docs")
            .await
            .expect("search pub-docs");
        assert!(!pub_hits.is_empty());
        let secret = self
            .search(ADMIN, "secret-a")
            .await
            .expect("search secret-a");
        assert!(secret.iter().all(|id| SECRET_IDS.contains(id)));
        assert_eq!(
            self.search(WRITER, "secret-a").await.unwrap_err().code(),
            Code::PermissionDenied
        );
    }

    /// Stop the server (cleanly) and start it again on the same data.
    pub fn restart(&mut self) {
        self.server.stop(Duration::from_secs(20));
        self.server = Served::start_with(&self.data, &self.flags);
    }
}

/// `msg` with `key` as its bearer credential.
pub fn as_<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

fn spec(name: &str, kind: pb::source::Kind) -> pb::CollectionSpec {
    pb::CollectionSpec {
        name: name.into(),
        source: Some(pb::Source { kind: Some(kind) }),
        dimension: DIM as u32,
        metric: pb::Metric::L2 as i32,
        partitions: 1,
        ..Default::default()
    }
}

/// A Parquet collection over `url`.
pub fn parquet(name: &str, url: &str, options: BTreeMap<String, String>) -> pb::CollectionSpec {
    spec(
        name,
        pb::source::Kind::Parquet(pb::ParquetSource {
            url: url.into(),
            id_column: "id".into(),
            vector_column: "vector".into(),
            options: options.into_iter().collect(),
        }),
    )
}

/// A Delta collection over `url`.
pub fn delta(name: &str, url: &str, options: BTreeMap<String, String>) -> pb::CollectionSpec {
    spec(
        name,
        pb::source::Kind::Delta(pb::DeltaSource {
            table_url: url.into(),
            id_column: "id".into(),
            vector_column: "vector".into(),
            version: None,
            options: options.into_iter().collect(),
        }),
    )
}

/// An Iceberg collection through the SQL catalog at `uri`.
pub fn iceberg_sql(name: &str, uri: &str) -> pb::CollectionSpec {
    spec(
        name,
        pb::source::Kind::Iceberg(pb::IcebergSource {
            table: Some(pb::iceberg_source::Table::CatalogTable(
                pb::iceberg_source::CatalogTable {
                    catalog: "c".into(),
                    namespace: "ns".into(),
                    table: "t".into(),
                    uri: uri.into(),
                },
            )),
            id_column: "id".into(),
            vector_column: "vector".into(),
            snapshot_id: None,
            options: Default::default(),
        }),
    )
}

/// A listener that only counts who connects to it.
pub struct Trap {
    port: u16,
    count: Arc<AtomicUsize>,
}

impl Trap {
    /// Listen on a free loopback port.
    pub fn listen() -> Trap {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                c.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Trap { port, count }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// The TCP ports process `pid` listens on (from `/proc`).
pub fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let inodes: BTreeSet<String> = std::fs::read_dir(&fd_dir)
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().into_owned();
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let path = Path::new("/proc")
            .join(pid.to_string())
            .join("net")
            .join(table);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A: LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}
