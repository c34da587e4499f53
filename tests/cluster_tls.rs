//! Mutual TLS between cluster roles, with real processes on loopback: a
//! meta group, shard nodes and a coordinator that all hold certificates of
//! one cluster CA answer queries, while shard nodes with no certificate or
//! one from another CA never join, and internal RPCs without a cluster
//! certificate are refused.

use rulake_tests as support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rulake_catalog::{CatalogClient, ReadConsistency, Transport};
use rulake_client::proto;
use rulake_lake::{IdsRef, ID_COLUMN, VECTOR_COLUMN};
use rulake_proto::internal::v1::shard_service_client::ShardServiceClient;
use rulake_proto::internal::v1::ShardStatusRequest;
use rulake_tls::{ClientTlsFiles, ReloadingConnector};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::distributed::Distributed;

const DIM: usize = 8;
const ROWS: usize = 2_000;

/// A CA that writes its bundle and leaves for 127.0.0.1 into a directory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
            dir: dir.join(name),
        };
        std::fs::create_dir_all(&ca.dir).unwrap();
        std::fs::write(ca.dir.join("ca.crt"), ca.issuer.pem()).unwrap();
        ca
    }

    /// A leaf for the loopback address; returns the process flags that use it.
    fn member(&self, name: &str) -> Vec<String> {
        let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (crt, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        [
            "--cluster-ca",
            &self.dir.join("ca.crt").display().to_string(),
            "--cluster-cert",
            &crt.display().to_string(),
            "--cluster-key",
            &k.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// The test's own channels: trust this CA, present `member`'s leaf.
    fn transport(&self, member: &str) -> Transport {
        let connector = ReloadingConnector::new(ClientTlsFiles {
            ca: self.dir.join("ca.crt"),
            identity: Some((
                self.dir.join(format!("{member}.crt")),
                self.dir.join(format!("{member}.key")),
            )),
        })
        .unwrap()
        .connector();
        Transport::default()
            .with_connect(move |ep| ep.connect_with_connector_lazy(connector.clone()))
    }
}

fn write_lake(dir: &Path) -> Vec<f32> {
    let ids: Vec<u64> = (0..ROWS as u64).collect();
    let vectors: Vec<f32> = (0..ROWS * DIM)
        .map(|i| ((i * 7919) % 1009) as f32 / 101.0)
        .collect();
    rulake_lake::write_parquet_file(
        &dir.join("part-0.parquet"),
        IdsRef::U64(&ids),
        &vectors,
        DIM,
        ROWS / 4,
    )
    .unwrap();
    vectors
}

fn spec(url: &str) -> proto::CollectionSpec {
    proto::CollectionSpec {
        name: "secured".into(),
        source: Some(proto::Source {
            kind: Some(proto::source::Kind::Parquet(proto::ParquetSource {
                url: url.into(),
                id_column: ID_COLUMN.into(),
                vector_column: VECTOR_COLUMN.into(),
                options: Default::default(),
            })),
        }),
        dimension: DIM as u32,
        metric: proto::Metric::L2 as i32,
        partitions: 4,
        replication_factor: 1,
        ..Default::default()
    }
}

/// Shard node ids registered in the catalog, read over mutual TLS.
async fn registered(d: &Distributed) -> Vec<u64> {
    d.meta
        .client_all()
        .read(ReadConsistency::Linearizable)
        .await
        .unwrap()
        .catalog
        .nodes
        .keys()
        .copied()
        .collect()
}

async fn shard_status(transport: &Transport, addr: &str) -> Result<u64, String> {
    let ch = transport.channel(addr)?;
    let mut c = ShardServiceClient::new(ch);
    let mut req = tonic::Request::new(ShardStatusRequest {});
    req.set_timeout(Duration::from_secs(5));
    c.status(req)
        .await
        .map(|r| r.into_inner().node_id)
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_a_cluster_certificate_join_and_call_internal_rpcs() {
    let pki = tempfile::tempdir().unwrap();
    let cluster = Ca::new(pki.path(), "cluster");
    let rogue = Ca::new(pki.path(), "rogue");
    let member = cluster.member("member");
    let intruder = rogue.member("intruder");

    let mut d = Distributed::start_with(2, &member, cluster.transport("member"));
    let coordinator = d.coordinator();
    let lake = tempfile::tempdir().unwrap();
    let vectors = write_lake(lake.path());
    let client = d.client(&coordinator).await;
    client
        .create_collection(spec(&format!("file://{}/", lake.path().display())))
        .await
        .unwrap();

    // Queries cross coordinator → shard and shard → meta over mutual TLS:
    // every partition answers, and a stored vector finds itself.
    let start = Instant::now();
    loop {
        let r = client
            .search("secured", &vectors[DIM * 42..DIM * 43], 5)
            .await;
        if let Ok(r) = &r {
            if r.partitions_answered == r.partitions_total {
                let top = r.hits[0].id.as_ref().and_then(|i| i.id.clone());
                assert_eq!(top, Some(proto::vector_id::Id::Num(42)));
                assert_eq!(r.hits[0].distance, 0.0);
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the TLS cluster never answered from every partition: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(registered(&d).await, vec![1, 2]);

    // Three shard nodes start together: one without any certificate, one
    // with a certificate of another CA, and one member as the control.
    d.spawn_shard_with(3, &[]);
    d.spawn_shard_with(4, &intruder);
    d.spawn_shard(5);
    let start = Instant::now();
    while !registered(&d).await.contains(&5) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the member shard node 5 never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The intruders have had as long as node 5 to register; give them ten
    // more heartbeat intervals and check on every one of them.
    for _ in 0..10 {
        let nodes = registered(&d).await;
        assert!(
            !nodes.contains(&3) && !nodes.contains(&4),
            "a node without a cluster certificate joined: {nodes:?}"
        );
        let a = d.assignment().await;
        assert!(
            a.partitions.values().flatten().all(|n| ![3, 4].contains(n)),
            "a node without a cluster certificate was given partitions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Internal RPCs: a cluster certificate gets an answer; no certificate,
    // or one from another CA, does not.
    let shard1 = d.shard_addr(1);
    assert_eq!(
        shard_status(&cluster.transport("member"), &shard1).await,
        Ok(1)
    );
    let plain = shard_status(&Transport::default(), &shard1).await;
    assert!(
        plain.is_err(),
        "plaintext call to a shard answered: {plain:?}"
    );
    let foreign = shard_status(&rogue.transport("intruder"), &shard1).await;
    assert!(
        foreign.is_err(),
        "a foreign certificate was accepted: {foreign:?}"
    );

    // The catalog refuses the same callers.
    let addrs = d.meta.addrs(&[1, 2, 3]);
    for (what, t) in [
        ("plaintext", Transport::default()),
        ("foreign certificate", rogue.transport("intruder")),
    ] {
        let mut c = CatalogClient::with_transport(&addrs, &t).unwrap();
        c.call_timeout = Duration::from_secs(2);
        c.total_timeout = Duration::from_secs(5);
        let r = c.read(ReadConsistency::Local).await;
        assert!(r.is_err(), "{what} read the catalog");
    }
}
