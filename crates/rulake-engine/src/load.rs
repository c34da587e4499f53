//! How a generation of a source becomes cached partitions.
//!
//! A new generation is built whole before any of it is served: every
//! partition this engine owns is built (or read back from disk), then all
//! are swapped in under the serving lock in one step, so a query that does
//! not wait for a refresh sees all old partitions or all new ones, never a
//! mix. A partition is read from the persist directory before the lake,
//! because reloading a file is far cheaper than re-reading and re-indexing
//! the source, and persisting happens on a blocking thread after the swap:
//! a crash before it finishes costs a rebuild, never a query's latency.
//!
//! Partitions evicted from the memory cache (or newly owned by a shard
//! node) come back the same way, at the generation being served, under the
//! collection's refresh lock so no swap can interleave.
//!
//! A partition built from the lake or read from disk carries its
//! [`LoadReservation`] until it is in the cache: the bytes of a generation
//! being built count against the budget beside the one still serving,
//! since both are in memory.

use crate::registry::{Collection, Serving};
use crate::{CachedPartition, CollectionSpec, EngineError, Result, RuLake};
use rulake_cache::{
    build_partition, estimate, transient_estimate, units_of, CacheError, LoadReservation,
    PartitionKey, PartitionSpec,
};
use rulake_lake::Listing;
use rulake_types::Generation;
use std::sync::Arc;
use std::time::Instant;

/// How a load may make room in the budget for what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// Evict least-recently-used partitions as needed: a query waits on
    /// this load.
    Evict,
    /// Only budget nobody holds: background warming, which must not evict
    /// what queries use only to be evicted in turn when they come back.
    FreeOnly,
}

/// A partition built for a generation not swapped in yet.
type Built = (PartitionKey, Arc<CachedPartition>);

/// A built (or read back) partition and the budget its load holds until
/// it is inserted.
type Reserved = (Built, LoadReservation);

/// The cache key of partition `p` of a collection.
pub(crate) fn key(collection: &str, p: u32) -> PartitionKey {
    PartitionKey {
        collection: collection.to_owned(),
        partition: p,
    }
}

impl RuLake {
    /// The serving generation and every partition of a collection, loading
    /// evicted ones back (from disk when persisted, else from the lake).
    pub async fn partitions(&self, name: &str) -> Result<(Generation, Vec<Arc<CachedPartition>>)> {
        let c = self.collection(name)?;
        self.ensure_current(&c, None).await?;
        self.serving_partitions(&c).await
    }

    /// Load `listing` (a generation `c` does not serve yet) and serve it;
    /// the caller holds `c.refresh`. On failure nothing is swapped and the
    /// previous generation keeps serving.
    pub(crate) async fn load_generation(
        &self,
        c: &Arc<Collection>,
        listing: Listing,
    ) -> Result<Generation> {
        let built = self.build_generation(c, &listing).await?;
        self.record_pruned(c, &listing);
        let generation = listing.generation.clone();
        let built = self.swap_in(c, built, listing)?;
        self.persist_detached(built);
        Ok(generation)
    }

    /// Count what the standing filter's pruning spared the partitions
    /// this engine owns (a pruned row group by its unit key, a pruned file
    /// by its path, each once, where it would have been placed).
    fn record_pruned(&self, c: &Collection, listing: &Listing) {
        if listing.pruned.is_empty() {
            return;
        }
        let owned: std::collections::HashSet<u32> = self.owned(&c.spec).into_iter().collect();
        let kind = rulake_lake::io::LakeKind::of(c.source.kind());
        rulake_lake::io::record_pruned(
            kind,
            listing
                .pruned
                .iter()
                .filter(|p| owned.contains(&rulake_types::partition_of(&p.key, c.spec.partitions))),
        );
    }

    /// Every partition this engine owns of `c`, at `listing`.
    async fn build_generation(
        &self,
        c: &Arc<Collection>,
        listing: &Listing,
    ) -> Result<Vec<Reserved>> {
        let owned = self.owned(&c.spec);
        let mut built = Vec::with_capacity(owned.len());
        for p in owned {
            let pspec = self.partition_spec(&c.spec, p);
            let previous = self.inner.cache.peek(&pspec.key);
            let (part, reservation) = self.load_or_build(c, listing, &pspec, previous).await?;
            built.push(((pspec.key, part), reservation));
        }
        Ok(built)
    }

