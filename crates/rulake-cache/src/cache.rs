//! The node-level partition cache: many partitions under one memory
//! budget, whole partitions evicted least-recently-used, a partition that
//! cannot fit refused *before* anything is read (admission control, so an
//! oversized collection is an error, never an out-of-memory kill), and built
//! partitions persisted to a local directory so a restart loads instead of
//! rebuilding.
//!
//! The budget covers loads as well as what is cached: a build reserves its
//! partition's estimate plus its read buffers ([`LoadReservation`]) before
//! it reads anything, and holds them until the partition is in the cache.
//! Reservations queue on a node-wide semaphore the size of the budget, so
//! concurrent loads never hold more than the budget between them, and
//! cached partitions are evicted (least recently used first) to make room,
//! so cached bytes plus loading bytes stay within the budget.

use crate::error::{CacheError, Result};
use parking_lot::Mutex;
use rulake_index::PartitionIndex;
use rulake_types::{Filter, Generation, Payload, ZoneMap};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes one permit of the load semaphore stands for.
const LOAD_UNIT: usize = 1 << 20;

/// Which partition: `(collection, p)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Collection name.
    pub collection: String,
    /// Partition number in `0..P`.
    pub partition: u32,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.collection, self.partition)
    }
}

/// A built partition and what it was built from.
#[derive(Debug)]
pub struct CachedPartition {
    /// The index.
    pub index: PartitionIndex,
    /// Source generation it reflects.
    pub generation: Generation,
    /// Unit key → unit version it holds.
    pub units: BTreeMap<String, String>,
    /// The collection's payload columns, by the index's row positions.
    pub payload: Payload,
    /// Min, max and null count of every payload column: a search whose
    /// filter cannot match them skips the partition without evaluating
    /// a row.
    pub zones: ZoneMap,
    /// The standing filter the partition's rows were kept by.
    pub standing: Option<Filter>,
}

impl CachedPartition {
    /// A partition of `index` and its `payload` (whose zone map is
    /// computed here), built from `units` at `generation` keeping only the
    /// rows `standing` matches.
    pub fn new(
        index: PartitionIndex,
        generation: Generation,
        units: BTreeMap<String, String>,
        payload: Payload,
        standing: Option<Filter>,
    ) -> Self {
        CachedPartition {
            index,
            generation,
            units,
            zones: ZoneMap::of_payload(&payload),
            payload,
            standing,
        }
    }

    /// Heap bytes held: the index and the payload columns.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes() + self.payload.memory_bytes()
    }
}

/// What makes a persisted partition loadable, written after its data. The
/// payload columns travel here (JSON, written atomically with the rest of
/// the sidecar); a sidecar of an earlier release has none, which is what
/// a collection without payload columns wants.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    generation: Generation,
    units: BTreeMap<String, String>,
    dim: usize,
    metric: rulake_types::Metric,
    #[serde(default)]
    payload: Payload,
    /// The standing filter the rows were kept by (none in a sidecar of an
    /// earlier release, which is what such a partition was built with).
    #[serde(default)]
    standing: Option<Filter>,
}

/// Cache configuration.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Bytes of partitions the cache may hold.
    pub budget_bytes: usize,
    /// Where built partitions are persisted (none: memory only).
    pub persist_dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            budget_bytes: 4 << 30,
            persist_dir: None,
        }
    }
}

/// Counters a cache exposes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CacheStats {
    /// Lookups that found the partition in memory.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Partitions evicted to make room.
    pub evictions: u64,
    /// Partitions refused by admission control.
    pub refused: u64,
    /// Partitions built from the lake (full or incremental).
    pub builds: u64,
    /// Of those, incremental extensions.
    pub incremental_builds: u64,
    /// Total build time.
    pub build_seconds: f64,
    /// Partitions loaded from the persist directory.
    pub disk_loads: u64,
    /// Partitions held now.
    pub partitions: usize,
    /// Bytes held now.
    pub bytes: usize,
    /// Budget.
    pub budget_bytes: usize,
    /// Bytes reserved by loads in flight (read buffers and partitions
    /// built but not yet in the cache), counted against the budget.
    pub loading_bytes: usize,
    /// The process's resident memory now (`VmRSS`; 0 where unknown).
    pub resident_bytes: u64,
    /// The process's peak resident memory (`VmHWM`; 0 where unknown).
    pub peak_resident_bytes: u64,
    /// Last error per partition or collection that is still unresolved.
    pub errors: BTreeMap<String, String>,
}

