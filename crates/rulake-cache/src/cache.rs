//! The node-level partition cache: many partitions under one memory
//! budget, whole partitions evicted least-recently-used, a partition that
//! cannot fit refused *before* anything is read (admission control, so an
//! oversized collection is an error, never an out-of-memory kill), and built
//! partitions persisted to a local directory so a restart loads instead of
//! rebuilding.

use crate::error::{CacheError, Result};
use parking_lot::Mutex;
use rulake_index::PartitionIndex;
use rulake_types::Generation;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    generation: Generation,
    units: BTreeMap<String, String>,
    dim: usize,
    metric: rulake_types::Metric,
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
        Arc::new(PartitionCache {
            config,
            inner: Mutex::new(Inner::default()),
            counters: Counters::default(),
            errors: Mutex::new(BTreeMap::new()),
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

    /// Insert (or replace) a partition, evicting least-recently-used
    /// partitions until it fits.
    pub fn insert(&self, key: PartitionKey, part: Arc<CachedPartition>) -> Result<()> {
        let bytes = part.index.memory_bytes();
        self.admit(&key, bytes)?;
        let mut inner = self.inner.lock();
        if let Some(old) = inner.entries.remove(&key) {
            inner.used -= old.bytes;
        }
        while inner.used + bytes > self.config.budget_bytes {
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
                }
                None => break,
            }
        }
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
        };
        let tmp = side.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&sidecar).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &side)
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
        if &sidecar.generation != generation || sidecar.dim != dim || sidecar.metric != metric {
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
                Some(CachedPartition {
                    index,
                    generation: sidecar.generation,
                    units: sidecar.units,
                })
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
