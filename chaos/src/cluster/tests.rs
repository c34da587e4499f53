use super::docker::{create_args, expand, Site};
use super::*;

fn quickstart() -> Manifest {
    let text = include_str!("../../../docs/examples/quickstart.yaml");
    let mut m = Manifest::parse(text).expect("the quickstart parses");
    m.issue_certificates(Timestamp::now())
        .expect("certificates");
    m
}

#[test]
fn variables_expand_as_kubernetes_expands_them() {
    let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
    assert_eq!(expand("x$(A)y", &env), "x1y");
    assert_eq!(expand("$(B)", &env), "$(B)", "unknown names stay");
    assert_eq!(expand("$$(A) $$((1+2)) $A", &env), "$(A) $((1+2)) $A");
}

#[test]
fn secret_data_decodes_from_base64() {
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
    assert_eq!(base64_decode("YQ==\n").unwrap(), b"a");
    assert!(base64_decode("a*b").is_err());
}

#[test]
fn the_quickstart_makes_every_pod_with_its_dns_names() {
    let m = quickstart();
    let pods = pods(&m.cluster, None).unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "quickstart-meta-0",
            "quickstart-meta-1",
            "quickstart-meta-2",
            "quickstart-shard-0",
            "quickstart-shard-1",
            "quickstart-coordinator-0"
        ]
    );
    let meta0 = &pods[0];
    assert!(meta0
        .aliases
        .contains(&"quickstart-meta-0.quickstart-meta.default.svc".to_string()));
    assert_eq!(meta0.claims, ["data"]);
    assert!(pods[5]
        .aliases
        .contains(&"quickstart.default.svc".to_string()));
    // Issued mutual TLS: the CA and the role certificates exist.
    assert!(m
        .secrets
        .contains_key(&manifests::cluster_certs_secret_name(&m.cluster)));
}

#[test]
fn a_pod_runs_with_its_security_context_env_and_secret_files() {
    let m = quickstart();
    let pod = pods(&m.cluster, None).unwrap().pop().unwrap();
    let state = tempfile_dir();
    let cm = manifests::config_map(&m.cluster);
    let config_maps =
        BTreeMap::from([(cm.metadata.name.clone().unwrap(), cm.data.clone().unwrap())]);
    let site = Site {
        cluster: "quickstart",
        network: "rulake-quickstart",
        state: &state,
        config_maps: &config_maps,
        secrets: &m.secrets,
        publish: Some(50051),
    };
    let creation = create_args(&site, &pod).unwrap();
    let args = creation.args;
    assert_eq!(
        creation.volumes,
        [
            (
                "rulake-quickstart-data-quickstart-coordinator-0".to_string(),
                65532
            ),
            (
                "rulake-quickstart-tmp-quickstart-coordinator-0".to_string(),
                65532
            )
        ]
    );
    let has = |a: &str, b: &str| args.windows(2).any(|w| w[0] == a && w[1] == b);
    assert!(args.contains(&"--read-only".to_string()), "{args:?}");
    assert!(has("--cap-drop", "ALL"), "{args:?}");
    assert!(has("--security-opt", "no-new-privileges"));
    assert!(has("--user", "65532:65532"));
    assert!(
        has("--env", "RULAKE_SOURCE_ALLOW=file:///lake/"),
        "{args:?}"
    );
    assert!(has("--env", "POD_NAME=quickstart-coordinator-0"));
    assert!(has("--publish", "127.0.0.1::50051"));
    // `$(RULAKE_META)` is expanded from the ConfigMap.
    assert!(
        !args.iter().any(|a| a.contains("$(RULAKE_META)")),
        "{args:?}"
    );
    let auth = state.join("files/quickstart-coordinator-0");
    assert!(std::fs::read_dir(&auth).unwrap().count() > 0);
    std::fs::remove_dir_all(&state).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rulake-chaos-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
