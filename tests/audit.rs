//! The audit log of a live `rulake serve --audit-log`, driven through the
//! command line as an operator would: every change is one line naming who,
//! what, on what and how it ended; refusals and callers without a valid
//! credential are there too; reads are not (unless asked for); the chain
//! verifies with `rulake audit verify`, runs on across a restart, and an
//! edited line is found.

use rulake_tests as support;

use std::path::Path;
use std::time::Duration;

/// Run the CLI with `args` against `addr` (`None`: no server involved).
fn rulake(addr: Option<&str>, args: &[&str]) -> (bool, String) {
    support::cli(addr, &[], args)
}

fn as_key(key: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--api-key".to_owned(), key.to_owned()]);
    v
}

fn run(addr: &str, key: Option<&str>, args: &[&str]) -> bool {
    let args = match key {
        Some(k) => as_key(k, args),
        None => args.iter().map(|s| s.to_string()).collect(),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rulake(Some(addr), &args).0
}

fn serve(data: &Path, auth: &Path, log: &Path) -> support::Served {
    support::Served::start_with(
        data,
        &[
            "--auth-config".into(),
            auth.display().to_string(),
            "--audit-log".into(),
            log.display().to_string(),
        ],
    )
}

/// Every line of the log as (principal, action, resource, outcome), after
/// checking the fields every line must have.
fn lines(log: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(log).expect("the audit log exists");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            assert!(s("time").ends_with('Z') && s("time").len() == 24, "{l}");
            assert_eq!(s("prev").len(), 64, "{l}");
            assert!(v["seq"].is_u64(), "{l}");
            (s("principal"), s("action"), s("resource"), s("outcome"))
        })
        .collect()
}

#[test]
fn changes_and_refusals_are_audited_in_a_chain_that_finds_an_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let auth = tmp.path().join("auth.json");
    let log = tmp.path().join("audit").join("audit.log");
    let keys = serde_json::json!({
        "api_keys": [
            {"name": "ops", "sha256": rulake_auth::key_digest("ops-key"), "grants": ["admin:*"]},
            {"name": "reader", "sha256": rulake_auth::key_digest("reader-key"), "grants": ["read:*"]},
        ]
    });
    std::fs::write(&auth, keys.to_string()).unwrap();
    let mut server = serve(&data, &auth, &log);
    let addr = server.addr.clone();
    let ops = Some("ops-key");
    let reader = Some("reader-key");

    assert!(run(
        &addr,
        ops,
        &["collections", "create", "docs", "--dim", "4"]
    ));
    assert!(run(&addr, ops, &["alias", "create", "live", "docs"]));
    assert!(run(&addr, reader, &["collections", "describe", "docs"]));
    assert!(run(&addr, reader, &["collections", "list"]));
    assert!(!run(&addr, reader, &["collections", "drop", "docs"]));
    assert!(!run(&addr, None, &["collections", "list"]));
    assert!(!run(&addr, Some("stolen"), &["alias", "delete", "live"]));
    assert!(run(&addr, ops, &["alias", "delete", "live"]));
    server.stop(Duration::from_secs(20));

    let got = lines(&log);
    let want = [
        ("ops", "CreateCollection", "docs", "OK"),
        // An alias call names the alias and the collection it points at.
        ("ops", "CreateAlias", "live,docs", "OK"),
        ("reader", "DropCollection", "docs", "PERMISSION_DENIED"),
        ("unauthenticated", "ListCollections", "", "UNAUTHENTICATED"),
        ("unauthenticated", "DeleteAlias", "", "UNAUTHENTICATED"),
        ("ops", "DeleteAlias", "live", "OK"),
    ];
    let got_ref: Vec<(&str, &str, &str, &str)> = got
        .iter()
        .map(|(p, a, r, o)| (p.as_str(), a.as_str(), r.as_str(), o.as_str()))
        .collect();
    assert_eq!(got_ref, want, "reads are not audited unless asked for");

    let file = log.display().to_string();
    let (ok, text) = rulake(None, &["audit", "verify", &file]);
    assert!(ok, "an untouched log verifies:\n{text}");
    assert!(text.contains("6 lines"), "{text}");

    // A restart goes on with the same chain.
    let mut server = serve(&data, &auth, &log);
    assert!(run(&server.addr, ops, &["collections", "drop", "docs"]));
    server.stop(Duration::from_secs(20));
    let (ok, text) = rulake(None, &["audit", "verify", &file]);
    assert!(ok && text.contains("7 lines"), "across a restart:\n{text}");

    // Someone rewrites who dropped the collection.
    let edited = std::fs::read_to_string(&log).unwrap().replacen(
        "\"principal\":\"reader\"",
        "\"principal\":\"ops\"",
        1,
    );
    std::fs::write(&log, edited).unwrap();
    let (ok, text) = rulake(None, &["audit", "verify", &file]);
    assert!(!ok, "an edited log does not verify:\n{text}");
    assert!(
        text.contains(":4:") && text.contains("broken"),
        "names the line after the edit:\n{text}"
    );
}
