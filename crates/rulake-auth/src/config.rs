//! The auth configuration file: API keys, token settings and what callers
//! without a credential may do.
//!
//! Anonymous access is never implied: `"allow_anonymous": true` opens the
//! door, and `"anonymous"` lists the grants such callers get. Without that
//! list they may only read (`read:*`) and a warning says so; earlier
//! versions made every anonymous caller `admin:*`, which is exactly the
//! silent default an operator must not discover in production.
//!
//! The loader remembers every file it read (the configuration and the key
//! files it names) and their bytes, so [`crate::AuthLayer`] can tell when
//! any of them changed and reload.

use crate::jwt::{FileJwt, Jwt};
use crate::{AuthError, Grant, Principal};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    /// Hex SHA-256 of the key.
    sha256: String,
    grants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    api_keys: Vec<FileKey>,
    jwt: Option<FileJwt>,
    #[serde(default)]
    allow_anonymous: bool,
    /// Grants of callers without a credential (needs `allow_anonymous`).
    anonymous: Option<Vec<String>>,
}

struct ApiKey {
    name: String,
    sha256: [u8; 32],
    grants: Vec<Grant>,
}

/// Grants of anonymous callers when the file allows them but lists none.
const DEFAULT_ANONYMOUS: &str = "read:*";

/// Who may call, loaded from a JSON file:
///
/// ```json
/// {
///   "api_keys": [{"name": "ingest-job", "sha256": "<hex>", "grants": ["write:docs"]}],
///   "jwt": {"jwks_file": "/etc/rulake/jwks.json",
///           "issuer": "https://auth.example", "audience": "rulake",
///           "max_token_lifetime_secs": 3600},
///   "allow_anonymous": true,
///   "anonymous": ["read:public-*"]
/// }
/// ```
///
/// Tokens carry their grants in a `rulake` claim (a list of strings) and
/// must have `sub`, `exp`, `iss` and `aud`; `nbf` is checked when present.
/// The `jwt` section may instead name one key (`"algorithm": "HS256"` with
/// `secret_file`, or `"RS256"` with `public_key_file`, optionally with its
/// `kid`), or both.
pub struct AuthConfig {
    keys: Vec<ApiKey>,
    jwt: Option<Jwt>,
    /// `Some` when callers without a credential are let in, with these grants.
    anonymous: Option<Vec<Grant>>,
    warnings: Vec<String>,
}

pub(crate) fn grants(list: &[String]) -> Result<Vec<Grant>, AuthError> {
    list.iter().map(|g| g.parse()).collect()
}

/// Hex SHA-256 of an API key, as the key file stores it.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the files a configuration names, relative to its directory, and
/// remembers each one and the bytes it had.
pub(crate) struct Loader {
    base: PathBuf,
    /// Every file read, in order, with its bytes (`None`: unreadable).
    pub(crate) seen: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Loader {
    pub(crate) fn new(base: &Path) -> Self {
        Loader {
            base: base.to_owned(),
            seen: Vec::new(),
        }
    }

    /// The bytes of `name` (relative names resolve against the base).
    pub(crate) fn read(&mut self, name: &str) -> Result<Vec<u8>, AuthError> {
        let path = self.base.join(name);
        self.read_path(&path)
    }

    /// The bytes of `path`, as given.
    fn read_path(&mut self, path: &Path) -> Result<Vec<u8>, AuthError> {
        let r = std::fs::read(path);
        self.seen.push((path.to_owned(), r.as_ref().ok().cloned()));
        r.map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))
    }

    /// A digest of everything read: equal digests mean equal inputs.
    pub(crate) fn digest(&self) -> [u8; 32] {
        digest(self.seen.iter().map(|(p, b)| (p.as_path(), b.as_deref())))
    }
}

/// SHA-256 over paths and contents (an unreadable file hashes apart from
/// an empty one).
pub(crate) fn digest<'a>(files: impl Iterator<Item = (&'a Path, Option<&'a [u8]>)>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        match bytes {
            Some(b) => {
                h.update([1]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            None => h.update([2]),
        }
    }
    h.finalize().into()
}

fn parse_digest(name: &str, hex: &str) -> Result<[u8; 32], AuthError> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(|| AuthError::Config(format!("api key {name:?}: sha256 must be hex")))?;
    bytes
        .try_into()
        .map_err(|_| AuthError::Config(format!("api key {name:?}: sha256 must be 64 hex digits")))
}

