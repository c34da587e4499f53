//! The manifests' details that the chart and e2e tests do not reach.

use super::*;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use std::collections::BTreeMap;

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
fn coordinators_get_their_data_dir_the_managed_url_the_backup_location_and_the_audit_log() {
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
    // The audit log goes to standard output when asked for, reads only on
    // request; without the field there is none.
    assert_eq!(flag(&args(&cluster), "--audit-log"), None);
    cluster.spec.coordinators.audit = Some(crate::crd::AuditSpec { reads: false });
    assert_eq!(flag(&args(&cluster), "--audit-log").as_deref(), Some("-"));
    assert!(!args(&cluster).contains(&"--audit-reads".to_owned()));
    cluster.spec.coordinators.audit = Some(crate::crd::AuditSpec { reads: true });
    assert!(args(&cluster).contains(&"--audit-reads".to_owned()));
    // Scheduled backups: the coordinators may write (and restore from)
    // the backup location, and only there.
    assert_eq!(flag(&args(&cluster), "--backup-allow"), None);
    cluster.spec.backup = Some(crate::crd::BackupSpec {
        schedule: "@daily".into(),
        location: "s3://backups/rulake/".into(),
        suspend: false,
    });
    assert_eq!(
        flag(&args(&cluster), "--backup-allow").as_deref(),
        Some("s3://backups/rulake/")
    );
}

/// The three pod templates of `cluster`, by role.
fn pods(cluster: &RuLakeCluster) -> [(Role, PodTemplateSpec); 3] {
    [
        (Role::Meta, meta_statefulset(cluster).spec.unwrap().template),
        (
            Role::Shard,
            shard_statefulset(cluster, 3, 1 << 30)
                .spec
                .unwrap()
                .template,
        ),
        (
            Role::Coordinator,
            coordinator_deployment(cluster).spec.unwrap().template,
        ),
    ]
}

fn flag(args: &[String], f: &str) -> Option<String> {
    args.iter()
        .position(|a| a == f)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The API's certificate goes to coordinators only (meta and shard
/// processes take no `--tls-cert`); the cluster's goes to every role.
#[test]
fn tls_flags_follow_the_role() {
    use crate::crd::{SecretRef, TlsSpec};
    let mut cluster = crate::fixtures::cluster(3);
    cluster.spec.tls = Some(TlsSpec {
        server_secret_ref: Some(SecretRef { name: "api".into() }),
        client_ca_secret_ref: None,
        cluster_secret_ref: Some(SecretRef {
            name: "members".into(),
        }),
        insecure_cluster_plaintext: false,
    });
    for (role, t) in pods(&cluster) {
        let spec = t.spec.unwrap();
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap_or_default();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        for flag in ["--cluster-ca", "--cluster-cert", "--cluster-key"] {
            assert!(has(flag), "{role:?} lacks {flag}: {args:?}");
        }
        assert_eq!(
            has("--tls-cert"),
            role == Role::Coordinator,
            "{role:?}: {args:?}"
        );
        let mounts = c.volume_mounts.clone().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.mount_path == "/etc/rulake/tls/cluster" && m.read_only == Some(true)));
        let volume = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tls-cluster")
            .unwrap();
        let secret = volume.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("members"));
        assert_eq!(secret.items, None, "the user's Secret is mounted whole");
    }
}

