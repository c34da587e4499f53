//! RuLake's `AsyncFileReader` over any object store. Owning it (rather than
//! the deprecated `ParquetObjectReader`) gives one place to count the bytes
//! and requests a source costs, and to turn a vanished object into a typed
//! error.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes fetched with the first footer request, enough for most footers.
const FOOTER_PREFETCH: usize = 64 * 1024;

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
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}
