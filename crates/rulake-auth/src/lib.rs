//! Who is calling, and what they may do to which collection.
//!
//! A vector tier holds a company's embeddings, so no call reaches a
//! collection without a credential that grants it. Credentials are API keys
//! (the server stores only their SHA-256) or JWTs (HS256 or RS256, with
//! expiry, issuer and audience checked). Both carry *grants*:
//! `read:<pattern>`, `write:<pattern>` or `admin:<pattern>`, where the
//! pattern is a collection name with `*` wildcards. `write` includes `read`,
//! `admin` includes both; cluster-wide admin calls need `admin:*`.
//!
//! [`AuthLayer`] runs in front of every public RPC: a missing or bad
//! credential is `UNAUTHENTICATED` before any handler runs; a good one puts
//! its [`Principal`] in the request's extensions, and each handler checks
//! the permission it needs with [`authorize`], which answers
//! `PERMISSION_DENIED` with the same message whether or not the collection
//! exists. The health and reflection services stay open for probes.
//!
//! # Layout
//! - [`AuthConfig`], [`Principal`], [`Grant`], [`Perm`] (this file).
//! - [`AuthLayer`] — the tower layer.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use tonic::Status;

/// A permission on a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Perm {
    /// Search and describe.
    Read,
    /// Ingest, delete, refresh (and read).
    Write,
    /// Create, alter, drop, aliases (and write); on `*`, cluster admin.
    Admin,
}

impl Perm {
    fn name(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Write => "write",
            Perm::Admin => "admin",
        }
    }
}

/// One grant: a permission on the collections a pattern matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    perm: Perm,
    pattern: String,
}

impl std::str::FromStr for Grant {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let (perm, pattern) = s.split_once(':').ok_or_else(|| {
            AuthError::Config(format!("grant {s:?}: use read:, write: or admin:<pattern>"))
        })?;
        let perm = match perm {
            "read" => Perm::Read,
            "write" => Perm::Write,
            "admin" => Perm::Admin,
            other => {
                return Err(AuthError::Config(format!(
                    "grant {s:?}: unknown permission {other:?} (read, write or admin)"
                )))
            }
        };
        if pattern.is_empty() {
            return Err(AuthError::Config(format!("grant {s:?}: empty pattern")));
        }
        Ok(Grant {
            perm,
            pattern: pattern.to_owned(),
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Key name or token subject, for logs.
    pub subject: String,
    grants: Vec<Grant>,
}

impl Principal {
    /// A caller with `grants`.
    pub fn new(subject: &str, grants: Vec<Grant>) -> Self {
        Principal {
            subject: subject.to_owned(),
            grants,
        }
    }

    /// The anonymous caller of a server that allows anonymous access:
    /// everything is permitted.
    pub fn anonymous() -> Self {
        Principal::new(
            "anonymous",
            vec![Grant {
                perm: Perm::Admin,
                pattern: "*".into(),
            }],
        )
    }

    /// Whether the caller holds `perm` (or a stronger one) on `collection`.
    pub fn allows(&self, perm: Perm, collection: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.perm >= perm && wildcard(&g.pattern, collection))
    }
}

/// Check a permission for the call in `extensions`. Without a principal
/// (the server runs without authentication) everything is allowed. The
/// denial reads the same whether or not the collection exists.
pub fn authorize(
    extensions: &tonic::Extensions,
    perm: Perm,
    collection: &str,
) -> Result<(), Status> {
    match extensions.get::<Principal>() {
        None => Ok(()),
        Some(p) if p.allows(perm, collection) => Ok(()),
        Some(p) => Err(Status::permission_denied(format!(
            "{} may not {} collection {collection:?}",
            p.subject,
            perm.name()
        ))),
    }
}

/// Why a credential or the configuration is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential was sent.
    #[error("no credential: send `authorization: Bearer <api key or token>`")]
    Missing,
    /// The credential is wrong, expired or not for this server.
    #[error("credential refused: {0}")]
    Refused(String),
    /// The configuration file is wrong.
    #[error("auth configuration: {0}")]
    Config(String),
}

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
struct FileJwt {
    /// `HS256` or `RS256`.
    algorithm: String,
    /// HS256: file holding the shared secret.
    secret_file: Option<String>,
    /// RS256: PEM file of the issuer's public key.
    public_key_file: Option<String>,
    issuer: String,
    audience: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    api_keys: Vec<FileKey>,
    jwt: Option<FileJwt>,
    #[serde(default)]
    allow_anonymous: bool,
}

struct ApiKey {
    name: String,
    sha256: [u8; 32],
    grants: Vec<Grant>,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// Claims RuLake reads from a token.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Grants, as in the key file (`read:docs*`, ...).
    #[serde(default)]
    rulake: Vec<String>,
}

/// Who may call, loaded from a JSON file:
///
/// ```json
/// {
///   "api_keys": [{"name": "ingest-job", "sha256": "<hex>", "grants": ["write:docs"]}],
///   "jwt": {"algorithm": "RS256", "public_key_file": "/etc/rulake/issuer.pem",
///           "issuer": "https://auth.example", "audience": "rulake"},
///   "allow_anonymous": false
/// }
/// ```
///
/// Tokens carry their grants in a `rulake` claim (a list of strings) and
/// must have `exp`, `iss` and `aud`.
pub struct AuthConfig {
    keys: Vec<ApiKey>,
    jwt: Option<Jwt>,
    allow_anonymous: bool,
}

fn grants(list: &[String]) -> Result<Vec<Grant>, AuthError> {
    list.iter().map(|g| g.parse()).collect()
}