    /// Put `built` in the cache and make `listing` the serving generation.
    fn swap_in(
        &self,
        c: &Collection,
        built: Vec<Reserved>,
        listing: Listing,
    ) -> Result<Vec<Built>> {
        // The swap is one step under the serving lock: a query that does
        // not wait for the refresh sees all old partitions or all new ones.
        let mut serving = c.serving.write();
        let mut swapped = Vec::with_capacity(built.len());
        for ((k, part), reservation) in built {
            // The partition's bytes move from loading to cached.
            drop(reservation);
            self.inner
                .cache
                .insert(k.clone(), part.clone())
                .map_err(|e| self.unavailable(c, e))?;
            swapped.push((k, part));
        }
        *serving = Some(Serving {
            listing,
            checked_at: Instant::now(),
            loaded_at: std::time::SystemTime::now(),
        });
        Ok(swapped)
    }

    /// Write `built` to the persist directory (if any) on a blocking thread.
    /// One persist runs at a time (two writing one partition would share
    /// its temporary file), and a partition a newer generation replaced
    /// meanwhile is skipped: that generation persists it, and an older copy
    /// written after it would bring back rows it no longer holds.
    fn persist_detached(&self, built: Vec<Built>) {
        // Persist off the query path; a crash before it finishes only costs a rebuild.
        if self.inner.cache.persist_dir().is_some() {
            let cache = self.inner.cache.clone();
            let one_at_a_time = self.inner.persist_lock.clone();
            let task = tokio::task::spawn_blocking(move || {
                let _turn = one_at_a_time.lock();
                for (k, part) in built {
                    if cache
                        .peek(&k)
                        .is_some_and(|now| now.generation != part.generation)
                    {
                        continue;
                    }
                    if let Err(e) = cache.persist(&k, &part) {
                        tracing::warn!(partition = %k, error = %e, "could not persist partition");
                    }
                }
            });
            let mut pending = self.inner.persisting.lock();
            pending.retain(|t| !t.is_finished());
            pending.push(task);
        }
    }

