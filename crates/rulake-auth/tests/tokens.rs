//! Tokens against the checks an operator relies on: `nbf`, the maximum
//! lifetime, key selection by `kid` from a JWKS (HS256 and RS256), unknown
//! and missing `kid`, algorithm confusion, and the single-key file of
//! earlier versions still working.
//!
//! `fixtures/rsa-test-*` is a 2048-bit RSA key made for these tests only
//! (`rsa-test-n.txt` is its modulus, base64url, as a JWKS carries it).

mod common;

use common::b64url;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rulake_auth::{AuthConfig, AuthError, Perm, DEFAULT_MAX_TOKEN_LIFETIME_SECS};
use serde_json::json;
use std::path::Path;

const SECRET_A: &[u8] = b"first-secret-of-at-least-32-bytes!!";
const SECRET_B: &[u8] = b"second-secret-of-at-least-32-bytes!";

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid now for an hour, with `extra` merged over them.
fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "sub": "svc", "iss": "issuer", "aud": "rulake",
        "iat": now(), "exp": now() + 3600, "rulake": ["read:docs"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn hs256(kid: Option<&str>, secret: &[u8], claims: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn rs256(kid: Option<&str>, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(fixtures().join("rsa-test-key.pem")).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

/// A configuration whose `jwt` section is `jwt` (issuer and audience
/// added), in a directory holding the secrets, the RSA public key and
/// `jwks.json` = `jwks`.
fn config(jwt: serde_json::Value, jwks: serde_json::Value) -> (tempfile::TempDir, AuthConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.secret"), SECRET_A).unwrap();
    std::fs::copy(
        fixtures().join("rsa-test-pub.pem"),
        dir.path().join("rsa.pem"),
    )
    .unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let mut jwt = jwt;
    jwt["issuer"] = json!("issuer");
    jwt["audience"] = json!("rulake");
    let text = json!({ "jwt": jwt }).to_string();
    let c = AuthConfig::from_json(&text, dir.path()).unwrap();
    (dir, c)
}

fn try_config(jwt: serde_json::Value, jwks: serde_json::Value) -> Result<(), AuthError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let mut jwt = jwt;
    jwt["issuer"] = json!("issuer");
    jwt["audience"] = json!("rulake");
    AuthConfig::from_json(&json!({ "jwt": jwt }).to_string(), dir.path()).map(|_| ())
}

fn rsa_n() -> String {
    std::fs::read_to_string(fixtures().join("rsa-test-n.txt"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Two HS256 keys and one RS256 key, each with its kid.
fn three_keys() -> serde_json::Value {
    json!({"keys": [
        {"kty": "oct", "kid": "a", "alg": "HS256", "k": b64url(SECRET_A)},
        {"kty": "oct", "kid": "b", "k": b64url(SECRET_B)},
        {"kty": "RSA", "kid": "r", "use": "sig", "alg": "RS256", "n": rsa_n(), "e": "AQAB",
         "x5t": "ignored"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(), "e": "AQAB"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
    ]})
}

fn refusal(c: &AuthConfig, token: &str) -> String {
    match c.authenticate(Some(&format!("Bearer {token}"))) {
        Err(AuthError::Refused(m)) => m,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(p) => panic!("accepted as {}", p.subject),
    }
}

#[test]
fn not_before_in_the_future_is_refused_within_the_same_leeway_as_expiry() {
    let (_d, c) = config(
        json!({"algorithm": "HS256", "secret_file": "a.secret"}),
        json!({}),
    );
    let t = hs256(None, SECRET_A, &claims(json!({"nbf": now() + 600})));
    assert!(refusal(&c, &t).contains("nbf"), "{}", refusal(&c, &t));
    // Seconds of clock skew are tolerated, as for exp.
    let t = hs256(None, SECRET_A, &claims(json!({"nbf": now() + 2})));
    assert!(c.authenticate(Some(&t)).is_ok());
    let t = hs256(None, SECRET_A, &claims(json!({"exp": now() - 2})));
    assert!(c.authenticate(Some(&t)).is_ok());
    let t = hs256(None, SECRET_A, &claims(json!({"exp": now() - 60})));
    assert!(refusal(&c, &t).contains("expired"));
    let t = hs256(None, SECRET_A, &claims(json!({"nbf": now() - 60})));
    assert_eq!(c.authenticate(Some(&t)).unwrap().subject, "svc");
}

#[test]
fn tokens_living_longer_than_the_maximum_are_refused() {
    let (_d, c) = config(
        json!({"algorithm": "HS256", "secret_file": "a.secret", "max_token_lifetime_secs": 600}),
        json!({}),
    );
    let ok = hs256(None, SECRET_A, &claims(json!({"exp": now() + 500})));
    assert!(c.authenticate(Some(&ok)).is_ok());
    // Issued long ago, not yet expired: exp - iat is what counts.
    let old = hs256(
        None,
        SECRET_A,
        &claims(json!({"iat": now() - 3000, "exp": now() + 60})),
    );
    assert!(refusal(&c, &old).contains("maximum of 600 s"));
    // Without iat, from now.
    let long = hs256(
        None,
        SECRET_A,
        &claims(json!({"iat": null, "exp": now() + 3600})),
    );
    assert!(refusal(&c, &long).contains("maximum"));
    // An iat in the future cannot stretch the lifetime.
    let sly = hs256(
        None,
        SECRET_A,
        &claims(json!({"iat": now() + 86_000, "exp": now() + 86_400})),
    );
    assert!(refusal(&c, &sly).contains("maximum"));
    // No exp at all is refused.
    let forever = hs256(None, SECRET_A, &claims(json!({"exp": null})));
    assert!(refusal(&c, &forever).contains("exp"));

    // The default is a day.
    let (_d, c) = config(
        json!({"algorithm": "HS256", "secret_file": "a.secret"}),
        json!({}),
    );
    let week = hs256(None, SECRET_A, &claims(json!({"exp": now() + 7 * 86_400})));
    assert!(refusal(&c, &week).contains(&DEFAULT_MAX_TOKEN_LIFETIME_SECS.to_string()));
    assert!(try_config(
        json!({"algorithm": "HS256", "secret_file": "x", "max_token_lifetime_secs": 0}),
        json!({})
    )
    .is_err());
}

#[test]
fn kid_selects_the_key_and_an_unknown_kid_is_refused() {
    let (_d, c) = config(json!({"jwks_file": "jwks.json"}), three_keys());
    // The unusable entries were skipped, and said so.
    assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
    let a = hs256(Some("a"), SECRET_A, &claims(json!({"sub": "by-a"})));
    let b = hs256(Some("b"), SECRET_B, &claims(json!({"sub": "by-b"})));
    let r = rs256(
        Some("r"),
        &claims(json!({"sub": "by-r", "rulake": ["write:docs"]})),
    );
    assert_eq!(c.authenticate(Some(&a)).unwrap().subject, "by-a");
    assert_eq!(c.authenticate(Some(&b)).unwrap().subject, "by-b");
    let p = c.authenticate(Some(&r)).unwrap();
    assert_eq!(p.subject, "by-r");
    assert!(p.allows(Perm::Write, "docs"));

    // Signed with a but naming b: b's key does not verify it.
    let swapped = hs256(Some("b"), SECRET_A, &claims(json!({})));
    assert!(refusal(&c, &swapped).contains("signature"));
    for kid in ["nope", "enc", "ec", ""] {
        let t = hs256(Some(kid), SECRET_A, &claims(json!({})));
        assert!(refusal(&c, &t).contains("unknown key id"), "{kid}");
    }
    // Several keys and no kid: no key is guessed.
    let none = hs256(None, SECRET_A, &claims(json!({})));
    assert!(refusal(&c, &none).contains("several keys"));
    // Algorithm confusion: an HS256 token signed with the RSA key's public
    // modulus as secret, naming the RSA key.
    let confused = hs256(Some("r"), rsa_n().as_bytes(), &claims(json!({})));
    assert!(refusal(&c, &confused).contains("algorithm"));
}

#[test]
fn the_single_key_file_still_works_and_joins_a_key_set() {
    // The file format of earlier versions: one RS256 key, no kid.
    let (_d, c) = config(
        json!({"algorithm": "RS256", "public_key_file": "rsa.pem"}),
        json!({}),
    );
    assert!(c
        .authenticate(Some(&rs256(None, &claims(json!({})))))
        .is_ok());
    let (_d, c) = config(
        json!({"algorithm": "HS256", "secret_file": "a.secret"}),
        json!({}),
    );
    assert!(c
        .authenticate(Some(&hs256(None, SECRET_A, &claims(json!({})))))
        .is_ok());
    assert!(refusal(&c, &hs256(Some("x"), SECRET_A, &claims(json!({})))).contains("unknown"));

    // With a kid, beside a JWKS.
    let jwks = json!({"keys": [{"kty": "oct", "kid": "b", "k": b64url(SECRET_B)}]});
    let (_d, c) = config(
        json!({"algorithm": "RS256", "public_key_file": "rsa.pem", "kid": "r", "jwks_file": "jwks.json"}),
        jwks,
    );
    assert!(c
        .authenticate(Some(&rs256(Some("r"), &claims(json!({})))))
        .is_ok());
    assert!(c
        .authenticate(Some(&hs256(Some("b"), SECRET_B, &claims(json!({})))))
        .is_ok());
}

#[test]
fn key_sets_that_cannot_be_trusted_do_not_load() {
    let oct = |kid: &str, k: &[u8]| json!({"kty": "oct", "kid": kid, "k": b64url(k)});
    let bad = [
        // no key at all
        (json!({}), json!({})),
        // a key without kid
        (
            json!({"jwks_file": "jwks.json"}),
            json!({"keys": [{"kty": "oct", "k": b64url(SECRET_A)}]}),
        ),
        // two keys with one kid
        (
            json!({"jwks_file": "jwks.json"}),
            json!({"keys": [oct("a", SECRET_A), oct("a", SECRET_B)]}),
        ),
        // a short secret
        (
            json!({"jwks_file": "jwks.json"}),
            json!({"keys": [oct("a", b"short")]}),
        ),
        // a short RSA modulus
        (
            json!({"jwks_file": "jwks.json"}),
            json!({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}),
        ),
        // nothing usable left
        (
            json!({"jwks_file": "jwks.json"}),
            json!({"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"}]}),
        ),
        // not a key set
        (json!({"jwks_file": "jwks.json"}), json!([1, 2])),
        // a key file without its algorithm, or the wrong one
        (json!({"secret_file": "jwks.json"}), json!({})),
        (
            json!({"algorithm": "RS256", "secret_file": "jwks.json"}),
            json!({}),
        ),
        (json!({"algorithm": "none"}), json!({})),
        // a kid for no key
        (
            json!({"kid": "x", "jwks_file": "jwks.json"}),
            json!({"keys": [oct("a", SECRET_A)]}),
        ),
    ];
    for (jwt, jwks) in bad {
        assert!(
            try_config(jwt.clone(), jwks.clone()).is_err(),
            "{jwt} with {jwks} loaded"
        );
    }
}