/// By default (no `tls`), every role gets mutual TLS from the Secret the
/// operator issues, each mounting only its own key under the file names
/// the flags expect; coordinators get the auth config.
#[test]
fn by_default_pods_get_issued_mutual_tls_and_coordinators_the_auth_config() {
    let cluster = crate::fixtures::cluster(3);
    for (role, t) in pods(&cluster) {
        let spec = t.spec.unwrap();
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(
            flag(&args, "--cluster-ca").as_deref(),
            Some("/etc/rulake/tls/cluster/ca.crt"),
            "{role:?}: {args:?}"
        );
        assert_eq!(
            flag(&args, "--cluster-cert").as_deref(),
            Some("/etc/rulake/tls/cluster/tls.crt")
        );
        assert_eq!(
            flag(&args, "--cluster-key").as_deref(),
            Some("/etc/rulake/tls/cluster/tls.key")
        );
        let volumes = spec.volumes.clone().unwrap();
        let tls = volumes.iter().find(|v| v.name == "tls-cluster").unwrap();
        let secret = tls.secret.clone().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("demo-cluster-certs"));
        assert_eq!(secret.default_mode, Some(0o440));
        let items: Vec<(String, String)> = secret
            .items
            .unwrap()
            .into_iter()
            .map(|i| (i.key, i.path))
            .collect();
        let r = role.as_str();
        assert_eq!(
            items,
            [
                ("ca.crt".to_string(), "ca.crt".to_string()),
                (format!("{r}.crt"), "tls.crt".to_string()),
                (format!("{r}.key"), "tls.key".to_string()),
            ],
            "{role:?} mounts its own key only"
        );

        assert!(!args.iter().any(|a| a == "--cluster-insecure"));
        let coordinator = role == Role::Coordinator;
        assert_eq!(
            flag(&args, "--auth-config").as_deref(),
            coordinator.then_some("/etc/rulake/auth/auth.json"),
            "{role:?}: {args:?}"
        );
        assert!(!args.iter().any(|a| a == "--allow-anonymous"));
        let auth = volumes.iter().find(|v| v.name == "auth");
        assert_eq!(auth.is_some(), coordinator, "{role:?}");
        if let Some(auth) = auth {
            let secret = auth.secret.clone().unwrap();
            assert_eq!(secret.secret_name.as_deref(), Some("demo-auth"));
            let mount = c
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == "auth")
                .unwrap();
            assert_eq!(
                (mount.mount_path.as_str(), mount.read_only),
                ("/etc/rulake/auth", Some(true))
            );
        }
    }
}

/// The development switches: anonymous access passes `--allow-anonymous`
/// and mounts no auth Secret; plaintext between roles drops every cluster
/// TLS file and volume and says `--cluster-insecure` instead (the roles
/// refuse to start with neither).
#[test]
fn development_switches_are_honoured() {
    use crate::crd::{AuthSpec, TlsSpec};
    let mut cluster = crate::fixtures::cluster(3);
    cluster.spec.auth = Some(AuthSpec {
        allow_anonymous: true,
        ..AuthSpec::default()
    });
    cluster.spec.tls = Some(TlsSpec {
        insecure_cluster_plaintext: true,
        ..TlsSpec::default()
    });
    assert_eq!(cluster.spec.check_security(), Ok(()));
    for (role, t) in pods(&cluster) {
        let spec = t.spec.unwrap();
        let args = spec.containers[0].args.clone().unwrap();
        for f in ["--cluster-ca", "--cluster-cert", "--cluster-key"] {
            assert!(!args.iter().any(|a| a == f), "{role:?}: {args:?}");
        }
        assert!(
            args.iter().any(|a| a == "--cluster-insecure"),
            "{role:?} is told plaintext is meant: {args:?}"
        );
        assert_eq!(
            args.iter().any(|a| a == "--allow-anonymous"),
            role == Role::Coordinator
        );
        assert!(!args.iter().any(|a| a == "--auth-config"));
        let volumes = spec.volumes.unwrap();
        assert!(!volumes
            .iter()
            .any(|v| v.name == "tls-cluster" || v.name == "auth"));
    }
}

/// RuLake pods never call the Kubernetes API, so they get no token, and
/// no Service environment variables.
#[test]
fn no_pod_gets_a_service_account_token() {
    for cluster in [crate::fixtures::cluster(3), {
        let mut c = crate::fixtures::cluster(1);
        c.spec.tls = Some(crate::crd::TlsSpec {
            insecure_cluster_plaintext: true,
            ..Default::default()
        });
        c
    }] {
        for (role, t) in pods(&cluster) {
            let spec = t.spec.unwrap();
            assert_eq!(
                spec.automount_service_account_token,
                Some(false),
                "{role:?}"
            );
            assert_eq!(spec.enable_service_links, Some(false), "{role:?}");
        }
    }
}

/// A role that starts slowly (a shard registering, then catching up) is
/// not killed for it: liveness waits for a startup probe that allows
/// longer than registration and catch-up take together.
#[test]
fn a_slow_start_is_given_a_startup_probe_before_liveness_counts() {
    for (role, t) in pods(&crate::fixtures::cluster(3)) {
        let c = &t.spec.unwrap().containers[0];
        let startup = c.startup_probe.as_ref().expect("a startup probe");
        let allowed = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
        assert!(allowed >= 60 + 30 + 30, "{role:?}: {allowed} s");
        assert_eq!(
            startup.http_get.as_ref().unwrap().path.as_deref(),
            Some("/healthz")
        );
        assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
    }
}

/// Whether `labels` satisfy `selector` (matchLabels and `In` expressions).
fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        assert_eq!(e.operator, "In");
        labels
            .get(&e.key)
            .is_some_and(|v| e.values.iter().flatten().any(|w| w == v))
    });
    exact && expressions
}

