//! `deltalake-core` reads the Delta log through `object_store` 0.13, the
//! workspace is on 0.14. Rather than opening a second client per table
//! (second credential chain, second connection pool, reads invisible to the
//! lake I/O metrics), the table library gets this adapter: the 0.13 trait
//! over RuLake's own 0.14 store. Only reads are forwarded; RuLake never
//! writes to a lake, so every write is refused with `NotSupported`. Whole
//! reads of log files are bounded by [`MAX_LOG_FILE_BYTES`].

use async_trait::async_trait;
use bytes::Bytes;
use deltalake_core::logstore::object_store as os13;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use parking_lot::Mutex;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Largest Delta log file (a JSON commit, `_last_checkpoint`, a `.crc`)
/// the library may read whole, in bytes. Checked from the size the store
/// reports before any byte is fetched; Parquet checkpoints are read by
/// range and are not bounded by this.
pub const MAX_LOG_FILE_BYTES: u64 = 256 << 20;

/// A log file over [`MAX_LOG_FILE_BYTES`]: the store's error to the
/// library, and kept by the store for `DeltaSource` to report as
/// `LakeError::TooLarge`.
#[derive(Debug)]
pub(crate) struct LogFileTooLarge {
    /// The log file.
    pub path: String,
    /// Its size.
    pub size: u64,
}

impl std::fmt::Display for LogFileTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: Delta log file of {} bytes is more than the limit of {MAX_LOG_FILE_BYTES} bytes",
            self.path, self.size
        )
    }
}

impl std::error::Error for LogFileTooLarge {}

/// RuLake's store seen through the `object_store` 0.13 trait.
#[derive(Debug)]
pub(crate) struct ReadOnlyStore {
    inner: Arc<dyn ObjectStore>,
    /// The last log file refused for its size (the library keeps only the
    /// text of an error, so the source reads it here).
    refused: Arc<Mutex<Option<LogFileTooLarge>>>,
}

impl ReadOnlyStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        ReadOnlyStore {
            inner,
            refused: Arc::default(),
        }
    }

    /// Where refusals are kept.
    pub(crate) fn refused(&self) -> Arc<Mutex<Option<LogFileTooLarge>>> {
        self.refused.clone()
    }
}

impl fmt::Display for ReadOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

/// A path in the 0.14 form. Both releases keep paths in the same
/// canonical (already encoded) form, so this never re-encodes.
fn path14(p: &os13::path::Path) -> object_store::path::Path {
    object_store::path::Path::parse(p.as_ref()).unwrap_or_else(|_| p.as_ref().into())
}

pub(crate) fn path13(p: &object_store::path::Path) -> os13::path::Path {
    os13::path::Path::parse(p.as_ref()).unwrap_or_else(|_| p.as_ref().into())
}

fn meta13(m: object_store::ObjectMeta) -> os13::ObjectMeta {
    os13::ObjectMeta {
        location: path13(&m.location),
        last_modified: m.last_modified,
        size: m.size,
        e_tag: m.e_tag,
        version: m.version,
    }
}

fn range14(r: os13::GetRange) -> object_store::GetRange {
    match r {
        os13::GetRange::Bounded(r) => object_store::GetRange::Bounded(r),
        os13::GetRange::Offset(o) => object_store::GetRange::Offset(o),
        os13::GetRange::Suffix(n) => object_store::GetRange::Suffix(n),
    }
}

fn err13(e: object_store::Error) -> os13::Error {
    use object_store::Error as E;
    match e {
        E::NotFound { path, source } => os13::Error::NotFound { path, source },
        E::AlreadyExists { path, source } => os13::Error::AlreadyExists { path, source },
        E::Precondition { path, source } => os13::Error::Precondition { path, source },
        E::NotModified { path, source } => os13::Error::NotModified { path, source },
        E::NotSupported { source } => os13::Error::NotSupported { source },
        other => os13::Error::Generic {
            store: "RuLake",
            source: Box::new(other),
        },
    }
}