impl AuthConfig {
    /// Load the configuration file.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        Self::load(path).1
    }

    /// The configuration file and every key file it names, as they would
    /// be read now: files the server must never serve as anything else
    /// (a source, a download). A file that does not load still lists what
    /// it named before the error.
    pub fn files(path: &Path) -> Vec<PathBuf> {
        Self::load(path)
            .0
            .seen
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// Load `path`, returning what was read (for change detection) with
    /// the result.
    pub(crate) fn load(path: &Path) -> (Loader, Result<Self, AuthError>) {
        let mut files = Loader::new(path.parent().unwrap_or(Path::new(".")));
        let r = files
            .read_path(path)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| AuthError::Config(format!("{}: not UTF-8", path.display())))
            })
            .and_then(|text| Self::parse(&text, &mut files));
        (files, r)
    }

    /// Parse a configuration; relative key files resolve against `base`.
    pub fn from_json(text: &str, base: &Path) -> Result<Self, AuthError> {
        Self::parse(text, &mut Loader::new(base))
    }

    fn parse(text: &str, files: &mut Loader) -> Result<Self, AuthError> {
        let f: File = serde_json::from_str(text).map_err(|e| AuthError::Config(e.to_string()))?;
        let mut warnings = Vec::new();
        let keys = f
            .api_keys
            .into_iter()
            .map(|k| {
                Ok(ApiKey {
                    sha256: parse_digest(&k.name, &k.sha256)?,
                    grants: grants(&k.grants)?,
                    name: k.name,
                })
            })
            .collect::<Result<Vec<_>, AuthError>>()?;
        let jwt = match f.jwt {
            None => None,
            Some(j) => Some(Jwt::load(j, files, &mut warnings)?),
        };
        let anonymous = match (f.allow_anonymous, f.anonymous) {
            (false, Some(g)) if !g.is_empty() => {
                return Err(AuthError::Config(
                    "\"anonymous\" grants need \"allow_anonymous\": true".into(),
                ))
            }
            (false, _) => None,
            (true, Some(g)) => Some(grants(&g)?),
            (true, None) => {
                warnings.push(format!(
                    "allow_anonymous is set without \"anonymous\" grants: callers without a \
                     credential get {DEFAULT_ANONYMOUS} (read every collection, change nothing); \
                     list their grants in \"anonymous\" to choose"
                ));
                Some(vec![DEFAULT_ANONYMOUS.parse()?])
            }
        };
        Ok(AuthConfig {
            keys,
            jwt,
            anonymous,
            warnings,
        })
    }

    /// What an operator should know about this configuration (anonymous
    /// access by default, key-set entries skipped); logged at load.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The grants of callers without a credential, when they are let in.
    pub fn anonymous_grants(&self) -> Option<&[Grant]> {
        self.anonymous.as_deref()
    }

    /// The caller a credential (`Bearer ...` or a bare key) names.
    pub fn authenticate(&self, credential: Option<&str>) -> Result<Principal, AuthError> {
        let Some(raw) = credential.map(str::trim).filter(|c| !c.is_empty()) else {
            return match &self.anonymous {
                Some(g) => Ok(Principal::new("anonymous", g.clone())),
                None => Err(AuthError::Missing),
            };
        };
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        if token.matches('.').count() == 2 {
            let Some(jwt) = &self.jwt else {
                return Err(AuthError::Refused("this server accepts no tokens".into()));
            };
            let claims = jwt.verify(token)?;
            let g = grants(&claims.rulake)
                .map_err(|e| AuthError::Refused(format!("token grants: {e}")))?;
            return Ok(Principal::new(&claims.sub, g));
        }
        let digest = Sha256::digest(token.as_bytes());
        for k in &self.keys {
            // Compare every byte, so timing says nothing about the prefix.
            let diff = k
                .sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                return Ok(Principal::new(&k.name, k.grants.clone()));
            }
        }
        Err(AuthError::Refused("unknown API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Perm;

    fn key_config(extra: &str) -> String {
        format!(
            r#"{{"api_keys": [{{"name": "k", "sha256": "{}", "grants": ["read:*"]}}]{extra}}}"#,
            key_digest("s3cret")
        )
    }

    #[test]
    fn keys_are_matched_by_digest_only() {
        let c = AuthConfig::from_json(&key_config(""), Path::new(".")).unwrap();
        assert_eq!(c.authenticate(Some("Bearer s3cret")).unwrap().subject, "k");
        assert!(matches!(
            c.authenticate(Some("Bearer nope")),
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(c.authenticate(None), Err(AuthError::Missing)));
        assert!(c.warnings().is_empty() && c.anonymous_grants().is_none());
        for bad in [
            r#"{"api_keys": [{"name": "k", "sha256": "zz", "grants": []}]}"#,
            r#"{"api_keys": [{"name": "k", "sha256": "abcd", "grants": []}]}"#,
            r#"{"unknown": 1}"#,
        ] {
            assert!(AuthConfig::from_json(bad, Path::new(".")).is_err(), "{bad}");
        }
    }

    #[test]
    fn anonymous_callers_read_only_unless_granted_more() {
        // allow_anonymous alone: read everything, write nothing, and a warning.
        let c = AuthConfig::from_json(r#"{"allow_anonymous": true}"#, Path::new(".")).unwrap();
        let p = c.authenticate(None).unwrap();
        assert_eq!(p.subject, "anonymous");
        assert!(p.allows(Perm::Read, "any"));
        assert!(!p.allows(Perm::Write, "any") && !p.allows(Perm::Admin, "any"));
        assert_eq!(c.warnings().len(), 1);
        assert!(c.warnings()[0].contains("read:*"), "{:?}", c.warnings());

        // Explicit grants are exactly what anonymous callers get.
        let c = AuthConfig::from_json(
            r#"{"allow_anonymous": true, "anonymous": ["write:scratch-*"]}"#,
            Path::new("."),
        )
        .unwrap();
        let p = c.authenticate(Some("")).unwrap();
        assert!(p.allows(Perm::Write, "scratch-1") && !p.allows(Perm::Read, "docs"));
        assert!(c.warnings().is_empty());

        // A credential that is sent is checked: a bad one is never anonymous.
        let c = AuthConfig::from_json(&key_config(r#", "allow_anonymous": true"#), Path::new("."))
            .unwrap();
        assert!(c.authenticate(Some("Bearer wrong")).is_err());

        // Grants without allow_anonymous are a contradiction, not a default.
        assert!(AuthConfig::from_json(r#"{"anonymous": ["read:*"]}"#, Path::new(".")).is_err());
        assert!(AuthConfig::from_json(
            r#"{"allow_anonymous": true, "anonymous": ["root:*"]}"#,
            Path::new(".")
        )
        .is_err());
        let c = AuthConfig::from_json(r#"{"anonymous": []}"#, Path::new(".")).unwrap();
        assert!(matches!(c.authenticate(None), Err(AuthError::Missing)));
    }
}
