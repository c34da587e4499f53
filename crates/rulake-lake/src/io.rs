//! Lake I/O counters per source kind: bytes and read requests, listings
//! and HEADs, counted where every source's requests pass (the object store
//! each source opens),
//! and failed source operations, counted where every source is called from
//! (the engine's [`metered`] wrapper).
//!
//! Why two choke points: bytes and requests only exist at the store, where
//! Parquet footers and row groups, Delta logs, Iceberg metadata, manifests
//! and delete files all arrive as GETs, so one wrapper ([`CountingStore`],
//! installed by [`crate::store::open_store`]) covers every kind without a
//! copy per format. Errors are not counted there: sources probe optional
//! objects (a Delta log version, Iceberg's `version-hint.text`, whether a
//! URL names one object) and a `NotFound` is their normal answer, while a
//! Parquet file that cannot be decoded fails after its GETs succeeded. A
//! failed `generation`, `list_units` or `read_unit` is what an operator
//! calls a lake read error, so that is what [`metered`] counts.
//!
//! Reads saved are counted too: the files and row groups a standing
//! filter's pruning left out of a listing ([`crate::source::Pruned`]) and
//! their bytes, recorded by the engine when it loads the listing
//! ([`record_pruned`]), once per partition that would have read them, so
//! a listing checked again without loading counts nothing.
//!
//! The counters are process-wide (a metrics registry reads them at scrape
//! time with [`snapshot`]) and labelled by [`LakeKind`], a closed set: no
//! path, table or collection name ever becomes a label.

use crate::error::Result;
use crate::source::{Listing, Pruned, RowStream, Source, Unit};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use rulake_types::Generation;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The kind of source a read was made for: the `kind` label of the lake
/// I/O metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LakeKind {
    /// Parquet files under a prefix or glob.
    Parquet,
    /// Delta Lake tables (log and data files).
    Delta,
    /// Iceberg tables (metadata, manifests, data and delete files).
    Iceberg,
    /// Files RuLake wrote itself (managed sources).
    Managed,
    /// The in-process memory source: no objects, but its reads can fail.
    Memory,
    /// A source kind this crate does not define (tests, extensions).
    Other,
}

impl LakeKind {
    /// Every kind, in label order.
    pub const ALL: [LakeKind; 6] = [
        LakeKind::Parquet,
        LakeKind::Delta,
        LakeKind::Iceberg,
        LakeKind::Managed,
        LakeKind::Memory,
        LakeKind::Other,
    ];

    /// The kinds that read objects from a store (the only ones whose bytes
    /// and requests can move).
    pub const OBJECT_KINDS: [LakeKind; 4] = [
        LakeKind::Parquet,
        LakeKind::Delta,
        LakeKind::Iceberg,
        LakeKind::Managed,
    ];

    /// The label value (equal to [`Source::kind`] of the kind's source).
    pub fn as_str(self) -> &'static str {
        match self {
            LakeKind::Parquet => "parquet",
            LakeKind::Delta => "delta",
            LakeKind::Iceberg => "iceberg",
            LakeKind::Managed => "managed",
            LakeKind::Memory => "memory",
            LakeKind::Other => "other",
        }
    }

    /// The kind of a [`Source::kind`] string; unknown strings are
    /// [`LakeKind::Other`], so the label set stays closed.
    pub fn of(kind: &str) -> LakeKind {
        LakeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or(LakeKind::Other)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for LakeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const KINDS: usize = LakeKind::ALL.len();

struct Counters {
    bytes: [AtomicU64; KINDS],
    requests: [AtomicU64; KINDS],
    lists: [AtomicU64; KINDS],
    heads: [AtomicU64; KINDS],
    errors: [AtomicU64; KINDS],
    pruned_files: [AtomicU64; KINDS],
    pruned_row_groups: [AtomicU64; KINDS],
    pruned_bytes: [AtomicU64; KINDS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

static COUNTERS: Counters = Counters {
    bytes: [ZERO; KINDS],
    requests: [ZERO; KINDS],
    lists: [ZERO; KINDS],
    heads: [ZERO; KINDS],
    errors: [ZERO; KINDS],
    pruned_files: [ZERO; KINDS],
    pruned_row_groups: [ZERO; KINDS],
    pruned_bytes: [ZERO; KINDS],
};

/// What the lake has cost one source kind in this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoSnapshot {
    /// Bytes of object data returned by successful GETs (whole objects and
    /// byte ranges).
    pub bytes: u64,
    /// GET requests for object data that succeeded: each whole-object GET
    /// and each byte range of a ranged or multi-range read counts once
    /// (listings and HEADs are not reads).
    pub requests: u64,
    /// Listings started (each call that lists a prefix counts once; a
    /// listing of more than one page is several requests on S3). What a
    /// generation check of a Parquet prefix costs, and what cheaper
    /// checks avoid.
    pub lists: u64,
    /// HEAD requests (metadata of one object, no data).
    pub heads: u64,
    /// Source operations (generation check, listing, reading a unit) that
    /// failed: a failed request, a vanished object, an undecodable file.
    pub errors: u64,
    /// Files a filter's pruning left unread, footer included (by table
    /// metadata: Delta `add` statistics and partition values, Iceberg
    /// manifest bounds).
    pub pruned_files: u64,
    /// Row groups a filter's pruning left unread (by footer statistics).
    pub pruned_row_groups: u64,
    /// Bytes of those files and row groups (file sizes, compressed row
    /// group sizes).
    pub pruned_bytes: u64,
}

/// The counters of `kind` now.
pub fn snapshot(kind: LakeKind) -> IoSnapshot {
    let i = kind.index();
    IoSnapshot {
        bytes: COUNTERS.bytes[i].load(Ordering::Relaxed),
        requests: COUNTERS.requests[i].load(Ordering::Relaxed),
        lists: COUNTERS.lists[i].load(Ordering::Relaxed),
        heads: COUNTERS.heads[i].load(Ordering::Relaxed),
        errors: COUNTERS.errors[i].load(Ordering::Relaxed),
        pruned_files: COUNTERS.pruned_files[i].load(Ordering::Relaxed),
        pruned_row_groups: COUNTERS.pruned_row_groups[i].load(Ordering::Relaxed),
        pruned_bytes: COUNTERS.pruned_bytes[i].load(Ordering::Relaxed),
    }
}

/// Count `pruned` as reads a `kind` source was spared (see the module
/// docs for who calls this, and when).
pub fn record_pruned<'a>(kind: LakeKind, pruned: impl IntoIterator<Item = &'a Pruned>) {
    let i = kind.index();
    for p in pruned {
        let n = if p.file {
            &COUNTERS.pruned_files[i]
        } else {
            &COUNTERS.pruned_row_groups[i]
        };
        n.fetch_add(1, Ordering::Relaxed);
        COUNTERS.pruned_bytes[i].fetch_add(p.bytes, Ordering::Relaxed);
    }
}

fn record_read(kind: LakeKind, requests: u64, bytes: u64) {
    let i = kind.index();
    COUNTERS.requests[i].fetch_add(requests, Ordering::Relaxed);
    COUNTERS.bytes[i].fetch_add(bytes, Ordering::Relaxed);
}

fn record(counter: &[AtomicU64; KINDS], kind: LakeKind) {
    counter[kind.index()].fetch_add(1, Ordering::Relaxed);
}

fn record_error(kind: LakeKind) {
    COUNTERS.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
}

/// An object store that counts the reads made through it for one source
/// kind, and otherwise passes every call on unchanged.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    kind: LakeKind,
}

