//! Real TLS handshakes on loopback: a gRPC server (the standard health
//! service) behind a [`ReloadingAcceptor`], and tonic clients with and
//! without the right CA, certificates and protocol.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rulake_tls::{ClientTlsFiles, ReloadingAcceptor, ReloadingConnector, TlsFiles};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `localhost`; `expired` puts its validity in the past.
    fn leaf(&self, expired: bool) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, (cert, key): &(String, String), client_ca: Option<&str>) -> TlsFiles {
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let client_ca = client_ca.map(|ca| {
        std::fs::write(dir.join("ca.crt"), ca).unwrap();
        dir.join("ca.crt")
    });
    TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca,
    }
}

/// Serve the health service behind `acceptor`; returns the address.
async fn serve(acceptor: Arc<ReloadingAcceptor>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(acceptor.incoming(listener)),
    );
    format!("127.0.0.1:{}", addr.port())
}

async fn check(addr: &str, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(t) = tls {
        ep = ep.tls_config(t).map_err(|e| e.to_string())?;
    }
    let ch: Channel = ep.connect().await.map_err(|e| format!("{e:?}"))?;
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn trusting(ca: &Ca) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_accept_the_right_peers_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("rulake test ca");
    let other = Ca::new("someone else");
    let acceptor = ReloadingAcceptor::new(write(dir.path(), &ca.leaf(false), None)).unwrap();
    let addr = serve(acceptor).await;

    check(&addr, Some(trusting(&ca)))
        .await
        .expect("a client trusting the CA connects");
    assert!(
        check(&addr, None).await.is_err(),
        "a plain-text client must be refused"
    );
    assert!(
        check(&addr, Some(trusting(&other))).await.is_err(),
        "a client trusting another CA must refuse the server"
    );

    // An expired server certificate is refused by the client.
    let dir2 = tempfile::tempdir().unwrap();
    let expired = ReloadingAcceptor::new(write(dir2.path(), &ca.leaf(true), None)).unwrap();
    let addr2 = serve(expired).await;
    let err = check(&addr2, Some(trusting(&ca))).await.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Ca::new("cluster ca");
    let other = Ca::new("not the cluster");
    let files = write(dir.path(), &cluster.leaf(false), Some(&cluster.pem()));
    let addr = serve(ReloadingAcceptor::new(files).unwrap()).await;

    assert!(
        check(&addr, Some(trusting(&cluster))).await.is_err(),
        "a client without a certificate must not get in"
    );
    let (c, k) = other.leaf(false);
    assert!(
        check(
            &addr,
            Some(trusting(&cluster).identity(Identity::from_pem(c, k)))
        )
        .await
        .is_err(),
        "a certificate from another CA must not get in"
    );
    let (c, k) = cluster.leaf(true);
    assert!(
        check(
            &addr,
            Some(trusting(&cluster).identity(Identity::from_pem(c, k)))
        )
        .await
        .is_err(),
        "an expired client certificate must not get in"
    );
    let (c, k) = cluster.leaf(false);
    check(
        &addr,
        Some(trusting(&cluster).identity(Identity::from_pem(c, k))),
    )
    .await
    .expect("a member certificate gets in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = Ca::new("old ca");
    let new = Ca::new("new ca");
    let acceptor = ReloadingAcceptor::new(write(dir.path(), &old.leaf(false), None)).unwrap();
    let _watch = acceptor.watch(Duration::from_millis(100));
    let addr = serve(acceptor.clone()).await;
    check(&addr, Some(trusting(&old))).await.unwrap();
    assert!(check(&addr, Some(trusting(&new))).await.is_err());

    // A broken rotation (a key that does not match) keeps the old one serving.
    std::fs::write(dir.path().join("tls.key"), new.leaf(false).1).unwrap();
    assert!(acceptor.reload_if_changed().is_err());
    check(&addr, Some(trusting(&old)))
        .await
        .expect("the previous certificate keeps serving");

    // The real rotation: the watcher picks it up.
    write(dir.path(), &new.leaf(false), None);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if check(&addr, Some(trusting(&new))).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the new certificate was never served");
    assert!(check(&addr, Some(trusting(&old))).await.is_err());
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let err = ReloadingAcceptor::new(TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
        client_ca: None,
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("tls.crt"), "{err}");
    let missing = ReloadingAcceptor::new(TlsFiles {
        cert: dir.path().join("nope.crt"),
        key: dir.path().join("tls.key"),
        client_ca: None,
    })
    .err()
    .unwrap();
    assert!(missing.to_string().contains("nope.crt"), "{missing}");
}

/// A member dialling through a [`ReloadingConnector`]: the identity it
/// presents follows its files, so a rotated client certificate is used on
/// the next connection without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dials_with_its_newest_client_certificate() {
    let server_dir = tempfile::tempdir().unwrap();
    let cluster = Ca::new("cluster ca");
    let other = Ca::new("not the cluster");
    let files = write(
        server_dir.path(),
        &cluster.leaf(false),
        Some(&cluster.pem()),
    );
    let addr = serve(ReloadingAcceptor::new(files).unwrap()).await;

    // The member starts with a certificate from the wrong CA.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), cluster.pem()).unwrap();
    let leaf = |(c, k): (String, String)| {
        std::fs::write(dir.path().join("member.crt"), c).unwrap();
        std::fs::write(dir.path().join("member.key"), k).unwrap();
    };
    leaf(other.leaf(false));
    let connector = ReloadingConnector::new(ClientTlsFiles {
        ca: dir.path().join("ca.crt"),
        identity: Some((dir.path().join("member.crt"), dir.path().join("member.key"))),
    })
    .unwrap();
    let dial = |c: &Arc<ReloadingConnector>| {
        let connector = c.connector();
        let port = addr.rsplit(':').next().unwrap().to_owned();
        async move {
            let ch = Endpoint::from_shared(format!("http://localhost:{port}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5))
                .connect_with_connector(connector)
                .await
                .map_err(|e| format!("{e:?}"))?;
            HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    };
    assert!(
        dial(&connector).await.is_err(),
        "a certificate from another CA must not get in"
    );

    leaf(cluster.leaf(false));
    assert!(
        connector.reload_if_changed().unwrap(),
        "the rotation was not noticed"
    );
    dial(&connector)
        .await
        .expect("the rotated member certificate gets in");

    // A client that trusts another CA refuses the server.
    std::fs::write(dir.path().join("ca.crt"), other.pem()).unwrap();
    assert!(connector.reload_if_changed().unwrap());
    let err = dial(&connector).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}
