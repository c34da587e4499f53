//! The bodies of RuLake's fuzz targets, one function per target in
//! `fuzz_targets/`. They live here, not in the targets, so that two
//! harnesses run the same code: cargo-fuzz's coverage-guided libFuzzer
//! (`ci/fuzz.sh`, a separately instrumented build) and the workspace's
//! `fuzz_replay` test, which feeds every committed seed and a fixed set of
//! mutations of them through the ordinary test build. Every function must
//! answer any input without a panic.
//!
//! The workspace test compiles this file as a module of its own crate, so
//! it names only crates both builds depend on.

use prost::Message;
use rulake_proto::v1 as pb;

/// A target: its name (the directory of its seeds) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("api_request", api_request),
    ("auth", auth),
    ("delta_dv", delta_dv),
    ("index_persist", index_persist),
    ("ingest_records", ingest_records),
    ("source_url", source_url),
];

/// Public API requests: arbitrary bytes decoded as the server's protobuf
/// messages, then the conversions and checks a handler runs before any
/// work. The first byte chooses the message.
pub fn api_request(data: &[u8]) {
    use rulake_api::fuzz;
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            if let Ok(m) = pb::CreateCollectionRequest::decode(bytes) {
                if let Some(spec) = m.spec {
                    let _ = fuzz::create_collection(spec);
                }
            }
        }
        1 => {
            if let Ok(m) = pb::SearchRequest::decode(bytes) {
                let _ = fuzz::search(m);
            }
        }
        2 => {
            if let Ok(m) = pb::BatchSearchRequest::decode(bytes) {
                for q in m.queries {
                    let _ = fuzz::search(pb::SearchRequest {
                        collection: m.collection.clone(),
                        query: Some(q),
                        params: m.params.clone(),
                    });
                }
            }
        }
        3 => {
            if let Ok(m) = pb::IngestRequest::decode(bytes) {
                if let Some(pb::ingest_request::Message::Batch(b)) = m.message {
                    let ids = b.records.into_iter().filter_map(|r| r.id).collect();
                    let _ = fuzz::ids(ids);
                }
            }
        }
        _ => {
            if let Ok(m) = pb::DeleteRequest::decode(bytes) {
                let _ = fuzz::ids(m.ids);
            }
        }
    }
}

/// The auth configuration file, credentials (API keys and JWTs) and the
/// grants inside them. The first byte chooses: a configuration file; a
/// credential as sent in `authorization`; or token claims, signed with the
/// configured secret so the input reaches what runs after the signature
/// check.
pub fn auth(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(c) = rulake_auth::AuthConfig::from_json(text, auth_fixture::dir()) {
                    let _ = c.authenticate(Some("Bearer key"));
                }
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(p) = auth_fixture::config().authenticate(Some(text)) {
                    let _ = p.allows(rulake_auth::Perm::Read, "docs");
                }
            }
        }
        _ => {
            let signing = format!(
                "{}.{}",
                auth_fixture::b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
                auth_fixture::b64url(rest)
            );
            let key = jsonwebtoken::EncodingKey::from_secret(auth_fixture::SECRET);
            let Ok(sig) = jsonwebtoken::crypto::sign(
                signing.as_bytes(),
                &key,
                jsonwebtoken::Algorithm::HS256,
            ) else {
                return;
            };
            let token = format!("Bearer {signing}.{sig}");
            if let Ok(p) = auth_fixture::config().authenticate(Some(&token)) {
                let _ = p.allows(rulake_auth::Perm::Write, "docs-1");
            }
        }
    }
}

/// The configuration the `auth` target authenticates against: one API key
/// and an HS256 issuer whose secret sits in a temporary directory.
mod auth_fixture {
    use rulake_auth::AuthConfig;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    pub const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";

    pub fn dir() -> &'static PathBuf {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let d = std::env::temp_dir().join(format!("rulake-fuzz-auth-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("secret"), SECRET).unwrap();
            d
        })
    }

    pub fn config() -> &'static AuthConfig {
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

    /// Unpadded base64url, as a JWT's segments are written.
    pub fn b64url(data: &[u8]) -> String {
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
}

/// Delta deletion vectors: Z85, the stored-vector framing and checksum,
/// and the Roaring bitmaps inside (`rulake-lake`'s `dv` module).
pub fn delta_dv(data: &[u8]) {
    rulake_lake::fuzz::delta_dv(data)
}

/// Persisted partition files (the disk cache a shard reloads on restart).
/// The first byte chooses: even, the input as is (mostly refused by the
/// framing and checksum); odd, the rest with a valid checksum appended, so
/// the input also reaches the checks that run after the checksum.
pub fn index_persist(data: &[u8]) {
    use rulake_index::PartitionIndex;
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = PartitionIndex::read_from(body, body.len() as u64);
    } else {
        let mut file = body.to_vec();
        file.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        let _ = PartitionIndex::read_from(&file[..], file.len() as u64);
    }
}

/// `rulake ingest`'s JSON Lines and CSV record parsers; the first byte
/// chooses the format, and for CSV whether the first line is a header
/// naming typed payload columns.
pub fn ingest_records(data: &[u8]) {
    use rulake_client::records::{csv_record, json_record, CsvLayout};
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let declared: Vec<rulake_types::Declared> = [
        "b:bool",
        "i:int",
        "f:float",
        "s:string",
        "t:timestamp",
        "d:date",
        "l:list<string>",
    ]
    .iter()
    .map(|d| rulake_types::declared(d))
    .collect();
    let mut lines = text.lines().enumerate();
    let layout = if kind % 4 == 3 {
        match lines
            .next()
            .map(|(_, h)| CsvLayout::from_header(h, "id", &declared))
        {
            Some(Ok(l)) => l,
            _ => return,
        }
    } else {
        CsvLayout::plain()
    };
    for (i, line) in lines {
        if kind % 2 == 0 {
            let _ = json_record(line, i + 1);
        } else {
            let _ = csv_record(line, i + 1, &layout);
        }
    }
}

/// Source URLs and Parquet globs as a caller sends them: the source
/// policy's admission (prefixes, fences, dot segments, encodings) and the
/// glob matcher (`rulake-lake`'s `policy` and `parquet::glob`).
pub fn source_url(data: &[u8]) {
    rulake_lake::fuzz::source_url(data)
}
