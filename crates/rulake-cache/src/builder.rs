//! Building a partition from the lake: read only the units that hash to
//! this partition, extend the previous build when the source only gained
//! units, rebuild otherwise.
//!
//! Incremental or full: if every unit the previous build holds is still
//! listed with the same version, the new units' rows are assigned to the
//! existing lists; if a unit vanished or changed (a rewrite, a delete, a
//! compaction), or the quantizer has drifted ([`rulake_index::Drift`]), the
//! partition is rebuilt and retrained. Either way the result is a new
//! partition; the caller swaps it in only when it is complete, so the old
//! one serves until then and a failed build leaves it untouched.
//!
//! Index work runs on a rayon pool of its own ([`build_pool`]): on the
//! global pool a build of many seconds would queue every search behind it,
//! and a node loading a new generation could not answer even from the
//! partitions it has warm.
//!
//! A standing filter ([`PartitionSpec::standing_filter`]) keeps only the
//! rows that match it: the listing has already left out the files and row
//! groups whose statistics rule every row out (`rulake-lake`), and the rows
//! of the units read are filtered here, batch by batch, before they reach
//! the index. The filter's columns are read with the payload columns even
//! when the collection does not keep them.
//!
//! Memory: a build reserves its partition's estimate plus its transient
//! buffers ([`transient_estimate`]) against the cache budget before it reads
//! anything ([`PartitionCache::reserve_load`]). Rows are decoded batch by
//! batch straight into one vector buffer sized from the units' row counts,
//! and that buffer becomes the index's own copy of the vectors: no second
//! copy of the floats and no reallocation while reading. What reading frees
//! is handed back to the kernel every few MiB ([`memory::release_freed`]),
//! not left to the allocator's decay.

use crate::cache::{CachedPartition, LoadReservation, PartitionCache, PartitionKey};
use crate::error::{CacheError, Result};
use crate::memory;
use futures::TryStreamExt;
use rulake_index::{default_nlist, BuildParams, PartitionIndex};
use rulake_lake::{Listing, Source, Unit};
use rulake_types::{partition_of, Column, Filter, Metric, Payload, VectorId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The rayon pool partition builds run on, apart from the global pool that
/// searches use; as many threads as cores, so both share the machine.
fn build_pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("rulake-build-{i}"))
            .build()
            .expect("a thread pool for partition builds")
    })
}

/// Run index work for `spec`'s partition on the build pool, off the async
/// runtime.
async fn on_build_pool<T: Send + 'static>(
    spec: &PartitionSpec,
    work: impl FnOnce() -> std::result::Result<T, rulake_index::IndexError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || build_pool().install(work))
        .await
        .map_err(|e| CacheError::Task {
            partition: spec.key.to_string(),
            message: e.to_string(),
        })?
        .map_err(|source| CacheError::Index {
            partition: spec.key.to_string(),
            source,
        })
}

/// What a partition is and how to build it.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    /// Which partition.
    pub key: PartitionKey,
    /// Partitions of the collection (`P`).
    pub partitions: u32,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// Index build parameters.
    pub build: BuildParams,
    /// Recall@10 the partition's default search must reach: a new build
    /// calibrates its probes for it ([`PartitionIndex::calibrate`]).
    pub target_recall: f32,
    /// The collection's rerank factor, which calibration searches with.
    pub rerank: usize,
    /// Payload columns read beside ids and vectors and kept by row
    /// position ([`CachedPartition::payload`]).
    pub payload_columns: Vec<String>,
    /// Rows not matching this filter are never kept (see the module docs).
    pub standing_filter: Option<Filter>,
}

impl PartitionSpec {
    /// Calibrate `index` for this spec's target unless it already is
    /// (a persisted partition of an earlier release, or of another
    /// target, is not). Runs on the calling thread and rayon's pool.
    pub fn tune(&self, index: &mut PartitionIndex) -> rulake_index::Result<()> {
        let current = index
            .tuning()
            .is_some_and(|t| t.target == self.target_recall && t.rerank == self.rerank);
        if !current {
            let t = index.calibrate(self.target_recall, self.rerank)?;
            tracing::debug!(
                partition = %self.key,
                target = t.target,
                nprobe = t.nprobe,
                recall = t.recall,
                samples = t.samples,
                "partition calibrated"
            );
        }
        Ok(())
    }
}

/// The units of `listing` that belong to partition `p` of `partitions`.
pub fn units_of(listing: &Listing, p: u32, partitions: u32) -> Vec<Unit> {
    listing
        .units
        .iter()
        .filter(|u| partition_of(&u.key, partitions) == p)
        .cloned()
        .collect()
}

