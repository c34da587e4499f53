//! The `rulake` client commands against a live `rulake serve --auth-config`:
//! without a credential every command is `UNAUTHENTICATED`; `--api-key`,
//! `RULAKE_API_KEY` and `--token-file` authenticate collections, ingest,
//! search and stats; grants still apply; a key rotated in the auth file
//! while the server runs is accepted (and the old one refused) without a
//! restart; and `allow_anonymous` without explicit grants is read-only,
//! with a warning in the server's log.

use rulake_tests as support;

use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "an-hs256-secret-for-the-cli-test-0123456789";

/// Run the CLI against `addr` with `env` set (and no ambient credential).
fn rulake(addr: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    support::cli(Some(addr), env, args)
}

fn ok(addr: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let (success, text) = rulake(addr, env, args);
    assert!(success, "rulake {args:?} failed:\n{text}");
    text
}

/// The command fails, and its message names `code` (as the CLI prints a
/// status: `Unauthenticated: ...`, `PermissionDenied: ...`).
fn refused(addr: &str, env: &[(&str, &str)], args: &[&str], code: &str) -> String {
    let (success, text) = rulake(addr, env, args);
    assert!(!success, "rulake {args:?} succeeded:\n{text}");
    assert!(
        text.contains(code),
        "rulake {args:?}: wanted {code}:\n{text}"
    );
    text
}

