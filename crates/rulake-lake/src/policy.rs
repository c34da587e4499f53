//! Which sources a server may open, decided in one place.
//!
//! Why this exists: a collection's source is a URL and a few options that a
//! caller chooses, and the server opens it with its own identity: its file
//! system, its network position, its cloud credentials. Without a policy, a
//! principal allowed to create a collection reads any file the server can
//! read (another tenant's managed files, the auth config), makes the server
//! send requests to any host (an `aws_endpoint` option), or has it post a
//! token file to a host of its choosing (`azure_federated_token_file`). So:
//!
//! - **Prefixes.** A source URL must lie under a prefix the operator
//!   allowed (`--source-allow s3://lake/`), compared segment by segment
//!   after the URL is normalised; dot segments, encoded separators, user
//!   info, queries and fragments are refused outright rather than
//!   interpreted.
//! - **Fences.** The server's own files (data directory, managed files,
//!   certificates, keys, auth and policy files) are never a source, whatever
//!   the prefixes say: a source that lies inside a fence, or contains one, is
//!   refused.
//! - **Options.** A client may set only [`CLIENT_OPTIONS`] (region,
//!   requester-pays, unsigned requests). Endpoints, credentials, token files
//!   and `allow_http` come from the matching prefix's server-side options or
//!   the server's environment, never from a caller.
//!
//! Admission ([`SourcePolicy::admit`]) is lexical: it never touches the lake,
//! so a refusal says nothing about whether a path exists. What a table's
//! metadata names later (a Delta or Iceberg data file, a symlink under an
//! allowed directory) is checked again on every read by the store wrapper
//! in [`crate::fence`].
//!
//! The policy is process configuration, like the environment `object_store`
//! reads credentials from: a server role [`install`]s it once at start and
//! every source the process opens is held to it. A process that installs
//! none (`rulake query` over a local lake, a library embedding) opens what
//! it is given.

use crate::error::{LakeError, Result};
use rulake_types::SourceKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use url::Url;

/// Source options a client may set: they change how the server talks to a
/// store it may already reach, never where it connects or as whom.
pub const CLIENT_OPTIONS: &[&str] = &[
    "region",
    "aws_region",
    "aws_default_region",
    "request_payer",
    "aws_request_payer",
    "skip_signature",
    "aws_skip_signature",
];

/// Longest source URL admitted, in bytes.
pub const MAX_URL_BYTES: usize = 4096;

/// One normalised location: scheme, authority and path segments.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Place {
    scheme: String,
    authority: String,
    segments: Vec<String>,
}

impl Place {
    /// Whether `self` lies at or under `prefix`.
    fn under(&self, prefix: &Place) -> bool {
        self.scheme == prefix.scheme
            && self.authority == prefix.authority
            && self.segments.starts_with(&prefix.segments)
    }

    /// Whether one of the two lies at or under the other.
    fn overlaps(&self, other: &Place) -> bool {
        self.under(other) || other.under(self)
    }

    fn local_path(&self) -> Option<PathBuf> {
        (self.scheme == "file").then(|| {
            let mut p = PathBuf::from("/");
            p.extend(&self.segments);
            p
        })
    }
}

/// A prefix sources may use, with the options the server adds for it.
#[derive(Clone, Debug)]
struct Rule {
    prefix: Place,
    options: BTreeMap<String, String>,
}

/// Which sources this process may open.
#[derive(Clone, Debug, Default)]
pub struct SourcePolicy {
    rules: Vec<Rule>,
    fences: Vec<Place>,
}

/// A source the policy admitted: the options to open it with (the
/// client's harmless ones plus the matching prefix's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Options for `object_store`.
    pub options: Vec<(String, String)>,
}

fn denied(url: &str) -> LakeError {
    LakeError::Denied {
        url: url.to_owned(),
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> LakeError {
    LakeError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Normalise `raw` (a URL, or an absolute or relative local path) into a
/// [`Place`], refusing anything whose meaning depends on who interprets it.
/// With `glob`, segments from the first wildcard on are dropped: the
/// literal prefix is what must be admitted.
fn place(raw: &str, glob: bool) -> Result<Place> {
    if raw.len() > MAX_URL_BYTES {
        let head: String = raw.chars().take(64).collect();
        return Err(invalid(&head, format!("longer than {MAX_URL_BYTES} bytes")));
    }
    if raw.contains('\\') || raw.chars().any(char::is_control) {
        return Err(invalid(
            raw,
            "backslashes and control characters are not allowed",
        ));
    }
    let url: Url = crate::store::to_url(raw)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(raw, "credentials in a URL are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(raw, "queries and fragments are not allowed"));
    }
    let mut scheme = url.scheme().to_ascii_lowercase();
    if scheme == "s3a" {
        scheme = "s3".into();
    }
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}:{p}", h.to_ascii_lowercase()),
        (Some(h), None) => h.to_ascii_lowercase(),
        (None, _) => String::new(),
    };
    if scheme != "file" && authority.is_empty() {
        return Err(invalid(raw, "a bucket or host is required"));
    }
    // The raw text too: `url` resolves dot segments of some schemes before
    // we see them, and a source should mean what it says.
    let raw_path = raw.split("://").nth(1).unwrap_or(raw);
    let mut segments = Vec::new();
    for seg in url.path().split('/').filter(|s| !s.is_empty()) {
        let lower = seg.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return Err(invalid(raw, "encoded separators are not allowed"));
        }
        let decoded = percent_decode(seg);
        if decoded == "." || decoded == ".." {
            return Err(invalid(raw, "dot segments are not allowed"));
        }
        if glob && decoded.contains(['*', '?', '[']) {
            break;
        }
        segments.push(decoded);
    }
    if raw_path
        .split('/')
        .map(percent_decode)
        .any(|s| s == ".." || s == ".")
    {
        return Err(invalid(raw, "dot segments are not allowed"));
    }
    Ok(Place {
        scheme,
        authority,
        segments,
    })
}

