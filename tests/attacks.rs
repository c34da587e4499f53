//! The attack suite: a real `rulake serve` with authentication and a source
//! policy, attacked the way a tenant with an ordinary key would attack a
//! multi-tenant service. Every attack must be refused with the right code,
//! read or send nothing, and leave the server healthy. docs/security.md
//! lists each row with the test that shows it.
//!
//! The principals: `admin` (`admin:*`), `reader` (`read:pub*`), `writer`
//! (`write:pub*`) and `teamb` (`admin:teamb-*`), who may create collections
//! under its own names and is the usual attacker here.

mod attacks_support;

use attacks_support::*;
use tonic::Code;

/// Sources pointing at the server's own files, or anywhere outside the
/// allowed lake, are refused before anything is opened, with a message
/// that does not say whether the path exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_outside_the_policy_are_refused_without_a_trace() {
    let t = Target::start();
    let data = t.data.display().to_string();
    let lake = t.lake.display().to_string();
    let root = t.root.display().to_string();
    let refused = [
        // Another tenant's managed files, the data directory, its parent.
        (format!("file://{data}/managed/"), Code::PermissionDenied),
        (format!("file://{data}"), Code::PermissionDenied),
        (format!("file://{root}/"), Code::PermissionDenied),
        (format!("{data}/meta/"), Code::PermissionDenied),
        // The auth config, though it sits inside the allowed lake.
        (format!("file://{lake}/auth.json"), Code::PermissionDenied),
        (format!("file://{lake}/*.json"), Code::PermissionDenied),
        // The whole lake contains the auth config: refused as a whole.
        (format!("file://{lake}/"), Code::PermissionDenied),
        // Other places on the machine.
        ("file:///etc/shadow".into(), Code::PermissionDenied),
        (
            "file:///etc/no-such-file-here".into(),
            Code::PermissionDenied,
        ),
        ("/proc/self/environ".into(), Code::PermissionDenied),
        // Spellings that would leave the lake if interpreted.
        (
            format!("file://{lake}/pub/../../data/managed/"),
            Code::InvalidArgument,
        ),
        (
            format!("file://{lake}/pub/%2e%2e/%2e%2e/data/"),
            Code::InvalidArgument,
        ),
        (format!("file://{lake}/pub/%2Fetc"), Code::InvalidArgument),
        (
            format!("file://user:pw@localhost{lake}/pub/"),
            Code::InvalidArgument,
        ),
    ];
    let mut messages = Vec::new();
    for (i, (url, want)) in refused.iter().enumerate() {
        let name = format!("teamb-steal-{i}");
        let got = t.create(TEAMB, parquet(&name, url, BTreeMap::new())).await;
        assert_eq!(got.code(), *want, "{url}: {got:?}");
        if *want == Code::PermissionDenied {
            messages.push(got.message().replace(url.as_str(), "<url>"));
        }
    }
    // The same words whether or not the path exists.
    messages.dedup();
    assert_eq!(messages.len(), 1, "refusals differ: {messages:?}");
    // An Iceberg SQL catalog is a file too.
    let sql = iceberg_sql("teamb-sql", &format!("sqlite:///{data}/meta/catalog.redb"));
    assert_eq!(t.create(TEAMB, sql).await.code(), Code::PermissionDenied);
    let sql = iceberg_sql("teamb-sql", &format!("sqlite:///{lake}/pub/c.db?mode=ro"));
    assert_eq!(t.create(TEAMB, sql).await.code(), Code::InvalidArgument);
    // None of them exists afterwards; the tenant's legitimate source works.
    assert!(t
        .names(ADMIN)
        .await
        .iter()
        .all(|n| !n.starts_with("teamb-")));
    let ok = parquet("teamb-ok", &format!("file://{lake}/pub/"), BTreeMap::new());
    assert_eq!(t.create(TEAMB, ok).await.code(), Code::Ok);
    let hits = t.search(TEAMB, "teamb-ok").await.expect("search teamb-ok");
    assert!(hits.iter().all(|id| *id < SECRET_IDS.start));
    t.assert_healthy().await;
}

/// A symlink planted under an allowed prefix leads nowhere: every object
/// a source reads is checked again through its real path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_in_the_lake_does_not_reach_the_servers_files() {
    let t = Target::start();
    let planted = t.lake.join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(t.data.join("managed"), planted.join("link")).unwrap();
    let url = format!("file://{}/", planted.display());
    let got = t
        .create(TEAMB, parquet("teamb-link", &url, BTreeMap::new()))
        .await;
    assert_eq!(got.code(), Code::Ok, "{got:?}");
    // Loading finds nothing it may read; whatever it answers, it holds no
    // vector of the other tenant.
    if let Ok(ids) = t.search(TEAMB, "teamb-link").await {
        assert!(ids.iter().all(|id| !SECRET_IDS.contains(id)), "{ids:?}");
    }
    let info = t.describe(ADMIN, "teamb-link").await;
    assert_eq!(info.vector_count, 0, "{info:?}");
    t.assert_healthy().await;
}