impl CountingStore {
    /// `inner`, counting its reads as `kind`'s.
    pub fn new(inner: Arc<dyn ObjectStore>, kind: LakeKind) -> Self {
        CountingStore { inner, kind }
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({}, {})", self.kind, self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        if head {
            record(&COUNTERS.heads, self.kind);
        }
        let r = self.inner.get_opts(location, options).await?;
        if !head {
            record_read(self.kind, 1, r.range.end.saturating_sub(r.range.start));
        }
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let v = self.inner.get_ranges(location, ranges).await?;
        let bytes: usize = v.iter().map(Bytes::len).sum();
        record_read(self.kind, ranges.len() as u64, bytes as u64);
        Ok(v)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        record(&COUNTERS.lists, self.kind);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        record(&COUNTERS.lists, self.kind);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        record(&COUNTERS.lists, self.kind);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A source whose failed operations count as lake read errors of its kind.
/// The engine wraps every source it is given; wrap a source once only, or
/// its errors count twice.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Source>,
    kind: LakeKind,
}

/// `source`, counting its failed operations (see the module docs).
pub fn metered(source: Arc<dyn Source>) -> Arc<dyn Source> {
    let kind = LakeKind::of(source.kind());
    Arc::new(Metered {
        inner: source,
        kind,
    })
}

impl Metered {
    fn count<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            record_error(self.kind);
        }
        r
    }
}

#[async_trait]
impl Source for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn generation(&self) -> Result<Generation> {
        self.count(self.inner.generation().await)
    }

    async fn list_units(&self) -> Result<Listing> {
        self.count(self.inner.list_units().await)
    }

    async fn list_units_pruned(&self, filter: &rulake_types::Filter) -> Result<Listing> {
        self.count(self.inner.list_units_pruned(filter).await)
    }

    async fn check_columns(&self, columns: &[String]) -> Result<()> {
        // A refused column is an answer about the request, not a failed read.
        self.inner.check_columns(columns).await
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.read_unit_columns(unit, dim, &[])
    }

    fn read_unit_columns(&self, unit: &Unit, dim: usize, payload: &[String]) -> RowStream {
        let kind = self.kind;
        self.inner
            .read_unit_columns(unit, dim, payload)
            .inspect(move |r| {
                if r.is_err() {
                    record_error(kind);
                }
            })
            .boxed()
    }

    fn pinned(&self, version: &str) -> Result<Arc<dyn Source>> {
        // Refusing to pin is an answer about the request, not a read.
        self.inner.pinned(version).map(metered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_a_closed_set_named_like_sources() {
        for k in LakeKind::ALL {
            assert_eq!(LakeKind::of(k.as_str()), k);
        }
        assert_eq!(LakeKind::of("s3://bucket/secret/path"), LakeKind::Other);
        assert_eq!(LakeKind::of(""), LakeKind::Other);
        let m = crate::MemorySource::new("m", 4);
        assert_eq!(LakeKind::of(m.kind()), LakeKind::Memory);
    }
}
