//! A live [`AuthLayer`] built from a file follows the file: a key added
//! while it serves is accepted, a key removed is refused, a rotated JWKS
//! (a file the configuration names, not the configuration itself) takes
//! effect, and a broken new file keeps the previous configuration.

mod common;

use rulake_auth::{key_digest, AuthLayer};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::codegen::http;
use tower::{Layer, Service, ServiceExt};

type Resp = http::Response<tonic::body::Body>;

/// The server behind the layer: answers 200 with the caller's name.
fn inner() -> impl Service<
    http::Request<()>,
    Response = Resp,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<Resp, std::convert::Infallible>>,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|req: http::Request<()>| {
        let who = req
            .extensions()
            .get::<rulake_auth::Principal>()
            .map(|p| p.subject.clone())
            .unwrap_or_default();
        std::future::ready(Ok(http::Response::builder()
            .header("x-who", who)
            .body(tonic::body::Body::empty())
            .unwrap()))
    })
}

/// The caller's name, or the gRPC status code of the refusal.
async fn call(layer: &AuthLayer, key: &str) -> Result<String, String> {
    let req = http::Request::builder()
        .uri("/rulake.v1.SearchService/Search")
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .unwrap();
    let resp = layer.layer(inner()).oneshot(req).await.unwrap();
    match resp.headers().get("x-who") {
        Some(w) => Ok(w.to_str().unwrap().to_owned()),
        None => Err(resp
            .headers()
            .get("grpc-status")
            .map(|s| s.to_str().unwrap().to_owned())
            .unwrap_or_default()),
    }
}

fn keys(list: &[(&str, &str)]) -> String {
    json!({"api_keys": list.iter().map(|(name, key)| json!({
        "name": name, "sha256": key_digest(key), "grants": ["read:*"]
    })).collect::<Vec<_>>()})
    .to_string()
}

/// Replace `path` the way Kubernetes and editors do: write aside, rename.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Wait until `call` with `key` gives `want` (the watcher runs every 50 ms).
async fn eventually(layer: &AuthLayer, key: &str, want: Result<&str, &str>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = call(layer, key).await;
        if got.as_deref().map_err(String::as_str) == want {
            return;
        }
        assert!(Instant::now() < deadline, "{key}: {got:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const UNAUTHENTICATED: &str = "16";

#[tokio::test]
async fn a_live_layer_follows_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, keys(&[("old", "old-key")])).unwrap();
    let layer = AuthLayer::from_file(&path).unwrap();
    let _watch = layer.watch(Duration::from_millis(50));
    assert_eq!(call(&layer, "old-key").await, Ok("old".into()));
    assert_eq!(call(&layer, "new-key").await, Err(UNAUTHENTICATED.into()));

    // Rotation: the new key is added and the old one removed in one write.
    replace(&path, &keys(&[("new", "new-key")]));
    eventually(&layer, "new-key", Ok("new")).await;
    assert_eq!(call(&layer, "old-key").await, Err(UNAUTHENTICATED.into()));

    // A broken file (half-written, bad JSON, unknown field) keeps the last
    // good configuration.
    for broken in [r#"{"api_keys": ["#, r#"{"api_kyes": []}"#] {
        replace(&path, broken);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(call(&layer, "new-key").await, Ok("new".into()));
    }
    // ... until it is fixed.
    replace(&path, &keys(&[("third", "third-key")]));
    eventually(&layer, "third-key", Ok("third")).await;
    assert_eq!(call(&layer, "new-key").await, Err(UNAUTHENTICATED.into()));

    // The same bytes written again are no change.
    replace(&path, &keys(&[("third", "third-key")]));
    assert!(!layer.reload_if_changed().unwrap());
}

#[test]
fn a_rotated_key_set_is_picked_up_without_touching_the_configuration() {
    let secret = |i: u8| -> Vec<u8> { vec![b'a' + i; 40] };
    let jwks = |kids: &[(&str, u8)]| {
        json!({"keys": kids.iter().map(|(kid, i)| json!({
            "kty": "oct", "kid": kid, "k": common::b64url(&secret(*i))
        })).collect::<Vec<_>>()})
        .to_string()
    };
    let token = |kid: &str, i: u8| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.into());
        let claims = json!({"sub": kid, "iss": "i", "aud": "rulake", "exp": now + 60});
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret(i)),
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(
        &path,
        json!({"jwt": {"jwks_file": "jwks.json", "issuer": "i", "audience": "rulake"}}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks(&[("k1", 1)])).unwrap();
    let layer = AuthLayer::from_file(&path).unwrap();
    let ok = |t: &str| layer.current().authenticate(Some(t)).is_ok();
    assert!(ok(&token("k1", 1)) && !ok(&token("k2", 2)));
    assert!(!layer.reload_if_changed().unwrap());

    replace(
        &dir.path().join("jwks.json"),
        &jwks(&[("k1", 1), ("k2", 2)]),
    );
    assert!(layer.reload_if_changed().unwrap());
    assert!(ok(&token("k1", 1)) && ok(&token("k2", 2)));

    replace(&dir.path().join("jwks.json"), &jwks(&[("k2", 2)]));
    assert!(layer.reload_if_changed().unwrap());
    assert!(!ok(&token("k1", 1)) && ok(&token("k2", 2)));

    // A key set that vanishes is an error, and k2 keeps working.
    std::fs::remove_file(dir.path().join("jwks.json")).unwrap();
    assert!(layer.reload_if_changed().is_err());
    assert!(ok(&token("k2", 2)));
    // Reported once, not on every check.
    assert!(!layer.reload_if_changed().unwrap());
}

#[test]
fn the_files_a_configuration_reads_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(dir.path().join("s"), [b'x'; 40]).unwrap();
    std::fs::write(
        &path,
        json!({"jwt": {"algorithm": "HS256", "secret_file": "s", "jwks_file": "k.json",
                       "issuer": "i", "audience": "a"}})
        .to_string(),
    )
    .unwrap();
    // k.json does not exist: the configuration fails, the list does not.
    let files = rulake_auth::AuthConfig::files(&path);
    assert_eq!(
        files,
        vec![
            path.clone(),
            dir.path().join("s"),
            dir.path().join("k.json")
        ]
    );
}