    /// Wait until every generation loaded so far is persisted, so the
    /// persist directory holds no partition of a generation replaced
    /// before this call (compaction's erasure waits on this).
    pub async fn flush_persisted(&self) {
        let pending = std::mem::take(&mut *self.inner.persisting.lock());
        for task in pending {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a persist task failed");
            }
        }
    }

    /// Partition `pspec` at `listing`: read back from disk when there is
    /// no `previous` one to extend, else (or when nothing is persisted)
    /// built from the lake, extending `previous` where it can; a build
    /// comes with the budget it holds until inserted.
    async fn load_or_build(
        &self,
        c: &Collection,
        listing: &Listing,
        pspec: &PartitionSpec,
        previous: Option<Arc<CachedPartition>>,
    ) -> Result<(Arc<CachedPartition>, LoadReservation)> {
        if previous.is_none() {
            if let Some((part, reservation)) = self
                .load_from_disk(pspec, &listing.generation)
                .await
                .map_err(|e| self.unavailable(c, e))?
            {
                return Ok((part, reservation));
            }
        }
        let (part, reservation) = build_partition(
            c.source.as_ref(),
            listing,
            pspec,
            previous,
            &self.inner.cache,
        )
        .await
        .map_err(|e| self.unavailable(c, e))?;
        Ok((Arc::new(part), reservation))
    }

    /// A cache error as the engine reports it, naming the collection.
    fn unavailable(&self, c: &Collection, e: CacheError) -> EngineError {
        match EngineError::from(e) {
            EngineError::Unavailable { source, .. } => EngineError::Unavailable {
                collection: c.spec.name.clone(),
                source,
            },
            other => other,
        }
    }

    /// The persisted copy of a partition at `generation`, read on a
    /// blocking thread (`None` without a persist directory, or when there
    /// is no usable copy), with the budget it holds until inserted: the
    /// copy's size is reserved before it is read, as a build reserves its
    /// estimate, so reloading an evicted partition never takes the node
    /// past its budget.
    async fn load_from_disk(
        &self,
        pspec: &PartitionSpec,
        generation: &Generation,
    ) -> std::result::Result<Option<(Arc<CachedPartition>, LoadReservation)>, CacheError> {
        let Some(bytes) = self.inner.cache.persisted_bytes(&pspec.key, generation) else {
            return Ok(None);
        };
        let mut reservation = self.inner.cache.reserve_load(&pspec.key, bytes, 0).await?;
        let cache = self.inner.cache.clone();
        let (spec, g) = (pspec.clone(), generation.clone());
        let part = tokio::task::spawn_blocking(move || cache.load_persisted(&spec, &g))
            .await
            .ok()
            .flatten();
        Ok(part.map(|part| {
            reservation.settle(part.memory_bytes());
            (Arc::new(part), reservation)
        }))
    }

    fn partition_spec(&self, spec: &CollectionSpec, p: u32) -> PartitionSpec {
        PartitionSpec {
            key: key(&spec.name, p),
            partitions: spec.partitions,
            dim: spec.dim,
            metric: spec.metric,
            build: spec.build,
            target_recall: spec.target_recall,
            rerank: spec.rerank,
            payload_columns: spec.payload_columns.clone(),
            standing_filter: spec.standing_filter.clone(),
        }
    }

    pub(crate) async fn serving_partitions(
        &self,
        c: &Arc<Collection>,
    ) -> Result<(Generation, Vec<Arc<CachedPartition>>)> {
        let (g, _, parts) = self.serving_owned(c).await?;
        Ok((g, parts))
    }

    /// The serving generation, the partition numbers served here and their
    /// partitions, loading evicted or newly owned ones (from disk when
    /// persisted, else from the lake).
    pub(crate) async fn serving_owned(
        &self,
        c: &Arc<Collection>,
    ) -> Result<(Generation, Vec<u32>, Vec<Arc<CachedPartition>>)> {
        self.serving_of(c, self.owned(&c.spec), Room::Evict).await
    }

    /// As [`RuLake::serving_owned`], for the partitions `numbers` only: the
    /// others, cached or not, are neither returned nor loaded. With
    /// [`Room::FreeOnly`], a partition that does not fit the free budget is
    /// left cold, and neither returned nor loaded either.
    pub(crate) async fn serving_of(
        &self,
        c: &Arc<Collection>,
        numbers: Vec<u32>,
        room: Room,
    ) -> Result<(Generation, Vec<u32>, Vec<Arc<CachedPartition>>)> {
        let (mut generation, mut parts, mut missing) = self.snapshot(c, &numbers, true);
        if !missing.is_empty() {
            let _guard = c.refresh.lock().await;
            // Under the refresh lock no swap can happen: take the snapshot
            // again, so what was cached and what is loaded now are of one
            // generation (not counted again: the first look counted).
            (generation, parts, missing) = self.snapshot(c, &numbers, false);
            let listing = c
                .serving
                .read()
                .as_ref()
                .map(|s| s.listing.clone())
                .unwrap_or_default();
            for (i, p) in missing {
                let pspec = self.partition_spec(&c.spec, p);
                if room == Room::FreeOnly {
                    let needs = self.load_bytes(&listing, &pspec);
                    if !self.inner.cache.fits_without_evicting(needs) {
                        tracing::debug!(partition = %pspec.key, needs, "left cold: no free budget");
                        continue;
                    }
                }
                let (part, reservation) = self.load_or_build(c, &listing, &pspec, None).await?;
                drop(reservation);
                self.inner
                    .cache
                    .insert(pspec.key.clone(), part.clone())
                    .map_err(|e| self.unavailable(c, e))?;
                parts[i] = Some(part);
            }
        }
        let (numbers, parts) = numbers
            .into_iter()
            .zip(parts)
            .filter_map(|(n, p)| Some((n, p?)))
            .unzip();
        Ok((generation, numbers, parts))
    }

    /// Budget a load of `pspec` at `listing` reserves: its persisted
    /// copy's size when one of that generation is on disk, else the
    /// build's estimate and transient buffers.
    fn load_bytes(&self, listing: &Listing, pspec: &PartitionSpec) -> usize {
        let cache = &self.inner.cache;
        cache
            .persisted_bytes(&pspec.key, &listing.generation)
            .unwrap_or_else(|| {
                let units = units_of(listing, pspec.key.partition, pspec.partitions);
                estimate(&units, pspec.dim) + transient_estimate(&units, pspec.dim)
            })
    }

    /// The serving generation and the cached partitions among `numbers`,
    /// read under the serving lock (so of one generation), with the
    /// positions and numbers of those not cached; `count` records the
    /// looks as cache hits and misses.
    #[allow(clippy::type_complexity)]
    fn snapshot(
        &self,
        c: &Collection,
        numbers: &[u32],
        count: bool,
    ) -> (
        Generation,
        Vec<Option<Arc<CachedPartition>>>,
        Vec<(usize, u32)>,
    ) {
        let serving = c.serving.read();
        let generation = serving
            .as_ref()
            .map(|s| s.listing.generation.clone())
            .unwrap_or_default();
        let mut missing = Vec::new();
        let parts = numbers
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let k = key(&c.spec.name, p);
                let part = if count {
                    self.inner.cache.get(&k)
                } else {
                    self.inner.cache.peek(&k)
                };
                if part.is_none() {
                    missing.push((i, p));
                }
                part
            })
            .collect();
        (generation, parts, missing)
    }
}