/// Bytes of vectors read between two returns of freed memory to the
/// kernel ([`memory::release_freed`]): reading frees a few times this in
/// fetched pages and decoded arrays, which is what stays resident at most.
const RELEASE_EVERY_BYTES: usize = 4 << 20;

/// Rough bytes per id for admission estimates.
const ID_BYTES_ESTIMATE: usize = 16;

/// Estimated bytes of a partition holding `units`.
pub fn estimate(units: &[Unit], dim: usize) -> usize {
    let rows: u64 = units.iter().map(|u| u.rows).sum();
    PartitionIndex::estimate_bytes(rows as usize, dim, ID_BYTES_ESTIMATE)
}

/// Bytes a build holds beside the partition it makes, while it runs: the
/// largest unit's vectors as fetched (a row group whose file has no page
/// index is fetched whole; with one, the Parquet reader fetches slices), the
/// per-row codes before they join their lists, and the k-means training
/// sample.
pub fn transient_estimate(units: &[Unit], dim: usize) -> usize {
    let rows: usize = units.iter().map(|u| u.rows as usize).sum();
    let largest = units.iter().map(|u| u.rows as usize).max().unwrap_or(0);
    let sample = (default_nlist(rows) * BuildParams::default().sample_per_list).min(rows);
    largest * dim * 4 + rows * (dim + dim.div_ceil(64) * 8 + 64) + sample * dim * 4
}

/// What reading a partition's units gives: ids, vectors and payload
/// columns, row for row.
type Rows = (Vec<VectorId>, Vec<f32>, Payload);

async fn read_units(
    source: &dyn Source,
    units: &[Unit],
    spec: &PartitionSpec,
    mut seen: HashMap<VectorId, String>,
) -> Result<Rows> {
    // Sized once from the listed row counts (admission has checked them
    // against the budget), so reading never reallocates and copies.
    let rows: usize = units.iter().map(|u| u.rows as usize).sum();
    let mut ids = Vec::with_capacity(rows);
    let mut vectors = Vec::with_capacity(rows * spec.dim);
    let mut payload = Payload::new(&spec.payload_columns);
    let mut unreleased = 0usize;
    // The payload columns, then the filter's columns the payload lacks.
    let mut read = spec.payload_columns.clone();
    if let Some(f) = &spec.standing_filter {
        for c in f.columns() {
            if !read.iter().any(|r| r == c) {
                read.push(c.to_owned());
            }
        }
    }
    for unit in units {
        let mut stream = source.read_unit_columns(unit, spec.dim, &read);
        while let Some(mut batch) = stream.try_next().await.map_err(|source| CacheError::Lake {
            partition: spec.key.to_string(),
            source: Box::new(source),
        })? {
            if let Some(f) = &spec.standing_filter {
                keep_matching(&mut batch, f, spec.dim).map_err(|message| CacheError::Payload {
                    partition: spec.key.to_string(),
                    unit: unit.key.clone(),
                    message: format!("standing filter: {message}"),
                })?;
            }
            batch.payload.truncate(spec.payload_columns.len());
            for id in &batch.ids {
                if let Some(first) = seen.insert(id.clone(), unit.key.clone()) {
                    return Err(CacheError::DuplicateId {
                        partition: spec.key.to_string(),
                        id: id.to_string(),
                        first,
                        second: unit.key.clone(),
                    });
                }
            }
            unreleased += batch.vectors.len() * 4;
            ids.extend(batch.ids);
            vectors.extend(batch.vectors);
            if !spec.payload_columns.is_empty() {
                payload
                    .append(batch.payload)
                    .map_err(|message| CacheError::Payload {
                        partition: spec.key.to_string(),
                        unit: unit.key.clone(),
                        message,
                    })?;
            }
            if unreleased >= RELEASE_EVERY_BYTES {
                memory::release_freed();
                unreleased = 0;
            }
        }
    }
    memory::release_freed();
    Ok((ids, vectors, payload))
}

/// Drop the rows of `batch` that do not match `filter` (its payload holds
/// every column the filter reads).
fn keep_matching(
    batch: &mut rulake_lake::RowBatch,
    filter: &Filter,
    dim: usize,
) -> std::result::Result<(), String> {
    let columns = Payload {
        columns: std::mem::take(&mut batch.payload),
    };
    let keep: Vec<bool> = {
        let bound = filter.bind(&columns).map_err(|e| e.to_string())?;
        (0..batch.len()).map(|i| bound.matches(i)).collect()
    };
    if keep.iter().all(|k| *k) {
        batch.payload = columns.columns;
        return Ok(());
    }
    let mut row = 0;
    batch.ids.retain(|_| {
        row += 1;
        keep[row - 1]
    });
    let mut vectors = Vec::with_capacity(batch.ids.len() * dim);
    for (i, v) in batch.vectors.chunks_exact(dim).enumerate() {
        if keep[i] {
            vectors.extend_from_slice(v);
        }
    }
    batch.vectors = vectors;
    batch.payload = columns
        .columns
        .into_iter()
        .map(|c| Column {
            values: c
                .values
                .into_iter()
                .zip(&keep)
                .filter_map(|(v, k)| k.then_some(v))
                .collect(),
            ..c
        })
        .collect();
    Ok(())
}