/// Meta's Raft port and the shards' port admit only this cluster's pods;
/// metrics stay open; coordinators (the public port) get no policy.
#[test]
fn network_policies_admit_internal_ports_from_the_cluster_only() {
    let cluster = crate::fixtures::cluster(3);
    let policies = network_policies(&cluster);
    let names: Vec<_> = policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["demo-meta-internal", "demo-shard-internal"]);
    let pod_labels: BTreeMap<Role, BTreeMap<String, String>> = pods(&cluster)
        .into_iter()
        .map(|(role, t)| (role, t.metadata.unwrap().labels.unwrap()))
        .collect();
    for (policy, (role, port)) in policies
        .iter()
        .zip([(Role::Meta, 7700), (Role::Shard, 50051)])
    {
        let spec = policy.spec.clone().unwrap();
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );
        let target = spec.pod_selector.clone().unwrap();
        for (other, labels) in &pod_labels {
            assert_eq!(
                selects(&target, labels),
                *other == role,
                "{role:?} policy on {other:?}"
            );
        }
        assert_eq!(
            policy.metadata.owner_references.as_ref().unwrap()[0].kind,
            "RuLakeCluster"
        );
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 2);
        let ports = |i: usize| -> Vec<IntOrString> {
            ingress[i]
                .ports
                .iter()
                .flatten()
                .map(|p| p.port.clone().unwrap())
                .collect()
        };
        assert_eq!(ports(0), [IntOrString::Int(port)]);
        let peers = ingress[0].from.clone().unwrap();
        assert_eq!(peers.len(), 1);
        assert!(peers[0].namespace_selector.is_none(), "same namespace only");
        assert!(peers[0].ip_block.is_none());
        let peer = peers[0].pod_selector.clone().unwrap();
        for (other, labels) in &pod_labels {
            assert!(selects(&peer, labels), "{other:?} is a peer");
        }
        let mut stranger = pod_labels[&Role::Shard].clone();
        stranger.insert("app.kubernetes.io/instance".into(), "other".into());
        assert!(!selects(&peer, &stranger), "another cluster's pod");
        let mut operator = pod_labels[&Role::Shard].clone();
        operator.insert("app.kubernetes.io/component".into(), "operator".into());
        assert!(!selects(&peer, &operator), "a non-RuLake-role pod");
        assert_eq!(ingress[1].from, None, "metrics from anywhere");
        assert_eq!(ports(1), [IntOrString::Int(9090)]);
    }
}

/// Each role's scheduling and identity fields reach its pods as given,
/// and only its own; the image pull Secrets reach every role.
#[test]
fn scheduling_and_identity_fields_pass_through_per_role() {
    use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration, TopologySpreadConstraint};
    let mut cluster = crate::fixtures::cluster(3);
    cluster.spec.image_pull_secrets = vec![LocalObjectReference {
        name: "regcred".into(),
    }];
    let shard_pods = role_selector(&cluster, Role::Shard);
    let shards = &mut cluster.spec.shards.pod;
    shards.node_selector = BTreeMap::from([("pool".into(), "memory".into())]);
    shards.tolerations = vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("rulake".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }];
    shards.priority_class_name = Some("rulake-shards".into());
    shards.service_account_name = Some("lake-reader".into());
    shards.pod_annotations = BTreeMap::from([
        ("example.com/team".into(), "search".into()),
        // The operator's own annotation wins.
        ("rulake.io/config-checksum".into(), "mine".into()),
    ]);
    shards.topology_spread_constraints = vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(shard_pods),
        ..TopologySpreadConstraint::default()
    }];
    cluster.spec.coordinators.pod.service_account_name = Some("api".into());

    for (role, template) in pods(&cluster) {
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_ne!(annotations["rulake.io/config-checksum"], "mine", "{role:?}");
        let spec = template.spec.unwrap();
        assert_eq!(
            spec.image_pull_secrets.unwrap()[0].name,
            "regcred",
            "{role:?}"
        );
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "{role:?}"
        );
        match role {
            Role::Shard => {
                assert_eq!(annotations["example.com/team"], "search");
                assert_eq!(spec.node_selector.unwrap()["pool"], "memory");
                assert_eq!(
                    spec.tolerations.unwrap()[0].key.as_deref(),
                    Some("dedicated")
                );
                assert_eq!(spec.priority_class_name.as_deref(), Some("rulake-shards"));
                assert_eq!(spec.service_account_name.as_deref(), Some("lake-reader"));
                let spread = &spec.topology_spread_constraints.unwrap()[0];
                assert_eq!(spread.topology_key, "topology.kubernetes.io/zone");
                assert_eq!(spec.affinity, None, "no default affinity for shards");
            }
            Role::Coordinator => {
                assert_eq!(spec.service_account_name.as_deref(), Some("api"));
                assert_eq!(spec.node_selector, None);
                assert_eq!(spec.tolerations, None);
                assert_eq!(spec.topology_spread_constraints, None);
            }
            Role::Meta => {
                assert!(!annotations.contains_key("example.com/team"));
                assert_eq!(spec.service_account_name, None);
                assert_eq!(spec.priority_class_name, None);
            }
        }
    }
}

