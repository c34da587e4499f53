//! RuLake's `AsyncFileReader` over any object store. Owning it (rather than
//! the deprecated `ParquetObjectReader`) gives one place to count the bytes
//! and requests a source costs, and to turn a vanished object into a typed
//! error. It is also where a footer's size is bounded: the last 8 bytes of a
//! file say how long its metadata is, and a file claiming more than
//! [`MAX_FOOTER_BYTES`] is refused before that many bytes are fetched. The
//! page index (read when the caller's options ask for it) is bounded the
//! same way.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataFetch};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes fetched with the first footer request, enough for most footers.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// Largest Parquet footer (file metadata) read, in bytes. Footers of files
/// with many row groups and columns are a few MiB at most.
pub const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// A footer longer than [`MAX_FOOTER_BYTES`], passed up through the Parquet
/// reader as its external error (`crate::parquet` turns it into
/// [`crate::LakeError::TooLarge`]).
#[derive(Debug)]
pub(crate) struct FooterTooLarge {
    /// The footer length the file claims.
    pub claimed: u64,
}

impl std::fmt::Display for FooterTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the file claims a footer of {} bytes, more than the limit of {MAX_FOOTER_BYTES}",
            self.claimed
        )
    }
}

impl std::error::Error for FooterTooLarge {}

/// The reader as the footer loader sees it: any range longer than
/// [`MAX_FOOTER_BYTES`] is refused. The loader asks first for the file's
/// tail (`FOOTER_PREFETCH` bytes), then, when the footer is longer, for
/// exactly the footer, so that second range is the claimed length.
struct BoundedFetch<'a>(&'a mut ObjectReader);

impl MetadataFetch for BoundedFetch<'_> {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        let len = range.end.saturating_sub(range.start);
        if len > MAX_FOOTER_BYTES {
            let e = ParquetError::External(Box::new(FooterTooLarge { claimed: len }));
            return futures::future::ready(Err(e)).boxed();
        }
        self.0.get_bytes(range)
    }
}

/// Bytes and requests a source has cost.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Bytes fetched from the store.
    pub bytes: AtomicU64,
    /// Range requests made.
    pub requests: AtomicU64,
}

/// Reads one object of a known size.
pub(crate) struct ObjectReader {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub size: u64,
    pub counters: Arc<ReadCounters>,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move {
            let b = self
                .store
                .get_range(&self.path, range)
                .await
                .map_err(external)?;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(b)
        }
        .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            let v = self
                .store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)?;
            self.counters
                .requests
                .fetch_add(ranges.len() as u64, Ordering::Relaxed);
            let n: usize = v.iter().map(|b| b.len()).sum();
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            Ok(v)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            // The page index policies the caller asked for (the offset
            // index is what lets a row group be read in slices); its ranges
            // go through the same bound as the footer.
            let (column_index, offset_index) = options
                .map(|o| (o.column_index_policy(), o.offset_index_policy()))
                .unwrap_or_default();
            let md = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .with_column_index_policy(column_index)
                .with_offset_index_policy(offset_index)
                .load_and_finish(BoundedFetch(self), size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}
