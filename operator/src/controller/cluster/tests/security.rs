//! The cluster reconciler's security steps against the mocked API server:
//! issued certificates created once, reused, renewed when due, skipped
//! when the user provides them or turns mutual TLS off; the admin key
//! read from its Secret; a spec without authentication refused.

use super::*;
use crate::certs::{self, Names, Stored};
use crate::crd::{SecretRef, TlsSpec};
use crate::manifests;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The stored issued-certificate Secrets, as the mock answers their GETs:
/// `None` for 404.
#[derive(Clone, Default)]
pub(super) struct StoredCerts {
    pub(super) ca: Option<serde_json::Value>,
    pub(super) certs: Option<serde_json::Value>,
}

/// Expects the issued-certificate step: both Secrets read (answered from
/// `stored`), then an apply of each Secret named in `writes` (`ca`,
/// `certs`) and, when there was one, the event. Returns the Secrets as
/// they are afterwards.
pub(super) async fn expect_certs(
    api: &mut MockApi,
    stored: StoredCerts,
    writes: &[&str],
) -> StoredCerts {
    for (name, value) in [
        ("demo-cluster-ca", &stored.ca),
        ("demo-cluster-certs", &stored.certs),
    ] {
        let call = api
            .expect(Method::GET, &format!("{NS}/secrets/{name}"))
            .await;
        match value {
            Some(v) => call.respond(v.clone()),
            None => call.not_found(),
        }
    }
    let mut after = stored;
    for which in writes {
        let path = format!("{NS}/secrets/demo-cluster-{which}");
        let body = expect_apply(api, &path, None).await;
        assert_eq!(body["type"], "Opaque");
        match *which {
            "ca" => after.ca = Some(body),
            _ => after.certs = Some(body),
        }
    }
    if !writes.is_empty() {
        assert_eq!(api.expect_event("default").await, "CertificatesIssued");
    }
    after
}

/// A Secret's data, decoded.
fn secret_data(secret: &serde_json::Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    let secret: Secret = serde_json::from_value(secret.clone()).unwrap();
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// One reconcile of a healthy 3-shard cluster `c` whose certificates
/// step is `certs` (stored Secrets and the writes expected); returns the
/// Secrets afterwards.
async fn reconcile_healthy(
    c: RuLakeCluster,
    certs: Option<(StoredCerts, &'static [&'static str])>,
) -> StoredCerts {
    let fake = Arc::new(FakeAdmin::default());
    *fake.status.lock().unwrap() = Some(healthy(3));
    let (ctx, mut api) = test_context(fake);
    let mut c = c;
    c.status = Some(RuLakeClusterStatus::default());
    c.status.as_mut().unwrap().shards.admitted = 3;
    let server = tokio::spawn(async move {
        shard_lookup(&mut api, Some(3)).await;
        let after = match certs {
            Some((stored, writes)) => expect_certs(&mut api, stored, writes).await,
            None => StoredCerts::default(),
        };
        expect_workloads(&mut api, [3, 3, 2]).await;
        let status = api.expect(Method::PATCH, STATUS).await;
        assert_eq!(
            condition(&status.body, "Ready"),
            ("True".into(), "Serving".into())
        );
        status.respond(serde_json::to_value(cluster(3)).unwrap());
        (api, after)
    });
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let (api, after) = server.await.unwrap();
    api.done().await;
    after
}

