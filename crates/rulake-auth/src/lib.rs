//! Who is calling, and what they may do to which collection.
//!
//! A vector tier holds a company's embeddings, so no call reaches a
//! collection without a credential that grants it. Credentials are API keys
//! (the server stores only their SHA-256) or JWTs (HS256 or RS256, with
//! expiry, not-before, issuer, audience and a maximum lifetime checked, the
//! verifying key chosen by the token's `kid` from a JWKS file). Both carry
//! *grants*: `read:<pattern>`, `write:<pattern>` or `admin:<pattern>`, where
//! the pattern is a collection name with `*` wildcards. `write` includes
//! `read`, `admin` includes both; cluster-wide admin calls need `admin:*`.
//! Callers without a credential are refused unless the configuration allows
//! them, and then get only the grants it lists (`read:*` when it lists none):
//! an open door must never be a silent `admin:*`.
//!
//! [`AuthLayer`] runs in front of every public RPC: a missing or bad
//! credential is `UNAUTHENTICATED` before any handler runs; a good one puts
//! its [`Principal`] in the request's extensions, and each handler checks
//! the permission it needs with [`authorize`], which answers
//! `PERMISSION_DENIED` with the same message whether or not the collection
//! exists. The health and reflection services stay open for probes. A layer
//! built from a file re-reads it (and the key files it names) when they
//! change, so keys rotate without a restart; a broken new file keeps the
//! previous configuration in force.
//!
//! # Layout
//! - [`Principal`], [`Grant`], [`Perm`], [`authorize`], [`AuthError`] (this
//!   file).
//! - [`config`] — [`AuthConfig`]: the file, API keys, anonymous callers.
//! - `jwt` — token keys (one key file or a JWKS), `kid` selection, claims.
//! - [`layer`] — [`AuthLayer`]: the tower layer and its reload.

pub mod config;
mod jwt;
pub mod layer;

pub use config::{key_digest, AuthConfig};
pub use jwt::DEFAULT_MAX_TOKEN_LIFETIME_SECS;
pub use layer::{Auth, AuthLayer, RELOAD_INTERVAL};

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

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.perm.name(), self.pattern)
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
    /// Key name or token subject, for logs (`anonymous` for a caller
    /// without a credential).
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

    /// Whether the caller holds `perm` (or a stronger one) on `collection`.
    pub fn allows(&self, perm: Perm, collection: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.perm >= perm && wildcard(&g.pattern, collection))
    }

    /// The caller's grants.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
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
    /// The credential is wrong, expired, not yet valid, too long-lived, or
    /// not for this server.
    #[error("credential refused: {0}")]
    Refused(String),
    /// The configuration file (or a key file it names) is wrong.
    #[error("auth configuration: {0}")]
    Config(String),
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        match e {
            AuthError::Missing | AuthError::Refused(_) => Status::unauthenticated(e.to_string()),
            // The server's own file: nothing about it goes to a caller.
            AuthError::Config(_) => Status::internal("authentication is misconfigured"),
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
        assert_eq!(
            "write:docs*".parse::<Grant>().unwrap().to_string(),
            "write:docs*"
        );
    }

    #[test]
    fn errors_map_to_statuses_without_leaking_the_configuration() {
        let s: Status = AuthError::Refused("token expired".into()).into();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        let s: Status = AuthError::Missing.into();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        let s: Status = AuthError::Config("/etc/secret.pem: gone".into()).into();
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("secret"));
    }
}