/// Hex SHA-256 of an API key, as the key file stores it.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuthConfig {
    /// Load the configuration file.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))?;
        Self::from_json(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parse a configuration; relative key files resolve against `base`.
    pub fn from_json(text: &str, base: &Path) -> Result<Self, AuthError> {
        let f: File = serde_json::from_str(text).map_err(|e| AuthError::Config(e.to_string()))?;
        let mut keys = Vec::new();
        for k in f.api_keys {
            let bytes: Vec<u8> = (0..k.sha256.len())
                .step_by(2)
                .map(|i| {
                    k.sha256
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<_>>()
                .filter(|b: &Vec<u8>| b.len() == 32)
                .ok_or_else(|| {
                    AuthError::Config(format!(
                        "api key {:?}: sha256 must be 64 hex digits",
                        k.name
                    ))
                })?;
            keys.push(ApiKey {
                name: k.name,
                sha256: bytes.try_into().expect("32 bytes"),
                grants: grants(&k.grants)?,
            });
        }
        let read = |p: &str| {
            let path = base.join(p);
            std::fs::read(&path).map_err(|e| AuthError::Config(format!("{}: {e}", path.display())))
        };
        let jwt = match f.jwt {
            None => None,
            Some(j) => {
                let (alg, key) = match j.algorithm.as_str() {
                    "HS256" => {
                        let file = j
                            .secret_file
                            .as_deref()
                            .ok_or_else(|| AuthError::Config("HS256 needs secret_file".into()))?;
                        let secret = read(file)?;
                        if secret.len() < 32 {
                            return Err(AuthError::Config(
                                "the HS256 secret must be at least 32 bytes".into(),
                            ));
                        }
                        (Algorithm::HS256, DecodingKey::from_secret(&secret))
                    }
                    "RS256" => {
                        let file = j.public_key_file.as_deref().ok_or_else(|| {
                            AuthError::Config("RS256 needs public_key_file".into())
                        })?;
                        let key = DecodingKey::from_rsa_pem(&read(file)?)
                            .map_err(|e| AuthError::Config(format!("{file}: {e}")))?;
                        (Algorithm::RS256, key)
                    }
                    other => {
                        return Err(AuthError::Config(format!(
                            "jwt algorithm {other:?}: HS256 or RS256"
                        )))
                    }
                };
                let mut validation = Validation::new(alg);
                validation.set_issuer(&[j.issuer]);
                validation.set_audience(&[j.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.leeway = 5;
                Some(Jwt { key, validation })
            }
        };
        Ok(AuthConfig {
            keys,
            jwt,
            allow_anonymous: f.allow_anonymous,
        })
    }

    /// The caller a credential (`Bearer ...` or a bare key) names.
    pub fn authenticate(&self, credential: Option<&str>) -> Result<Principal, AuthError> {
        let Some(raw) = credential.map(str::trim).filter(|c| !c.is_empty()) else {
            return if self.allow_anonymous {
                Ok(Principal::anonymous())
            } else {
                Err(AuthError::Missing)
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
            let data = jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation)
                .map_err(|e| AuthError::Refused(format!("token: {e}")))?;
            let g = grants(&data.claims.rulake)
                .map_err(|e| AuthError::Refused(format!("token grants: {e}")))?;
            return Ok(Principal::new(&data.claims.sub, g));
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

/// Calls that never need a credential: health checks and reflection.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// The tower layer authenticating every public call.
#[derive(Clone)]
pub struct AuthLayer {
    config: Arc<AuthConfig>,
}

impl AuthLayer {
    /// Authenticate with `config`.
    pub fn new(config: AuthConfig) -> Self {
        AuthLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    config: Arc<AuthConfig>,
}

type Http<B> = tonic::codegen::http::Request<B>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<Http<B>> for Auth<S>
where
    S: tower::Service<Http<B>, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Http<B>) -> Self::Future {
        // The ready service handles this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if exempt(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        let header = req
            .headers()
            .get("authorization")
            .or_else(|| req.headers().get("x-api-key"))
            .and_then(|v| v.to_str().ok());
        match self.config.authenticate(header) {
            Ok(p) => {
                req.extensions_mut().insert(p);
                Box::pin(inner.call(req))
            }
            Err(e) => {
                let resp = Status::unauthenticated(e.to_string()).into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_implied_permissions() {
        assert!(wildcard("*", "anything"));
        assert!(wildcard("docs*", "docs-v2"));
        assert!(wildcard("*-prod", "emb-prod"));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(!wildcard("docs*", "doc"));
        assert!(!wildcard("docs", "docs2"));
        let p = Principal::new("w", vec!["write:docs*".parse().unwrap()]);
        assert!(p.allows(Perm::Read, "docs1") && p.allows(Perm::Write, "docs1"));
        assert!(!p.allows(Perm::Admin, "docs1") && !p.allows(Perm::Read, "other"));
        assert!("delete:x".parse::<Grant>().is_err());
        assert!("read:".parse::<Grant>().is_err());
    }

    #[test]
    fn keys_are_matched_by_digest_only() {
        let json = format!(
            r#"{{"api_keys": [{{"name": "k", "sha256": "{}", "grants": ["read:*"]}}]}}"#,
            key_digest("s3cret")
        );
        let c = AuthConfig::from_json(&json, Path::new(".")).unwrap();
        assert_eq!(c.authenticate(Some("Bearer s3cret")).unwrap().subject, "k");
        assert!(matches!(
            c.authenticate(Some("Bearer nope")),
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(c.authenticate(None), Err(AuthError::Missing)));
        assert!(AuthConfig::from_json(
            r#"{"api_keys": [{"name": "k", "sha256": "zz", "grants": []}]}"#,
            Path::new(".")
        )
        .is_err());
        assert!(AuthConfig::from_json(r#"{"unknown": 1}"#, Path::new(".")).is_err());
    }
}