#[tokio::test]
async fn issued_certificates_are_created_when_missing_and_reused_when_present() {
    let created =
        reconcile_healthy(cluster(3), Some((StoredCerts::default(), &["ca", "certs"]))).await;
    let ca = secret_data(created.ca.as_ref().unwrap());
    assert_eq!(ca.keys().collect::<Vec<_>>(), ["ca.crt", "ca.key"]);
    let issued = secret_data(created.certs.as_ref().unwrap());
    assert_eq!(
        issued.keys().collect::<Vec<_>>(),
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
    assert_eq!(issued["ca.crt"], ca["ca.crt"]);
    assert!(created.certs.as_ref().unwrap()["metadata"]["annotations"]
        [manifests::CA_TRUSTED_SINCE]
        .is_string());

    // Present and valid: read, nothing written, no event.
    let again = reconcile_healthy(cluster(3), Some((created.clone(), &[]))).await;
    assert_eq!(again.ca, created.ca);
    assert_eq!(again.certs, created.certs);
}

#[tokio::test]
async fn certificates_due_for_renewal_are_issued_again_under_the_same_ca() {
    // Secrets as a run 61 days ago left them: 29 days left on 90.
    let then = Timestamp::now() - SignedDuration::from_hours(61 * 24);
    let names = Names {
        cluster: "demo".into(),
        namespace: "default".into(),
    };
    let plan = certs::plan(&names, Stored::default(), then).unwrap();
    let c = cluster(3);
    let (certs_data, since) = plan.certs.unwrap();
    let stored = StoredCerts {
        ca: Some(
            serde_json::to_value(manifests::owned_secret(
                &c,
                "demo-cluster-ca".into(),
                plan.ca.unwrap(),
                Default::default(),
            ))
            .unwrap(),
        ),
        certs: Some(
            serde_json::to_value(manifests::owned_secret(
                &c,
                "demo-cluster-certs".into(),
                certs_data.clone(),
                [(manifests::CA_TRUSTED_SINCE.to_string(), since.to_string())].into(),
            ))
            .unwrap(),
        ),
    };
    let after = reconcile_healthy(c, Some((stored, &["certs"]))).await;
    let renewed = secret_data(after.certs.as_ref().unwrap());
    assert_eq!(renewed["ca.crt"], certs_data["ca.crt"], "same CA");
    for role in ["meta", "shard", "coordinator"] {
        let key = format!("{role}.crt");
        assert_ne!(renewed[&key], certs_data[&key], "{role} renewed");
        let left = certs::expiry(&renewed[&key])
            .unwrap()
            .duration_since(Timestamp::now());
        assert!(
            left > SignedDuration::from_hours(88 * 24),
            "{role}: {left:?}"
        );
    }
}

#[tokio::test]
async fn nothing_is_issued_for_user_certificates_or_without_mutual_tls() {
    let mut provided = cluster(3);
    provided.spec.tls = Some(TlsSpec {
        cluster_secret_ref: Some(SecretRef {
            name: "members".into(),
        }),
        ..TlsSpec::default()
    });
    reconcile_healthy(provided, None).await;

    let mut plaintext = cluster(3);
    plaintext.spec.tls = Some(TlsSpec {
        insecure_cluster_plaintext: true,
        ..TlsSpec::default()
    });
    reconcile_healthy(plaintext, None).await;
}

#[tokio::test]
async fn a_missing_admin_key_is_a_condition_naming_the_secret() {
    let fake = Arc::new(FakeAdmin::default());
    *fake.status.lock().unwrap() = Some(healthy(3));
    let (ctx, mut api) = test_context(fake.clone());
    let mut c = cluster(3);
    c.status = Some(RuLakeClusterStatus::default());
    c.status.as_mut().unwrap().shards.admitted = 3;
    let server = tokio::spawn(async move {
        statefulset_lookup(&mut api, Some(3)).await;
        api.expect(Method::GET, &format!("{NS}/secrets/demo-admin-key"))
            .await
            .not_found();
        expect_children(&mut api, [3, 3, 2]).await;
        let status = api.expect(Method::PATCH, STATUS).await;
        assert_eq!(
            condition(&status.body, "Degraded"),
            ("True".into(), "AdminUnavailable".into())
        );
        let message = status.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .unwrap()["message"]
            .to_string();
        assert!(message.contains("demo-admin-key"), "{message}");
        status.respond(serde_json::to_value(cluster(3)).unwrap());
        api
    });
    reconcile(Arc::new(c), ctx)
        .await
        .expect("reported, not failed");
    server.await.unwrap().done().await;
    assert!(
        fake.calls().is_empty(),
        "the fake cluster is never called without a key"
    );
}

#[tokio::test]
async fn a_cluster_without_authentication_is_refused() {
    for (what, auth) in [
        ("no auth", None),
        (
            "both secretRef and allowAnonymous",
            Some(crate::crd::AuthSpec {
                allow_anonymous: true,
                ..cluster(3).spec.auth.unwrap()
            }),
        ),
    ] {
        let fake = Arc::new(FakeAdmin::default());
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = cluster(3);
        c.spec.auth = auth;
        let server = tokio::spawn(async move {
            assert_eq!(api.expect_event("default").await, "InvalidSpec");
            let status = api.expect(Method::PATCH, STATUS).await;
            assert_eq!(
                condition(&status.body, "Ready"),
                ("False".into(), "InvalidSpec".into())
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let action = reconcile(Arc::new(c), ctx).await.expect(what);
        assert_eq!(action, Action::await_change(), "{what}");
        server.await.unwrap().done().await;
        assert!(fake.calls().is_empty(), "{what}");
    }
}
