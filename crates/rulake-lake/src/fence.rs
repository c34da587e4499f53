//! Every read of a caller's source, held to the source policy.
//!
//! Admission ([`crate::policy::SourcePolicy::admit`]) checks the URL a
//! caller gave, but a source reads more than that URL: a Delta log and an
//! Iceberg manifest name their data files by absolute location, and a
//! directory under an allowed prefix may hold a symlink. Any of those could
//! point at another tenant's managed files or the server's keys. So the
//! store of every caller-chosen source is wrapped in a [`FencedStore`],
//! which asks the policy about each object before it is read or listed,
//! and refuses writes outright (sources are read-only; only managed
//! sources, the server's own, write, and they are not fenced).

use crate::policy::SourcePolicy;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use std::ops::Range;
use std::sync::Arc;

/// A read-only view of `inner` that reads only what the policy permits.
#[derive(Debug)]
pub struct FencedStore {
    inner: Arc<dyn ObjectStore>,
    /// `scheme://authority` of the store, to which object paths are joined.
    base: String,
    policy: Arc<SourcePolicy>,
}

#[derive(Debug, thiserror::Error)]
#[error("outside the server's source policy")]
struct Outside;

impl FencedStore {
    /// `inner` (the store of `url`), fenced by `policy`.
    pub fn new(inner: Arc<dyn ObjectStore>, url: &url::Url, policy: Arc<SourcePolicy>) -> Self {
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        FencedStore {
            inner,
            base: format!("{}://{authority}", url.scheme()),
            policy,
        }
    }

    fn permits(&self, location: &Path) -> bool {
        self.policy.permits(&format!("{}/{}", self.base, location))
    }

    fn check(&self, location: &Path) -> object_store::Result<()> {
        if self.permits(location) {
            Ok(())
        } else {
            Err(refused(location))
        }
    }

    fn list_checked(
        &self,
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let fence = FencedStore {
            inner: self.inner.clone(),
            base: self.base.clone(),
            policy: self.policy.clone(),
        };
        stream
            .filter(move |m| {
                let keep = match m {
                    Ok(meta) => fence.permits(&meta.location),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            .boxed()
    }
}

fn refused(location: &Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: location.to_string(),
        source: Box::new(Outside),
    }
}

fn read_only(location: &Path) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{location}: a source is read-only").into(),
    }
}

impl std::fmt::Display for FencedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fenced({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FencedStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only(location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations
            .map(|l| l.and_then(|p| Err(read_only(&p))))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_checked(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_checked(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects.retain(|m| self.permits(&m.location));
        listed.common_prefixes.retain(|p| self.permits(p));
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only(to))
    }

    async fn rename_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(read_only(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::ObjectStoreExt;
    use std::collections::BTreeMap;

    /// What a table's metadata names is read only inside the policy, and
    /// a source never writes.
    #[tokio::test]
    async fn objects_outside_the_policy_are_neither_read_nor_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let lake = root.join("lake");
        let data = root.join("data");
        std::fs::create_dir_all(&lake).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(lake.join("a.parquet"), b"lake").unwrap();
        std::fs::write(data.join("secret.parquet"), b"secret").unwrap();
        let policy = SourcePolicy::new()
            .allow(lake.to_str().unwrap(), BTreeMap::new())
            .unwrap()
            .fence_path(&data)
            .unwrap();
        let url = url::Url::parse("file:///").unwrap();
        let store = FencedStore::new(Arc::new(LocalFileSystem::new()), &url, Arc::new(policy));
        let inside = Path::from_absolute_path(lake.join("a.parquet")).unwrap();
        let outside = Path::from_absolute_path(data.join("secret.parquet")).unwrap();
        assert_eq!(
            &store.get(&inside).await.unwrap().bytes().await.unwrap()[..],
            b"lake"
        );
        let err = store.get(&outside).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{err}"
        );
        assert!(store.head(&outside).await.is_err());
        let root_path = Path::from_absolute_path(&root).unwrap();
        let listed: Vec<_> = store
            .list(Some(&root_path))
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        assert_eq!(listed, vec![inside.clone()]);
        assert!(store
            .put(&inside, PutPayload::from_static(b"x"))
            .await
            .is_err());
        assert_eq!(std::fs::read(lake.join("a.parquet")).unwrap(), b"lake");
    }
}
