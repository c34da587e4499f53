//! The auth configuration file, credentials (API keys and JWTs) and the
//! grants inside them. The first byte chooses: a configuration file; a
//! credential as sent in `authorization`; or token claims, signed with the
//! configured secret so the fuzzer reaches what runs after the signature
//! check.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rulake_auth::AuthConfig;
use std::path::PathBuf;
use std::sync::OnceLock;

const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rulake-fuzz-auth-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("secret"), SECRET).unwrap();
        d
    })
}

fn config() -> &'static AuthConfig {
    static CONFIG: OnceLock<AuthConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = format!(
            r#"{{"api_keys": [{{"name": "k", "sha256": "{}", "grants": ["read:docs*"]}}],
                "jwt": {{"algorithm": "HS256", "secret_file": "secret",
                         "issuer": "https://auth.example", "audience": "rulake"}}}}"#,
            rulake_auth::key_digest("key")
        );
        AuthConfig::from_json(&json, dir()).expect("the fuzzing configuration is valid")
    })
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..c.len() + 1 {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(c) = AuthConfig::from_json(text, dir()) {
                    let _ = c.authenticate(Some("Bearer key"));
                }
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(p) = config().authenticate(Some(text)) {
                    let _ = p.allows(rulake_auth::Perm::Read, "docs");
                }
            }
        }
        _ => {
            let signing = format!(
                "{}.{}",
                b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
                b64url(rest)
            );
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
            let Ok(sig) = jsonwebtoken::crypto::sign(
                signing.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::HS256,
            ) else {
                return;
            };
            if let Ok(p) = config().authenticate(Some(&format!("Bearer {signing}.{sig}"))) {
                let _ = p.allows(rulake_auth::Perm::Write, "docs-1");
            }
        }
    }
});