/// Options that choose where the server connects, as whom, or which file
/// it reads a token from are the server's alone: nothing the caller
/// names is contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_reaches_a_host_or_file_the_caller_names() {
    let t = Target::start();
    let trap = Trap::listen();
    let lake = t.lake.display().to_string();
    let at = trap.url();
    let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let auth = format!("{lake}/auth.json");
    let attempts = [
        // SSRF through an endpoint option, with and without plain HTTP.
        (
            parquet(
                "teamb-ssrf-1",
                "s3://bucket/x/",
                opts(&[("aws_endpoint", &at), ("aws_allow_http", "true")]),
            ),
            Code::InvalidArgument,
        ),
        (
            parquet("teamb-ssrf-2", "s3://bucket/x/", opts(&[("endpoint", &at)])),
            Code::InvalidArgument,
        ),
        (
            parquet("teamb-ssrf-3", &format!("{at}/x.parquet"), BTreeMap::new()),
            Code::PermissionDenied,
        ),
        (
            delta("teamb-ssrf-4", &format!("{at}/table"), opts(&[])),
            Code::PermissionDenied,
        ),
        // Credential exfiltration: a token file posted to a host of the
        // caller's choosing.
        (
            parquet(
                "teamb-exfil",
                "az://container/x/",
                opts(&[
                    ("azure_federated_token_file", &auth),
                    ("azure_authority_host", &at),
                    ("azure_client_id", "x"),
                    ("azure_tenant_id", "y"),
                ]),
            ),
            Code::InvalidArgument,
        ),
        // Credentials of the caller's own choosing, even for the lake.
        (
            parquet(
                "teamb-creds",
                &format!("file://{lake}/pub/"),
                opts(&[("aws_access_key_id", "x"), ("aws_secret_access_key", "y")]),
            ),
            Code::InvalidArgument,
        ),
    ];
    for (spec, want) in attempts {
        let name = spec.name.clone();
        let got = t.create(TEAMB, spec).await;
        assert_eq!(got.code(), want, "{name}: {got:?}");
    }
    // Harmless options pass.
    let region = parquet(
        "teamb-region",
        &format!("file://{lake}/pub/"),
        opts(&[("aws_region", "eu-west-1")]),
    );
    assert_eq!(t.create(TEAMB, region).await.code(), Code::Ok);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        trap.connections(),
        0,
        "the server connected to the caller's host"
    );
    t.assert_healthy().await;
}

/// `serve` keeps its catalog in-process: the only ports it listens on are
/// the API's and the metrics endpoint's, and there is no flag to add one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_catalog_has_no_port() {
    let t = Target::start();
    let ports = listening_ports(t.server.pid());
    let api: u16 = t.server.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(ports.contains(&api), "{ports:?}");
    assert_eq!(
        ports.len(),
        2,
        "serve listens on {ports:?}: API and metrics only"
    );
    let out = std::process::Command::new(rulake_tests::rulake_bin())
        .args(["serve", "--meta-listen", "0.0.0.0:7000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The cluster's internal ports carry the catalog and every vector: a
/// role started without mutual TLS refuses to run unless plaintext is
/// asked for by name (`rulake dev` does, on loopback).
#[test]
fn internal_ports_refuse_plaintext_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let addr = rulake_tests::process::free_addr();
    for role in [
        vec![
            "meta",
            "--id",
            "1",
            "--listen",
            &addr,
            "--peers",
            &format!("1={addr}"),
        ],
        vec!["shard", "--id", "1", "--listen", &addr, "--meta", &addr],
        vec!["coordinator", "--listen", &addr, "--meta", &addr],
    ] {
        let out = std::process::Command::new(rulake_tests::rulake_bin())
            .args(&role)
            .arg("--data-dir")
            .arg(dir.path().join(role[0]))
            .env_remove("RULAKE_CLUSTER_INSECURE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role:?} started without TLS");
        assert!(err.contains("need mutual TLS"), "{role:?}: {err}");
    }
}

/// Requests built to crash or exhaust the server are refused at once, and
/// the server (restarted on the same data, too) keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_cannot_take_the_server_down() {
    let mut t = Target::start();
    let lake = t.lake.display().to_string();
    let bomb = format!("file://{lake}/pub/{}", "*".repeat(1_000_000));
    let got = t
        .create(TEAMB, parquet("teamb-bomb", &bomb, BTreeMap::new()))
        .await;
    assert_eq!(
        got.code(),
        Code::InvalidArgument,
        "{}",
        &got.message()[..200.min(got.message().len())]
    );
    let wild = format!("file://{lake}/pub/{}x.parquet", "*a".repeat(64));
    let got = t
        .create(TEAMB, parquet("teamb-wild", &wild, BTreeMap::new()))
        .await;
    assert_eq!(got.code(), Code::InvalidArgument, "{got:?}");
    let long_name = "teamb-".to_owned() + &"x".repeat(100_000);
    let got = t
        .create(
            TEAMB,
            parquet(&long_name, &format!("file://{lake}/pub/"), BTreeMap::new()),
        )
        .await;
    assert_eq!(got.code(), Code::InvalidArgument, "{}", got.message());
    t.assert_healthy().await;
    t.restart();
    t.assert_healthy().await;
    assert!(t
        .names(ADMIN)
        .await
        .iter()
        .all(|n| n == "secret-a" || n == "pub-docs"));
}

use std::collections::BTreeMap;