/// Meta members prefer distinct nodes unless the user gives an affinity,
/// which then replaces the default.
#[test]
fn meta_members_spread_over_nodes_by_default() {
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity};
    let mut cluster = crate::fixtures::cluster(3);
    let meta_affinity = |c: &RuLakeCluster| {
        meta_statefulset(c)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .affinity
            .unwrap()
    };
    let default = meta_affinity(&cluster);
    let anti = default.pod_anti_affinity.unwrap();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none(),
        "preferred only, so a small cluster still schedules"
    );
    let term = &anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap()[0];
    assert_eq!(
        term.pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let meta_labels = selector_labels(&cluster, Role::Meta);
    let selector = term.pod_affinity_term.label_selector.as_ref().unwrap();
    assert!(selects(selector, &meta_labels));
    assert!(!selects(selector, &selector_labels(&cluster, Role::Shard)));

    let mine = Affinity {
        node_affinity: Some(NodeAffinity::default()),
        ..Affinity::default()
    };
    cluster.spec.meta.pod.affinity = Some(mine.clone());
    assert_eq!(
        meta_affinity(&cluster),
        mine,
        "the user's affinity replaces the default"
    );
}

/// Coordinators pause before SIGTERM; shards drain on SIGTERM itself, with
/// no hook; meta members neither. Every role's stop fits the grace period.
#[test]
fn coordinators_pause_and_shards_drain_before_stopping() {
    for (role, t) in pods(&crate::fixtures::cluster(3)) {
        let spec = t.spec.unwrap();
        let c = &spec.containers[0];
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        let grace = spec.termination_grace_period_seconds.unwrap();
        let args = c.args.clone().unwrap_or_default();
        match role {
            Role::Coordinator => {
                let command = pre_stop.unwrap().exec.as_ref().unwrap().command.clone();
                assert_eq!(
                    command.unwrap(),
                    ["sleep".to_string(), PRE_STOP_SECONDS.to_string()]
                );
                assert!(grace >= PRE_STOP_SECONDS + 10 + 10, "{role:?}: {grace}");
            }
            Role::Shard => {
                assert!(pre_stop.is_none(), "a shard drains on SIGTERM");
                let drain = flag(&args, "--drain-ms").unwrap();
                assert_eq!(drain, (SHARD_DRAIN_SECONDS * 1000).to_string());
                assert!(grace >= SHARD_DRAIN_SECONDS + 10 + 10, "{role:?}: {grace}");
            }
            Role::Meta => {
                assert!(pre_stop.is_none());
                let script = c.command.clone().unwrap().join(" ");
                let want = format!("--shard-grace-ms {}", SHARD_GRACE_SECONDS * 1000);
                assert!(script.contains(&want), "{script}");
            }
        }
    }
}

#[test]
fn a_roll_goes_meta_then_shards_then_coordinators_highest_ordinal_first() {
    let cluster = crate::fixtures::cluster(3);
    let order = rollout_order(&cluster, 2);
    let meta = cluster.spec.meta.replicas;
    let mut want: Vec<RolloutStep> = (0..meta).rev().map(|i| (Role::Meta, i)).collect();
    want.extend([(Role::Shard, 1), (Role::Shard, 0)]);
    want.extend((0..cluster.spec.coordinators.replicas).map(|i| (Role::Coordinator, i)));
    assert_eq!(order, want);
}

#[test]
fn shard_budget_follows_the_replication_factor() {
    assert_eq!(max_unavailable(Role::Shard, None), 1);
    assert_eq!(max_unavailable(Role::Shard, Some(1)), 1, "drains proceed");
    assert_eq!(max_unavailable(Role::Shard, Some(2)), 1);
    assert_eq!(max_unavailable(Role::Shard, Some(3)), 2);
    assert_eq!(max_unavailable(Role::Meta, Some(3)), 1);
    assert_eq!(max_unavailable(Role::Coordinator, Some(3)), 1);
}
