//! The manifests' details that the chart and e2e tests do not reach.

use super::*;
use k8s_openapi::api::core::v1::PodTemplateSpec;

#[test]
fn quantities_in_bytes() {
    let q = |s: &str| quantity_bytes(&Quantity(s.into()));
    assert_eq!(q("4Gi"), Some(4 << 30));
    assert_eq!(q("512Mi"), Some(512 << 20));
    assert_eq!(q("1.5Gi"), Some(3 << 29));
    assert_eq!(q("2G"), Some(2_000_000_000));
    assert_eq!(q("1e9"), Some(1_000_000_000));
    assert_eq!(q("1000"), Some(1000));
    assert_eq!(q("100m"), None, "milli-bytes are not bytes");
    assert_eq!(q("0.5"), None);
    assert_eq!(q("lots"), None);
}

/// Coordinators keep their files under the mounted data directory (the
/// root filesystem is read-only) and write managed collections where
/// shards can read them.
#[test]
fn coordinators_get_their_data_dir_and_the_managed_url() {
    let mut cluster = crate::fixtures::cluster(3);
    let args = |c: &RuLakeCluster| {
        coordinator_deployment(c)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .args
            .clone()
            .unwrap()
    };
    let flag = |args: &[String], f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].clone())
    };
    assert_eq!(
        flag(&args(&cluster), "--data-dir").as_deref(),
        Some(DATA_DIR)
    );
    assert_eq!(flag(&args(&cluster), "--managed-url"), None);
    cluster.spec.managed_url = Some("s3://lake/rulake-managed/".into());
    assert_eq!(
        flag(&args(&cluster), "--managed-url").as_deref(),
        Some("s3://lake/rulake-managed/")
    );
}

/// The API's certificate goes to coordinators only (meta and shard
/// processes take no `--tls-cert`); the cluster's goes to every role.
#[test]
fn tls_flags_follow_the_role() {
    use crate::crd::{SecretRef, TlsSpec};
    let mut cluster = crate::fixtures::cluster(3);
    cluster.spec.tls = Some(TlsSpec {
        server_secret_ref: SecretRef { name: "api".into() },
        client_ca_secret_ref: None,
        cluster_secret_ref: Some(SecretRef {
            name: "members".into(),
        }),
    });
    let container = |t: PodTemplateSpec| t.spec.unwrap().containers.remove(0);
    let pods = [
        (
            Role::Meta,
            container(meta_statefulset(&cluster).spec.unwrap().template),
        ),
        (
            Role::Shard,
            container(
                shard_statefulset(&cluster, 3, 1 << 30)
                    .spec
                    .unwrap()
                    .template,
            ),
        ),
        (
            Role::Coordinator,
            container(coordinator_deployment(&cluster).spec.unwrap().template),
        ),
    ];
    for (role, c) in pods {
        let args = c.args.unwrap_or_default();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        for flag in ["--cluster-ca", "--cluster-cert", "--cluster-key"] {
            assert!(has(flag), "{role:?} lacks {flag}: {args:?}");
        }
        assert_eq!(
            has("--tls-cert"),
            role == Role::Coordinator,
            "{role:?}: {args:?}"
        );
        let mounts = c.volume_mounts.unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.mount_path == format!("{TLS_DIR}/cluster")));
    }
}