fn auth_file(keys: &[(&str, &str, &str)], extra: serde_json::Value) -> String {
    let mut c = serde_json::json!({
        "api_keys": keys.iter().map(|(name, key, grant)| serde_json::json!({
            "name": name, "sha256": rulake_auth::key_digest(key), "grants": [grant]
        })).collect::<Vec<_>>(),
        "jwt": {"algorithm": "HS256", "secret_file": "jwt.secret",
                "issuer": "test", "audience": "rulake", "max_token_lifetime_secs": 3600},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn token(grants: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": "cli-user", "iss": "test", "aud": "rulake",
        "iat": now, "exp": now + 600, "rulake": grants,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Retry `args` until it succeeds (the server re-reads its auth file every
/// few seconds).
fn eventually_ok(addr: &str, env: &[(&str, &str)], args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (success, text) = rulake(addr, env, args);
        if success {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rulake {args:?} never succeeded:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_cli_authenticates_and_keys_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.json");
    std::fs::write(dir.path().join("jwt.secret"), SECRET).unwrap();
    let keys = [
        ("ops", "admin-key-1", "admin:*"),
        ("reader", "reader-key-1", "read:*"),
    ];
    std::fs::write(&auth, auth_file(&keys, serde_json::json!({}))).unwrap();
    let data = dir.path().join("data");
    let server =
        support::Served::start_with(&data, &["--auth-config".into(), auth.display().to_string()]);
    let addr = &server.addr;
    let admin = ["--api-key", "admin-key-1"];
    let with = |cred: &[&'static str], args: &[&'static str]| -> Vec<&'static str> {
        args.iter().chain(cred).copied().collect()
    };

    // No credential: every kind of command is refused before it runs.
    for args in [
        &["collections", "list"][..],
        &["collections", "create", "docs", "--dim", "4"],
        &["stats"],
        &["search", "--collection", "docs", "--vector", "1,2,3,4"],
    ] {
        refused(addr, &[], args, "Unauthenticated");
    }
    refused(
        addr,
        &[],
        &with(&["--api-key", "wrong"], &["collections", "list"]),
        "Unauthenticated",
    );

    // --api-key on the command line, RULAKE_API_KEY from the environment.
    ok(
        addr,
        &[],
        &with(&admin, &["collections", "create", "docs", "--dim", "4"]),
    );
    let jsonl: String = (0..20)
        .map(|i| format!("{{\"id\": {i}, \"vector\": [{i}, 1, 2, 3]}}\n"))
        .collect();
    let file = dir.path().join("v.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    let file = file.to_str().unwrap();
    let text = ok(
        addr,
        &[("RULAKE_API_KEY", "admin-key-1")],
        &["ingest", file, "--collection", "docs"],
    );
    assert!(text.contains("ingested 20 records"), "{text}");
    let text = ok(
        addr,
        &[("RULAKE_API_KEY", "reader-key-1")],
        &[
            "search",
            "--collection",
            "docs",
            "--vector",
            "5,1,2,3",
            "-k",
            "1",
        ],
    );
    assert!(text.contains("   1  5 "), "{text}");
    ok(addr, &[], &with(&admin, &["stats"]));
    // Grants still apply to an authenticated caller.
    refused(
        addr,
        &[("RULAKE_API_KEY", "reader-key-1")],
        &["collections", "drop", "docs"],
        "PermissionDenied",
    );

    // --token-file: a JWT, read for every command.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token(&["read:docs"])).unwrap();
    let tf = token_file.to_str().unwrap();
    ok(
        addr,
        &[],
        &["collections", "describe", "docs", "--token-file", tf],
    );
    refused(
        addr,
        &[],
        &["ingest", file, "--collection", "docs", "--token-file", tf],
        "PermissionDenied",
    );
    std::fs::write(&token_file, token(&["write:docs"])).unwrap();
    let more = dir.path().join("more.jsonl");
    std::fs::write(&more, "{\"id\": 100, \"vector\": [9, 9, 9, 9]}\n").unwrap();
    let text = ok(
        addr,
        &[],
        &[
            "ingest",
            more.to_str().unwrap(),
            "--collection",
            "docs",
            "--token-file",
            tf,
        ],
    );
    assert!(text.contains("ingested 1 records"), "{text}");
    std::fs::write(&token_file, "not.a.token").unwrap();
    refused(
        addr,
        &[],
        &["collections", "list", "--token-file", tf],
        "Unauthenticated",
    );

    // Rotation while serving: admin-key-2 replaces admin-key-1.
    let rotated = [
        ("ops", "admin-key-2", "admin:*"),
        ("reader", "reader-key-1", "read:*"),
    ];
    replace(&auth, &auth_file(&rotated, serde_json::json!({})));
    eventually_ok(
        addr,
        &[],
        &["collections", "list", "--api-key", "admin-key-2"],
    );
    refused(
        addr,
        &[],
        &with(&admin, &["collections", "list"]),
        "Unauthenticated",
    );
    // A broken file keeps the rotated keys in force.
    replace(&auth, "{\"api_keys\": [");
    std::thread::sleep(Duration::from_secs(5));
    ok(
        addr,
        &[],
        &["collections", "list", "--api-key", "admin-key-2"],
    );

    // allow_anonymous without grants: read-only, and the log says so.
    replace(
        &auth,
        &auth_file(&rotated, serde_json::json!({"allow_anonymous": true})),
    );
    eventually_ok(addr, &[], &["collections", "list"]);
    ok(
        addr,
        &[],
        &[
            "search",
            "--collection",
            "docs",
            "--vector",
            "1,1,2,3",
            "-k",
            "1",
        ],
    );
    let text = refused(
        addr,
        &[],
        &["collections", "create", "anon", "--dim", "4"],
        "PermissionDenied",
    );
    assert!(text.contains("anonymous"), "{text}");
    refused(
        addr,
        &[],
        &["ingest", file, "--collection", "docs"],
        "PermissionDenied",
    );
    // A wrong key is not downgraded to anonymous.
    refused(
        addr,
        &[],
        &["collections", "list", "--api-key", "admin-key-1"],
        "Unauthenticated",
    );
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(
        log.contains("allow_anonymous is set without") && log.contains("read:*"),
        "no warning in the server log:\n{log}"
    );
    assert!(
        log.contains("does not load"),
        "the broken file was not reported:\n{log}"
    );
}
