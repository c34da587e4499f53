//! Object-store URLs to stores. Credentials come from the environment the
//! way `object_store` names them (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...); explicit
//! options given by the caller override the environment.
//!
//! Every store is opened for one source kind and wrapped in a
//! [`CountingStore`], so the lake I/O metrics see each read of every
//! source (see [`crate::io`]); with a source policy installed, every store
//! but a managed source's is also wrapped in a [`FencedStore`], so each
//! object read is one the policy permits (see [`crate::fence`]).

use crate::error::{LakeError, Result};
use crate::fence::FencedStore;
use crate::io::{CountingStore, LakeKind};
use object_store::path::{Path, PathPart};
use object_store::{local::LocalFileSystem, ObjectStore};
use std::sync::{Arc, Once};
use url::Url;

/// An opened store plus the path inside it that a URL addressed.
#[derive(Clone, Debug)]
pub struct StoreUrl {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Path of the addressed prefix or object within the store.
    pub path: Path,
    /// The URL as parsed.
    pub url: Url,
}

/// Parse a URL or a local path into a URL. Plain paths (`./lake`,
/// `/data/lake`) become `file://` URLs.
pub fn to_url(s: &str) -> Result<Url> {
    let invalid = |reason: String| LakeError::InvalidUrl {
        url: s.to_owned(),
        reason,
    };
    if s.contains("://") {
        return Url::parse(s).map_err(|e| invalid(e.to_string()));
    }
    let p = std::path::Path::new(s);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(e.to_string()))?
            .join(p)
    };
    Url::from_file_path(&abs).map_err(|_| invalid("not an absolute path".into()))
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Open the store a URL names, counting its reads as `kind`'s. `options`
/// (e.g. `aws_endpoint`, `aws_allow_http`) override what the environment
/// says.
pub fn open_store(url: &Url, options: &[(String, String)], kind: LakeKind) -> Result<StoreUrl> {
    let invalid = |reason: String| LakeError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    if url.scheme() == "file" {
        let fs_path = url
            .to_file_path()
            .map_err(|_| invalid("file URL without a local path".into()))?;
        let path = Path::from_absolute_path(&fs_path).map_err(|e| invalid(e.to_string()))?;
        return Ok(StoreUrl {
            store: counted_and_fenced(Arc::new(LocalFileSystem::new()), url, kind),
            path,
            url: url.clone(),
        });
    }
    match url.scheme() {
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" | "http" | "https" => {}
        other => {
            return Err(invalid(format!(
                "unsupported scheme {other:?}: use file://, s3://, gs:// or az://"
            )))
        }
    }
    install_crypto_provider();
    let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
    let opts = env.chain(options.iter().cloned());
    let (store, path) =
        object_store::parse_url_opts(url, opts).map_err(|e| invalid(e.to_string()))?;
    Ok(StoreUrl {
        store: counted_and_fenced(Arc::from(store), url, kind),
        path,
        url: url.clone(),
    })
}

/// `store` counted as `kind`'s reads and, under an installed policy and
/// unless it holds the server's own (managed) files, fenced by it.
fn counted_and_fenced(
    store: Arc<dyn ObjectStore>,
    url: &Url,
    kind: LakeKind,
) -> Arc<dyn ObjectStore> {
    let store: Arc<dyn ObjectStore> = match crate::policy::installed() {
        Some(policy) if kind != LakeKind::Managed => Arc::new(FencedStore::new(store, url, policy)),
        _ => store,
    };
    Arc::new(CountingStore::new(store, kind))
}

/// `rel` (`/`-separated, each segment encoded as a path part; empty
/// segments skipped) under `base`.
pub(crate) fn path_under(base: &Path, rel: &str) -> Path {
    Path::from_iter(base.parts().chain(rel.split('/').map(PathPart::from)))
}

/// The path inside `store` of an absolute location a table format wrote
/// (`s3://bucket/t/data/x.parquet`, `file:///t/data/x.parquet`, `/t/x`).
/// `None` when the location lives in another store than the table.
#[cfg(any(feature = "delta", feature = "iceberg"))]
pub(crate) fn path_in_store(store: &StoreUrl, location: &str) -> Option<Path> {
    let url = if location.starts_with('/') {
        Url::from_file_path(location).ok()?
    } else {
        Url::parse(location).ok()?
    };
    let same_scheme = url.scheme() == store.url.scheme()
        || matches!(
            (url.scheme(), store.url.scheme()),
            ("s3" | "s3a", "s3" | "s3a") | ("abfs" | "abfss", "abfs" | "abfss")
        );
    if !same_scheme || url.host_str() != store.url.host_str() {
        return None;
    }
    Path::from_url_path(url.path()).ok()
}