/// `%XX` sequences decoded, as `object_store` decodes a URL path segment;
/// anything else (`&`, `=`, `+`, a stray `%`) kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SourcePolicy {
    /// A policy that admits nothing but managed sources (the server's own
    /// files) until prefixes are allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allow sources under `prefix`, opened with `options` (endpoint,
    /// credentials, `allow_http`: whatever the server needs to reach it).
    pub fn allow(mut self, prefix: &str, options: BTreeMap<String, String>) -> Result<Self> {
        let prefix = place(prefix, false)?;
        let options = options
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        self.rules.push(Rule { prefix, options });
        Ok(self)
    }

    /// Never admit anything at, under or above `location` (a URL or local
    /// path): the server's own files. Local paths are resolved through
    /// symlinks when they exist, so the fence holds whichever name a
    /// source uses.
    pub fn fence(mut self, location: &str) -> Result<Self> {
        self.fences.push(place(location, false)?);
        if let Ok(real) = Path::new(location).canonicalize() {
            if let Some(s) = real.to_str() {
                self.fences.push(place(s, false)?);
            }
        }
        Ok(self)
    }

    /// [`Self::fence`] for a local path.
    pub fn fence_path(self, path: &Path) -> Result<Self> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(&path.display().to_string(), e.to_string()))?
                .join(path)
        };
        match abs.to_str() {
            Some(s) => self.fence(s),
            None => Err(invalid(&abs.display().to_string(), "not UTF-8")),
        }
    }

    /// The prefixes this policy allows, as given.
    pub fn prefixes(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                format!(
                    "{}://{}/{}",
                    r.prefix.scheme,
                    r.prefix.authority,
                    r.prefix.segments.join("/")
                )
            })
            .collect()
    }

    /// Whether `source` (with the caller's `options`) may be opened, and
    /// with which options. Managed sources are the server's own: their
    /// prefix is never a caller's choice, so they pass as they are.
    pub fn admit(
        &self,
        source: &SourceKind,
        options: &BTreeMap<String, String>,
    ) -> Result<Admitted> {
        let (url, glob) = match source {
            SourceKind::Managed { .. } => {
                return Ok(Admitted {
                    options: options.clone().into_iter().collect(),
                })
            }
            SourceKind::Parquet { url, .. } => (url.as_str(), true),
            SourceKind::Delta { url, .. } => (url.as_str(), false),
            SourceKind::Iceberg {
                sql_catalog: Some(c),
                ..
            } => (sqlite_path(&c.uri)?, false),
            SourceKind::Iceberg { url, .. } => (url.as_str(), false),
        };
        for key in options.keys() {
            if !CLIENT_OPTIONS.contains(&key.to_ascii_lowercase().as_str()) {
                return Err(LakeError::Invalid(format!(
                    "source option {key:?} cannot be set by a client (allowed: {}); endpoints, credentials and transport settings come from the server's source policy",
                    CLIENT_OPTIONS.join(", ")
                )));
            }
        }
        let at = place(url, glob)?;
        let rule = self.rule_for(&at).ok_or_else(|| denied(url))?;
        let mut merged: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        merged.extend(rule.options.clone());
        Ok(Admitted {
            options: merged.into_iter().collect(),
        })
    }

    /// The rule `at` falls under, unless it touches a fence.
    fn rule_for(&self, at: &Place) -> Option<&Rule> {
        if self.fences.iter().any(|f| f.overlaps(at)) {
            return None;
        }
        self.rules.iter().find(|r| at.under(&r.prefix))
    }

    /// Whether an object at `url` (one a table's metadata named, or a file
    /// listed under a source) may be read. Local files are also checked
    /// through their real path, so a symlink cannot lead out of a prefix.
    pub fn permits(&self, url: &str) -> bool {
        let Ok(at) = place(url, false) else {
            return false;
        };
        if self.rule_for(&at).is_none() {
            return false;
        }
        match at.local_path().map(|p| p.canonicalize()) {
            Some(Ok(real)) => real
                .to_str()
                .and_then(|s| place(s, false).ok())
                .is_some_and(|r| self.rule_for(&r).is_some()),
            _ => true,
        }
    }
}

/// The file an Iceberg SQL catalog URI names (`sqlite:///rel.db`,
/// `sqlite:////abs.db`, or a plain path), read the way the catalog reader
/// opens it; URI parameters are refused rather than interpreted.
fn sqlite_path(uri: &str) -> Result<&str> {
    let file = match uri.strip_prefix("sqlite:") {
        Some(rest) => rest
            .strip_prefix("///")
            .ok_or_else(|| invalid(uri, "not a SQLite catalog URI (sqlite:///path)"))?,
        None => uri,
    };
    if file.is_empty() || file.contains('?') || file.starts_with(':') {
        return Err(invalid(
            uri,
            "a SQLite catalog must be a file, without parameters",
        ));
    }
    Ok(file)
}

static INSTALLED: RwLock<Option<Arc<SourcePolicy>>> = RwLock::new(None);

/// Hold every source this process opens from now on to `policy`.
pub fn install(policy: SourcePolicy) {
    let mut slot = INSTALLED.write().unwrap_or_else(|e| e.into_inner());
    *slot = Some(Arc::new(policy));
}

/// The installed policy, if any.
pub fn installed() -> Option<Arc<SourcePolicy>> {
    INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests;
