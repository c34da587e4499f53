//! Issuing and rotating at chosen times, and real mutual-TLS handshakes
//! with what was issued (the same rustls acceptor the roles serve with).

use super::*;

fn names() -> Names {
    Names {
        cluster: "demo".into(),
        namespace: "default".into(),
    }
}

fn t0() -> Timestamp {
    "2030-03-01T12:00:00Z".parse().unwrap()
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// The Secrets after applying `plan` over `before`.
#[derive(Clone, Default)]
struct Secrets {
    ca: Option<Data>,
    certs: Option<Data>,
    since: Option<Timestamp>,
}

impl Secrets {
    fn stored(&self) -> Stored<'_> {
        Stored {
            ca: self.ca.as_ref(),
            certs: self.certs.as_ref(),
            trusted_since: self.since,
        }
    }

    /// Plans at `now` and applies what the plan writes.
    fn step(&mut self, now: Timestamp) -> Plan {
        let plan = plan(&names(), self.stored(), now).expect("plan");
        if let Some(ca) = &plan.ca {
            self.ca = Some(ca.clone());
        }
        if let Some((certs, since)) = &plan.certs {
            self.certs = Some(certs.clone());
            self.since = Some(*since);
        }
        plan
    }

    fn info(&self, key: &str) -> (Vec<u8>, Vec<u8>, Timestamp) {
        let pem = self.certs.as_ref().unwrap()[key].clone();
        let der = pem_der(&pem).unwrap();
        let info = der::cert_info(&der).unwrap();
        (info.issuer.to_vec(), info.subject.to_vec(), info.not_after)
    }

    fn ca_subject(&self) -> Vec<u8> {
        let der = pem_der(&self.ca.as_ref().unwrap()[CA_CERT]).unwrap();
        der::cert_info(&der).unwrap().subject.to_vec()
    }
}

#[test]
fn a_new_cluster_gets_a_ca_and_a_certificate_per_role_then_nothing_more() {
    let mut s = Secrets::default();
    let first = s.step(t0());
    assert_eq!(first.issued, ["CA", "meta", "shard", "coordinator"]);
    let ca = s.ca.clone().unwrap();
    assert_eq!(
        ca.keys().collect::<Vec<_>>(),
        ["ca.crt", "ca.key"],
        "no previous CA for a new cluster"
    );
    let certs = s.certs.clone().unwrap();
    assert_eq!(
        certs.keys().collect::<Vec<_>>(),
        [
            "ca.crt",
            "coordinator.crt",
            "coordinator.key",
            "meta.crt",
            "meta.key",
            "shard.crt",
            "shard.key"
        ]
    );
    assert!(
        !certs.values().any(|v| v == &ca["ca.key"]),
        "the CA key never goes where pods mount"
    );
    assert_eq!(certs["ca.crt"], ca["ca.crt"]);
    for role in ["meta", "shard", "coordinator"] {
        let (issuer, _, not_after) = s.info(&format!("{role}.crt"));
        assert_eq!(issuer, s.ca_subject(), "{role} is signed by the CA");
        let left = not_after.duration_since(t0());
        assert!(left > days(89) && left <= days(91), "{role}: {left:?}");
    }
    assert_eq!(s.since, Some(t0()));

    // Present and valid: reused, nothing written.
    let again = s.step(t0() + days(1));
    assert!(again.ca.is_none() && again.certs.is_none(), "{again:?}");
    assert!(again.issued.is_empty());
}

#[test]
fn role_certificates_are_issued_again_within_the_renewal_window_only() {
    let mut s = Secrets::default();
    s.step(t0());
    let before = s.certs.clone().unwrap();
    // 90-day certificates: more than 30 days left at day 59.
    let early = s.step(t0() + days(59));
    assert!(early.certs.is_none() && early.issued.is_empty());
    // Fewer than 30 days left at day 61.
    let due = s.step(t0() + days(61));
    assert!(due.ca.is_none(), "the CA stays");
    assert_eq!(due.issued, ["meta", "shard", "coordinator"]);
    let after = s.certs.clone().unwrap();
    for key in ["meta.crt", "meta.key", "shard.crt", "coordinator.key"] {
        assert_ne!(before[key], after[key], "{key} renewed");
    }
    assert_eq!(before["ca.crt"], after["ca.crt"], "same bundle");
    let (_, _, not_after) = s.info("meta.crt");
    assert!(not_after.duration_since(t0() + days(61)) > days(89));
    assert_eq!(s.info("meta.crt").0, s.ca_subject());
}

#[test]
fn unreadable_or_mismatched_material_is_replaced() {
    let mut s = Secrets::default();
    s.step(t0());
    let certs = s.certs.as_mut().unwrap();
    let shard_key = certs["shard.key"].clone();
    certs.insert("meta.key".into(), shard_key);
    certs.insert("coordinator.crt".into(), b"garbage".to_vec());
    let fixed = s.step(t0());
    assert_eq!(fixed.issued, ["meta", "coordinator"], "shard kept");

    // The CA Secret lost: a new CA, and every certificate at once (nothing
    // trusts the old one's successor, nothing to phase).
    let old_ca = s.ca_subject();
    s.ca = None;
    let lost = s.step(t0() + days(2));
    assert_eq!(lost.issued, ["CA", "meta", "shard", "coordinator"]);
    assert_ne!(s.ca_subject(), old_ca);
    assert_eq!(s.info("shard.crt").0, s.ca_subject());
}