struct Entry {
    part: Arc<CachedPartition>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<PartitionKey, Entry>,
    used: usize,
    tick: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    refused: AtomicU64,
    builds: AtomicU64,
    incremental: AtomicU64,
    build_nanos: AtomicU64,
    disk_loads: AtomicU64,
}

/// The partition cache of one node.
pub struct PartitionCache {
    config: CacheConfig,
    inner: Mutex<Inner>,
    counters: Counters,
    errors: Mutex<BTreeMap<String, String>>,
    /// Bytes reserved by loads in flight.
    loading: Arc<AtomicUsize>,
    /// One permit per [`LOAD_UNIT`] of the budget: what loads reserve.
    load_permits: Arc<Semaphore>,
}

/// Memory a load holds against the budget from before it reads anything
/// until its partition is in the cache (dropping it gives the bytes back).
#[derive(Debug)]
pub struct LoadReservation {
    loading: Arc<AtomicUsize>,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl LoadReservation {
    /// The build is over: its read buffers are gone and what remains is
    /// the built partition, `bytes` long, until it is inserted. Releases
    /// the load permits, so the next load may start.
    pub fn settle(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.loading
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.loading
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
        self.permit = None;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for LoadReservation {
    fn drop(&mut self) {
        self.loading.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PartitionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionCache")
            .field("config", &self.config)
            .finish()
    }
}

impl PartitionCache {
    /// A cache with the given budget and persist directory.
    pub fn new(config: CacheConfig) -> Arc<Self> {
        let permits = (config.budget_bytes / LOAD_UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(PartitionCache {
            config,
            inner: Mutex::new(Inner::default()),
            counters: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
            loading: Arc::default(),
            load_permits: Arc::new(Semaphore::new(permits)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Look a partition up, counting a hit or a miss.
    pub fn get(&self, key: &PartitionKey) -> Option<Arc<CachedPartition>> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.entries.get_mut(key) {
            Some(e) => {
                e.last_used = tick;
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.part.clone())
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Look a partition up without touching statistics or recency.
    pub fn peek(&self, key: &PartitionKey) -> Option<Arc<CachedPartition>> {
        self.inner.lock().entries.get(key).map(|e| e.part.clone())
    }

    /// Admission control: refuse a partition whose estimated size cannot
    /// fit the budget even if everything else were evicted.
    pub fn admit(&self, key: &PartitionKey, estimated: usize) -> Result<()> {
        if estimated > self.config.budget_bytes {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(CacheError::TooLarge {
                partition: key.to_string(),
                needed: estimated,
                budget: self.config.budget_bytes,
            });
        }
        Ok(())
    }

    /// Reserve budget for a load of `key`: its partition's `estimate` and
    /// the `transient` bytes of its read buffers. Refused when the
    /// partition could never fit the budget; otherwise waits until
    /// concurrent loads leave room, then evicts least-recently-used
    /// partitions until cached plus loading bytes fit.
    pub async fn reserve_load(
        &self,
        key: &PartitionKey,
        estimate: usize,
        transient: usize,
    ) -> Result<LoadReservation> {
        self.admit(key, estimate)?;
        let bytes = estimate + transient;
        let units = bytes
            .div_ceil(LOAD_UNIT)
            .clamp(1, (self.config.budget_bytes / LOAD_UNIT).max(1));
        let permit = self
            .load_permits
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .map_err(|e| CacheError::Task {
                partition: key.to_string(),
                message: e.to_string(),
            })?;
        self.loading.fetch_add(bytes, Ordering::Relaxed);
        let reservation = LoadReservation {
            loading: self.loading.clone(),
            bytes,
            permit: Some(permit),
        };
        let mut inner = self.inner.lock();
        let evicted = self.make_room(&mut inner, 0);
        drop(inner);
        release_evicted(evicted);
        Ok(reservation)
    }

    /// Whether a load reserving `bytes` would find them in budget neither
    /// cached nor held by loads in flight, so without evicting anything.
    /// As in [`PartitionCache::reserve_load`], a load never holds more
    /// than the whole budget: into an empty cache, any admitted load fits.
    pub fn fits_without_evicting(&self, bytes: usize) -> bool {
        let used = self.inner.lock().used + self.loading.load(Ordering::Relaxed);
        let budget = self.config.budget_bytes;
        bytes.min(budget) <= budget.saturating_sub(used)
    }

    /// Evict least-recently-used partitions until cached bytes, loading
    /// bytes and `extra` fit the budget (or nothing is left to evict);
    /// answers how many were evicted.
    fn make_room(&self, inner: &mut Inner, extra: usize) -> usize {
        let mut evicted = 0;
        while inner.used + self.loading.load(Ordering::Relaxed) + extra > self.config.budget_bytes {
            let victim = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    let e = inner.entries.remove(&v).expect("victim exists");
                    inner.used -= e.bytes;
                    self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(partition = %v, bytes = e.bytes, "evicted");
                    evicted += 1;
                }
                None => break,
            }
        }
        evicted
    }

    /// Insert (or replace) a partition, evicting least-recently-used
    /// partitions until it fits beside the loads in flight. Drop the
    /// partition's own [`LoadReservation`] first.
    pub fn insert(&self, key: PartitionKey, part: Arc<CachedPartition>) -> Result<()> {
        let bytes = part.memory_bytes();
        self.admit(&key, bytes)?;
        let mut inner = self.inner.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.used -= old.bytes;
        }
        let evicted = self.make_room(&mut inner, bytes);
        inner.tick += 1;
        let last_used = inner.tick;
        inner.used += bytes;
        inner.entries.insert(
            key,
            Entry {
                part,
                bytes,
                last_used,
            },
        );
        drop(inner);
        release_evicted(evicted);
        Ok(())
    }

    /// Drop one partition from memory (its persisted copy stays, for a
    /// quick reload should the partition come back).
    pub fn remove(&self, key: &PartitionKey) {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.entries.remove(key) {
            inner.used -= e.bytes;
        }
    }

    /// Drop every partition of a collection (memory and disk).
    pub fn remove_collection(&self, collection: &str) {
        let mut inner = self.inner.lock();
        let keys: Vec<_> = inner
            .entries
            .keys()
            .filter(|k| k.collection == collection)
            .cloned()
            .collect();
        for k in keys {
            let e = inner.entries.remove(&k).expect("listed");
            inner.used -= e.bytes;
        }
        drop(inner);
        if let Some(dir) = &self.config.persist_dir {
            let _ = std::fs::remove_dir_all(dir.join(collection));
        }
    }

    pub(crate) fn record_build(&self, took: Duration, incremental: bool) {
        self.counters.builds.fetch_add(1, Ordering::Relaxed);
        if incremental {
            self.counters.incremental.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .build_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Remember an error for `what` (a partition or collection) until cleared.
    pub fn record_error(&self, what: &str, error: &dyn std::fmt::Display) {
        self.errors
            .lock()
            .insert(what.to_owned(), error.to_string());
    }

    /// Clear the error remembered for `what`.
    pub fn clear_error(&self, what: &str) {
        self.errors.lock().remove(what);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let process = crate::memory::process_memory().unwrap_or_default();
        let inner = self.inner.lock();
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            builds: c.builds.load(Ordering::Relaxed),
            incremental_builds: c.incremental.load(Ordering::Relaxed),
            build_seconds: c.build_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            disk_loads: c.disk_loads.load(Ordering::Relaxed),
            partitions: inner.entries.len(),
            bytes: inner.used,
            budget_bytes: self.config.budget_bytes,
            loading_bytes: self.loading.load(Ordering::Relaxed),
            resident_bytes: process.resident,
            peak_resident_bytes: process.peak,
            errors: self.errors.lock().clone(),
        }
    }

    fn paths(&self, key: &PartitionKey) -> Option<(PathBuf, PathBuf)> {
        let dir = self.config.persist_dir.as_ref()?.join(&key.collection);
        Some((
            dir.join(format!("p{}.rlk", key.partition)),
            dir.join(format!("p{}.json", key.partition)),
        ))
    }

    /// Write a partition to the persist directory (no-op without one).
    /// Data first, then the sidecar that makes it loadable, each renamed
    /// into place, so a crash never leaves a loadable half-written file.
    pub fn persist(&self, key: &PartitionKey, part: &CachedPartition) -> std::io::Result<()> {
        let Some((data, side)) = self.paths(key) else {
            return Ok(());
        };
        std::fs::create_dir_all(data.parent().expect("has parent"))?;
        let _ = std::fs::remove_file(&side);
        let tmp = data.with_extension("rlk.tmp");
        {
            let f = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            part.index
                .write_to(&mut w)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &data)?;
        let sidecar = Sidecar {
            generation: part.generation.clone(),
            units: part.units.clone(),
            dim: part.index.dim(),
            metric: part.index.metric(),
            payload: part.payload.clone(),
            standing: part.standing.clone(),
        };
        let tmp = side.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&sidecar).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &side)
    }

    /// Bytes of `key`'s persisted copy at `generation` (its memory once
    /// read, within a few bytes of framing), if there is one: a copy of
    /// another generation is never read, so nothing is reserved for it.
    pub fn persisted_bytes(&self, key: &PartitionKey, generation: &Generation) -> Option<usize> {
        let (data, side) = self.paths(key)?;
        let sidecar: Sidecar = serde_json::from_slice(&std::fs::read(&side).ok()?).ok()?;
        if &sidecar.generation != generation {
            return None;
        }
        Some(std::fs::metadata(data).ok()?.len() as usize + sidecar.payload.memory_bytes())
    }

    /// Load a persisted partition if it exists, reflects `generation` and
    /// has the shape `spec` asks for, calibrated for `spec`'s target.
    /// Damaged files are removed and reported.
    pub fn load_persisted(
        &self,
        spec: &crate::PartitionSpec,
        generation: &Generation,
    ) -> Option<CachedPartition> {
        let (key, dim, metric) = (&spec.key, spec.dim, spec.metric);
        let (data, side) = self.paths(key)?;
        let sidecar: Sidecar = serde_json::from_slice(&std::fs::read(&side).ok()?).ok()?;
        if &sidecar.generation != generation
            || sidecar.dim != dim
            || sidecar.metric != metric
            || sidecar.payload.names() != spec.payload_columns
            || sidecar.standing != spec.standing_filter
        {
            return None;
        }
        let loaded = (|| -> std::result::Result<PartitionIndex, String> {
            let f = std::fs::File::open(&data).map_err(|e| e.to_string())?;
            let size = f.metadata().map_err(|e| e.to_string())?.len();
            let mut index =
                PartitionIndex::read_from(std::io::BufReader::with_capacity(1 << 20, f), size)
                    .map_err(|e| e.to_string())?;
            spec.tune(&mut index).map_err(|e| e.to_string())?;
            Ok(index)
        })();
        match loaded {
            Ok(index) => {
                self.counters.disk_loads.fetch_add(1, Ordering::Relaxed);
                Some(CachedPartition::new(
                    index,
                    sidecar.generation,
                    sidecar.units,
                    sidecar.payload,
                    sidecar.standing,
                ))
            }
            Err(e) => {
                tracing::warn!(partition = %key, error = %e, "discarding damaged persisted partition");
                self.record_error(
                    &key.to_string(),
                    &format!("persisted copy unreadable, rebuilt: {e}"),
                );
                let _ = std::fs::remove_file(&data);
                let _ = std::fs::remove_file(&side);
                None
            }
        }
    }

    /// The persist directory, if any.
    pub fn persist_dir(&self) -> Option<&Path> {
        self.config.persist_dir.as_deref()
    }
}

/// Hand what evicted partitions freed back to the system now, when any
/// were evicted: a node that evicts is short of budget and is about to
/// load, and the allocator's own decay would hold the freed pages
/// resident meanwhile (a partition still in a search's hands is freed
/// when that search ends, and left to the decay).
fn release_evicted(evicted: usize) {
    if evicted > 0 {
        crate::memory::release_freed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulake_index::BuildParams;
    use rulake_types::{Metric, VectorId};

    fn key(p: u32) -> PartitionKey {
        PartitionKey {
            collection: "c".into(),
            partition: p,
        }
    }

    /// A real partition of `n` rows of dimension 64.
    fn partition(n: usize) -> Arc<CachedPartition> {
        let dim = 64;
        let ids = (0..n as u64).map(VectorId::U64).collect();
        let vectors = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32).collect();
        let index =
            PartitionIndex::build(dim, Metric::L2, ids, vectors, BuildParams::default()).unwrap();
        Arc::new(CachedPartition::new(
            index,
            Generation("g1".into()),
            BTreeMap::new(),
            Default::default(),
            None,
        ))
    }

    #[tokio::test]
    async fn a_load_counts_against_the_budget_until_its_partition_is_cached() {
        let budget = 8 << 20;
        let cache = PartitionCache::new(CacheConfig {
            budget_bytes: budget,
            persist_dir: None,
        });
        let a = partition(2000);
        let a_bytes = a.index.memory_bytes();
        cache.insert(key(0), a).unwrap();
        assert_eq!(cache.stats().bytes, a_bytes);

        // A load that fits beside the cached partition evicts nothing.
        let mut r = cache.reserve_load(&key(1), 1 << 20, 1 << 20).await.unwrap();
        assert_eq!(cache.stats().loading_bytes, 2 << 20);
        assert_eq!(cache.stats().evictions, 0);

        // Settled to the built partition's size, it stays counted.
        r.settle(1 << 20);
        assert_eq!(cache.stats().loading_bytes, 1 << 20);

        // A load needing what is left of the budget evicts the LRU partition.
        let big = cache
            .reserve_load(&key(2), budget - (2 << 20), 1 << 20)
            .await
            .unwrap();
        let s = cache.stats();
        assert_eq!((s.evictions, s.partitions, s.bytes), (1, 0, 0));
        assert_eq!(s.loading_bytes, budget);
        drop(r);
        drop(big);
        assert_eq!(cache.stats().loading_bytes, 0);
    }

    #[tokio::test]
    async fn concurrent_loads_wait_for_the_budget_and_a_partition_larger_than_it_is_refused() {
        let budget = 4 << 20;
        let cache = PartitionCache::new(CacheConfig {
            budget_bytes: budget,
            persist_dir: None,
        });
        let mut first = cache.reserve_load(&key(0), 3 << 20, 0).await.unwrap();
        // The second needs 2 MiB of permits while the first holds 3 of 4.
        let k1 = key(1);
        let second = cache.reserve_load(&k1, 2 << 20, 0);
        tokio::pin!(second);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut second).await;
        assert!(pending.is_err(), "the second load started beside the first");
        // The first's build ends: its permits go back, and the second starts.
        first.settle(1 << 20);
        let second = second.await.unwrap();
        assert_eq!(cache.stats().loading_bytes, 3 << 20);
        drop((first, second));

        let e = cache
            .reserve_load(&key(2), budget + 1, 0)
            .await
            .unwrap_err();
        assert!(matches!(e, CacheError::TooLarge { .. }), "{e}");
        assert_eq!(cache.stats().refused, 1);
        assert_eq!(cache.stats().loading_bytes, 0);
    }
}