/// Build partition `spec.key` for `listing`, extending `previous` when the
/// source only gained units. Reserves its memory against `cache` first and
/// returns the reservation, settled to the partition's size: drop it just
/// before inserting the partition.
pub async fn build_partition(
    source: &dyn Source,
    listing: &Listing,
    spec: &PartitionSpec,
    previous: Option<Arc<CachedPartition>>,
    cache: &PartitionCache,
) -> Result<(CachedPartition, LoadReservation)> {
    let mine = units_of(listing, spec.key.partition, spec.partitions);
    let mut reservation = cache
        .reserve_load(
            &spec.key,
            estimate(&mine, spec.dim),
            transient_estimate(&mine, spec.dim),
        )
        .await?;
    let part = build_reserved(source, listing, spec, previous, cache, mine).await?;
    reservation.settle(part.memory_bytes());
    Ok((part, reservation))
}

async fn build_reserved(
    source: &dyn Source,
    listing: &Listing,
    spec: &PartitionSpec,
    previous: Option<Arc<CachedPartition>>,
    cache: &PartitionCache,
    mine: Vec<Unit>,
) -> Result<CachedPartition> {
    let started = Instant::now();
    let units: BTreeMap<String, String> = mine
        .iter()
        .map(|u| (u.key.clone(), u.version.clone()))
        .collect();

    let reusable = previous.filter(|prev| {
        prev.index.dim() == spec.dim
            && prev.index.metric() == spec.metric
            && prev.payload.names() == spec.payload_columns
            && prev.standing == spec.standing_filter
            && prev.units.iter().all(|(k, v)| units.get(k) == Some(v))
            && !prev.index.drift().needs_retrain()
    });
    let (index, payload, incremental) = match reusable {
        Some(prev) if prev.units == units => {
            // Same units: only the generation moved (another partition changed).
            return Ok(CachedPartition {
                index: prev.index.clone(),
                generation: listing.generation.clone(),
                units,
                payload: prev.payload.clone(),
                zones: prev.zones.clone(),
                standing: prev.standing.clone(),
            });
        }
        // An empty previous index has no trained centroids or quantizer (one
        // zero centroid): rows appended to it would all be served through one
        // untrained list. Its first rows get a full build instead.
        Some(prev) if !prev.index.is_empty() => {
            let added: Vec<Unit> = mine
                .iter()
                .filter(|u| !prev.units.contains_key(&u.key))
                .cloned()
                .collect();
            let ids = prev.index.ids();
            let seen: HashMap<VectorId, String> = (0..ids.len() as u32)
                .map(|p| (ids.get(p), "an earlier unit".to_owned()))
                .collect();
            let (new_ids, vectors, added_payload) = read_units(source, &added, spec, seen).await?;
            let mut payload = prev.payload.clone();
            if !spec.payload_columns.is_empty() {
                payload
                    .append(added_payload.columns)
                    .map_err(|message| CacheError::Payload {
                        partition: spec.key.to_string(),
                        unit: "an added unit".into(),
                        message,
                    })?;
            }
            let mut index = prev.index.clone();
            let index =
                on_build_pool(spec, move || index.add(new_ids, vectors).map(|_| index)).await?;
            (index, payload, true)
        }
        _ => {
            let (ids, vectors, payload) = read_units(source, &mine, spec, HashMap::new()).await?;
            let (dim, metric, build) = (spec.dim, spec.metric, spec.build);
            let tuned = spec.clone();
            let index = on_build_pool(spec, move || {
                let mut index = PartitionIndex::build(dim, metric, ids, vectors, build)?;
                tuned.tune(&mut index)?;
                Ok(index)
            })
            .await?;
            (index, payload, false)
        }
    };
    // The build's own buffers (training sample, per-chunk codes) are freed.
    memory::release_freed();
    cache.record_build(started.elapsed(), incremental);
    tracing::info!(
        partition = %spec.key,
        rows = index.len(),
        incremental,
        seconds = started.elapsed().as_secs_f64(),
        "partition built"
    );
    Ok(CachedPartition::new(
        index,
        listing.generation.clone(),
        units,
        payload,
        spec.standing_filter.clone(),
    ))
}