#[test]
fn the_ca_is_replaced_before_expiry_and_certificates_follow_after_the_grace() {
    let mut s = Secrets::default();
    s.step(t0());
    let old_ca = s.ca_subject();
    let old_pem = s.ca.as_ref().unwrap()[CA_CERT].clone();
    // Just before the CA's renewal point: only the role certificates,
    // long expired, are issued again (by the old CA).
    let before_due = t0() + CA_VALIDITY - CA_RENEW_BEFORE - days(2);
    let plan = s.step(before_due);
    assert_eq!(plan.issued, ["meta", "shard", "coordinator"]);
    assert_eq!(s.ca_subject(), old_ca);

    // Due: a new CA; the bundle trusts both; certificates stay on the old
    // CA until every pod has had time to trust the new one.
    let rotated_at = before_due + days(3);
    let plan = s.step(rotated_at);
    assert_eq!(plan.issued, ["CA (renewal)"]);
    let new_ca = s.ca_subject();
    assert_ne!(new_ca, old_ca);
    let ca = s.ca.clone().unwrap();
    assert_eq!(ca[PREVIOUS_CA], old_pem);
    let bundle = String::from_utf8(s.certs.as_ref().unwrap()[BUNDLE].clone()).unwrap();
    assert!(bundle.contains(String::from_utf8(old_pem.clone()).unwrap().trim()));
    assert!(bundle.contains(String::from_utf8(ca[CA_CERT].clone()).unwrap().trim()));
    assert_eq!(s.since, Some(rotated_at));
    assert_eq!(s.info("meta.crt").0, old_ca, "not switched yet");

    let within = s.step(rotated_at + SignedDuration::from_mins(5));
    assert!(within.ca.is_none() && within.certs.is_none(), "{within:?}");

    let after = s.step(rotated_at + CA_SWITCH_GRACE + SignedDuration::from_secs(1));
    assert_eq!(after.issued, ["meta", "shard", "coordinator"]);
    for role in ["meta", "shard", "coordinator"] {
        assert_eq!(s.info(&format!("{role}.crt")).0, new_ca, "{role} switched");
    }

    // The old CA leaves the bundle once it has expired.
    let old_expiry = {
        let der = pem_der(&old_pem).unwrap();
        der::cert_info(&der).unwrap().not_after
    };
    s.step(old_expiry + days(1));
    assert!(!s.ca.as_ref().unwrap().contains_key(PREVIOUS_CA));
    let bundle = String::from_utf8(s.certs.as_ref().unwrap()[BUNDLE].clone()).unwrap();
    assert!(!bundle.contains(String::from_utf8(old_pem).unwrap().trim()));
}

mod handshakes {
    use super::*;
    use rulake_tls::{ReloadingAcceptor, TlsFiles};
    use std::path::Path;
    use std::time::Duration;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    /// A role's files as its pod sees them (the Secret's items).
    fn mount(dir: &Path, certs: &Data, role: &str) -> TlsFiles {
        std::fs::write(dir.join("ca.crt"), &certs[BUNDLE]).unwrap();
        std::fs::write(dir.join("tls.crt"), &certs[&format!("{role}.crt")]).unwrap();
        std::fs::write(dir.join("tls.key"), &certs[&format!("{role}.key")]).unwrap();
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: Some(dir.join("ca.crt")),
        }
    }

    async fn serve(files: TlsFiles) -> u16 {
        let acceptor = ReloadingAcceptor::new(files).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(acceptor.incoming(listener)),
        );
        port
    }

    /// A health check to `port` as a peer dialling `name`, presenting
    /// `role`'s certificate from `certs` (none when `role` is `None`).
    async fn call(port: u16, name: &str, certs: &Data, role: Option<&str>) -> Result<(), String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&certs[BUNDLE]))
            .domain_name(name);
        if let Some(r) = role {
            tls = tls.identity(Identity::from_pem(
                &certs[&format!("{r}.crt")],
                &certs[&format!("{r}.key")],
            ));
        }
        let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn issued_certificates_authenticate_members_and_nobody_else() {
        let now = Timestamp::now();
        let mut cluster = Secrets::default();
        cluster.step(now);
        let certs = cluster.certs.clone().unwrap();
        let mut other = Secrets::default();
        other.step(now);
        let stranger = other.certs.clone().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let meta = serve(mount(dir.path(), &certs, "meta")).await;
        let meta_0 = "demo-meta-0.demo-meta.default.svc";
        for peer in ["meta", "shard", "coordinator"] {
            call(meta, meta_0, &certs, Some(peer))
                .await
                .unwrap_or_else(|e| panic!("{peer} → meta refused: {e}"));
        }
        assert!(
            call(meta, meta_0, &certs, None).await.is_err(),
            "no client certificate, no catalog"
        );
        // Another cluster's certificate, checked against this cluster's CA.
        let mut mixed = stranger.clone();
        mixed.insert(BUNDLE.into(), certs[BUNDLE].clone());
        assert!(
            call(meta, meta_0, &mixed, Some("shard")).await.is_err(),
            "a certificate of another CA is refused"
        );
        // The meta certificate does not name shard addresses.
        assert!(
            call(
                meta,
                "demo-shard-0.demo-shard.default.svc",
                &certs,
                Some("shard")
            )
            .await
            .is_err(),
            "the meta certificate names meta pods only"
        );

        let dir = tempfile::tempdir().unwrap();
        let shard = serve(mount(dir.path(), &certs, "shard")).await;
        call(
            shard,
            "demo-shard-3.demo-shard.default.svc",
            &certs,
            Some("coordinator"),
        )
        .await
        .expect("coordinator → shard");
    }
}