fn read_only<T>() -> os13::Result<T> {
    Err(os13::Error::NotSupported {
        source: "RuLake opens lake tables read-only".into(),
    })
}

#[async_trait]
impl os13::ObjectStore for ReadOnlyStore {
    async fn put_opts(
        &self,
        _location: &os13::path::Path,
        _payload: os13::PutPayload,
        _opts: os13::PutOptions,
    ) -> os13::Result<os13::PutResult> {
        read_only()
    }

    async fn put_multipart_opts(
        &self,
        _location: &os13::path::Path,
        _opts: os13::PutMultipartOptions,
    ) -> os13::Result<Box<dyn os13::MultipartUpload>> {
        read_only()
    }

    async fn get_opts(
        &self,
        location: &os13::path::Path,
        o: os13::GetOptions,
    ) -> os13::Result<os13::GetResult> {
        // What the library reads whole is the log (commits, checkpoint
        // pointer, checksums): bounded, so one huge file cannot fill memory.
        let whole = o.range.is_none() && !o.head;
        let opts = object_store::GetOptions {
            if_match: o.if_match,
            if_none_match: o.if_none_match,
            if_modified_since: o.if_modified_since,
            if_unmodified_since: o.if_unmodified_since,
            range: o.range.map(range14),
            version: o.version,
            head: o.head,
            ..Default::default()
        };
        let r = self
            .inner
            .get_opts(&path14(location), opts)
            .await
            .map_err(err13)?;
        if whole && !location.as_ref().ends_with(".parquet") && r.meta.size > MAX_LOG_FILE_BYTES {
            let refused = || LogFileTooLarge {
                path: location.to_string(),
                size: r.meta.size,
            };
            *self.refused.lock() = Some(refused());
            return Err(os13::Error::Generic {
                store: "RuLake",
                source: Box::new(refused()),
            });
        }
        let payload = match r.payload {
            object_store::GetResultPayload::File(file, path) => {
                os13::GetResultPayload::File(file, path)
            }
            object_store::GetResultPayload::Stream(s) => {
                os13::GetResultPayload::Stream(s.map_err(err13).boxed())
            }
        };
        Ok(os13::GetResult {
            payload,
            meta: meta13(r.meta),
            range: r.range,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(
        &self,
        location: &os13::path::Path,
        ranges: &[Range<u64>],
    ) -> os13::Result<Vec<Bytes>> {
        self.inner
            .get_ranges(&path14(location), ranges)
            .await
            .map_err(err13)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, os13::Result<os13::path::Path>>,
    ) -> BoxStream<'static, os13::Result<os13::path::Path>> {
        locations.map(|_| read_only()).boxed()
    }

    fn list(
        &self,
        prefix: Option<&os13::path::Path>,
    ) -> BoxStream<'static, os13::Result<os13::ObjectMeta>> {
        let prefix = prefix.map(path14);
        self.inner
            .list(prefix.as_ref())
            .map_ok(meta13)
            .map_err(err13)
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&os13::path::Path>,
        offset: &os13::path::Path,
    ) -> BoxStream<'static, os13::Result<os13::ObjectMeta>> {
        let prefix = prefix.map(path14);
        self.inner
            .list_with_offset(prefix.as_ref(), &path14(offset))
            .map_ok(meta13)
            .map_err(err13)
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&os13::path::Path>,
    ) -> os13::Result<os13::ListResult> {
        let r = self
            .inner
            .list_with_delimiter(prefix.map(path14).as_ref())
            .await
            .map_err(err13)?;
        Ok(os13::ListResult {
            common_prefixes: r.common_prefixes.iter().map(path13).collect(),
            objects: r.objects.into_iter().map(meta13).collect(),
        })
    }

    async fn copy_opts(
        &self,
        _from: &os13::path::Path,
        _to: &os13::path::Path,
        _options: os13::CopyOptions,
    ) -> os13::Result<()> {
        read_only()
    }
}
