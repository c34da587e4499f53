//! Scrape-time metrics of the embedded engine: the partition cache, each
//! collection's warm partitions, query fan-out and the live recall
//! estimate.
//!
//! The engine already counts all of this; [`EngineCollector`] reads those
//! counters when Prometheus scrapes and never counts anything itself, so a
//! value cannot drift from what `CacheStats` (the `CacheStats` RPC) says.
//! Collection-labelled series exist exactly for the collections that exist
//! at scrape time: a dropped collection's series disappear with it.
//!
//! In one process every query reaches every partition, so retries, hedges
//! and partial answers stay zero; a coordinator over shard nodes passes its
//! fan-out counters with [`EngineCollector::with_fanout`] and they replace
//! the engine's.

use crate::http::NotReady;
use crate::Result;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use rulake_engine::RuLake;
use std::sync::Mutex;

struct Families {
    hits: IntCounter,
    misses: IntCounter,
    evictions: IntCounter,
    refused: IntCounter,
    builds: IntCounter,
    incremental: IntCounter,
    build_seconds: Counter,
    disk_loads: IntCounter,
    bytes: IntGauge,
    budget: IntGauge,
    loading: IntGauge,
    resident: IntGauge,
    peak: IntGauge,
    partitions: IntGauge,
    errors: IntGauge,
    coll_partitions: IntGaugeVec,
    coll_warm: IntGaugeVec,
    coll_vectors: IntGaugeVec,
    coll_source_error: IntGaugeVec,
    queries: IntCounter,
    searched: IntCounter,
    partial: IntCounter,
    retries: IntCounter,
    hedges: IntCounter,
    recall: GaugeVec,
    recall_target: GaugeVec,
    probe_factor: GaugeVec,
    recall_samples: IntGaugeVec,
    recall_sampled: IntCounter,
    recall_dropped: IntCounterVec,
    recall_measured: IntCounter,
    recall_failed: IntCounter,
}

impl Families {
    fn collectors(&self) -> Vec<&dyn Collector> {
        vec![
            &self.hits,
            &self.misses,
            &self.evictions,
            &self.refused,
            &self.builds,
            &self.incremental,
            &self.build_seconds,
            &self.disk_loads,
            &self.bytes,
            &self.budget,
            &self.loading,
            &self.resident,
            &self.peak,
            &self.partitions,
            &self.errors,
            &self.coll_partitions,
            &self.coll_warm,
            &self.coll_vectors,
            &self.coll_source_error,
            &self.queries,
            &self.searched,
            &self.partial,
            &self.retries,
            &self.hedges,
            &self.recall,
            &self.recall_target,
            &self.probe_factor,
            &self.recall_samples,
            &self.recall_sampled,
            &self.recall_dropped,
            &self.recall_measured,
            &self.recall_failed,
        ]
    }
}

fn set_counter(c: &IntCounter, v: u64) {
    c.reset();
    c.inc_by(v);
}

/// Query fan-out counters of a coordinator over shard nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fanout {
    /// Queries answered (each query of a batch counts).
    pub queries: u64,
    /// Partitions asked, summed over queries.
    pub searched: u64,
    /// Answers that missed a partition.
    pub partial: u64,
    /// Shard calls retried on another replica.
    pub retries: u64,
    /// Shard calls duplicated because they were slow.
    pub hedges: u64,
}

type FanoutFn = Box<dyn Fn() -> Fanout + Send + Sync>;

/// Reads the engine's counters at scrape time (see the module docs).
pub struct EngineCollector {
    engine: RuLake,
    families: Mutex<Families>,
    descs: Vec<Desc>,
    fanout: Option<FanoutFn>,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCollector").finish_non_exhaustive()
    }
}

impl EngineCollector {
    /// A collector over `engine` (register it with [`crate::Metrics::register`]).
    pub fn new(engine: RuLake) -> Result<Self> {
        let c = |name: &str, help: &str| IntCounter::new(name, help);
        let g = |name: &str, help: &str| IntGauge::new(name, help);
        let per_collection =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["collection"]);
        let families = Families {
            hits: c("cache_hits_total", "Partition lookups served from memory.")?,
            misses: c("cache_misses_total", "Partition lookups that had to load or build the partition.")?,
            evictions: c("cache_evictions_total", "Partitions evicted (least recently used) to make room.")?,
            refused: c("cache_admission_refusals_total", "Partitions refused because they cannot fit the budget.")?,
            builds: c("cache_builds_total", "Partitions built from the lake (full or incremental).")?,
            incremental: c("cache_incremental_builds_total", "Of the builds, incremental extensions of a cached partition.")?,
            build_seconds: Counter::new("cache_build_seconds_total", "Time spent building partitions from the lake.")?,
            disk_loads: c("cache_disk_loads_total", "Partitions loaded from the local persist directory instead of rebuilt.")?,
            bytes: g("cache_bytes", "Bytes of partitions held in memory.")?,
            budget: g("cache_budget_bytes", "The cache's memory budget.")?,
            loading: g("cache_loading_bytes", "Bytes loads in flight hold against the budget: read buffers and partitions built but not yet cached.")?,
            resident: g("process_resident_bytes", "Resident memory of the process (VmRSS), to compare with cache_bytes.")?,
            peak: g("process_peak_resident_bytes", "Peak resident memory of the process since it started (VmHWM).")?,
            partitions: g("cache_partitions", "Partitions held in memory.")?,
            errors: g("cache_unresolved_errors", "Partitions or collections whose last load or refresh failed and has not succeeded since.")?,
            coll_partitions: per_collection("collection_partitions", "Partitions of the collection (P).")?,
            coll_warm: per_collection("collection_partitions_warm", "Partitions of the collection held in memory now.")?,
            coll_vectors: per_collection("collection_vectors_cached", "Live vectors of the collection held in memory.")?,
            coll_source_error: per_collection("collection_source_error", "1 while the collection's last source check or refresh failed (the previous generation keeps serving).")?,
            queries: c("search_queries_total", "Queries answered (each query of a batch counts).")?,
            searched: c("search_partitions_searched_total", "Partitions searched, summed over queries: divided by queries, the mean fan-out width.")?,
            partial: c("search_partial_answers_total", "Answers from fewer partitions than the collection has (flagged to the client).")?,
            retries: c("search_retries_total", "Shard calls retried on another replica (zero in one process).")?,
            hedges: c("search_hedges_total", "Shard calls duplicated on another replica because the first was slow (zero in one process).")?,
            recall: GaugeVec::new(
                Opts::new("recall_estimate", "Measured recall@k of live queries: mean over the latest sampled queries of the share of the exact top-k found."),
                &["collection"],
            )?,
            recall_target: GaugeVec::new(
                Opts::new("recall_target", "Recall@10 the collection's default searches aim for (each partition calibrates its probes for it)."),
                &["collection"],
            )?,
            probe_factor: GaugeVec::new(
                Opts::new("recall_probe_factor", "Factor on the calibrated probes that live re-tuning applied because measured recall fell below the target (1 = as calibrated)."),
                &["collection"],
            )?,
            recall_samples: per_collection("recall_window_samples", "Sampled queries the recall estimate averages over.")?,
            recall_sampled: c("recall_sampled_total", "Queries picked for recall measurement.")?,
            recall_dropped: IntCounterVec::new(
                Opts::new("recall_dropped_total", "Picked queries not measured, by reason (budget: scans per second spent; queue_full)."),
                &["reason"],
            )?,
            recall_measured: c("recall_measured_total", "Exact scans finished for recall measurement.")?,
            recall_failed: c("recall_failed_total", "Exact scans for recall measurement that failed.")?,
        };
        let descs = families
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(EngineCollector {
            engine,
            families: Mutex::new(families),
            descs,
            fanout: None,
        })
    }

    /// Read the query counters from `fanout` (a coordinator's router)
    /// instead of the engine.
    pub fn with_fanout(mut self, fanout: impl Fn() -> Fanout + Send + Sync + 'static) -> Self {
        self.fanout = Some(Box::new(fanout));
        self
    }
}

impl Families {
    /// The partition cache: `cache_*`.
    fn read_cache(&self, e: &RuLake) {
        let s = e.cache_stats();
        set_counter(&self.hits, s.hits);
        set_counter(&self.misses, s.misses);
        set_counter(&self.evictions, s.evictions);
        set_counter(&self.refused, s.refused);
        set_counter(&self.builds, s.builds);
        set_counter(&self.incremental, s.incremental_builds);
        self.build_seconds.reset();
        self.build_seconds.inc_by(s.build_seconds);
        set_counter(&self.disk_loads, s.disk_loads);
        self.bytes.set(s.bytes as i64);
        self.budget.set(s.budget_bytes as i64);
        self.loading.set(s.loading_bytes as i64);
        self.resident.set(s.resident_bytes as i64);
        self.peak.set(s.peak_resident_bytes as i64);
        self.partitions.set(s.partitions as i64);
        self.errors.set(s.errors.len() as i64);
    }

    /// The collection-labelled series, `collection_*` and the recall
    /// estimate: reset first, so only collections that exist now have one.
    fn read_collections(&self, e: &RuLake) {
        for v in [
            &self.coll_partitions,
            &self.coll_warm,
            &self.coll_vectors,
            &self.coll_source_error,
            &self.recall_samples,
        ] {
            v.reset();
        }
        for v in [&self.recall, &self.recall_target, &self.probe_factor] {
            v.reset();
        }
        let recall = e.recall_estimates();
        for name in e.list_collections() {
            // Dropped between listing and describing: leave it out.
            let Ok(info) = e.describe(&name) else {
                continue;
            };
            let l = [name.as_str()];
            self.coll_partitions
                .with_label_values(&l)
                .set(i64::from(info.spec.partitions));
            self.coll_warm
                .with_label_values(&l)
                .set(i64::from(info.partitions_warm));
            self.coll_vectors
                .with_label_values(&l)
                .set(info.vectors_cached as i64);
            self.coll_source_error
                .with_label_values(&l)
                .set(i64::from(info.last_error.is_some()));
            self.recall_target
                .with_label_values(&l)
                .set(f64::from(info.spec.target_recall));
            self.probe_factor
                .with_label_values(&l)
                .set(f64::from(info.probe_factor));
            if let Some(r) = recall.get(&name) {
                self.recall.with_label_values(&l).set(r.recall);
                self.recall_samples
                    .with_label_values(&l)
                    .set(r.samples as i64);
            }
        }
    }

    /// Query fan-out, `search_*`: a coordinator's counters when it passed
    /// them, else the engine's (retries and hedges then stay zero).
    fn read_fanout(&self, e: &RuLake, fanout: Option<&FanoutFn>) {
        match fanout {
            Some(fan) => {
                let q = fan();
                set_counter(&self.queries, q.queries);
                set_counter(&self.searched, q.searched);
                set_counter(&self.partial, q.partial);
                set_counter(&self.retries, q.retries);
                set_counter(&self.hedges, q.hedges);
            }
            None => {
                let q = e.query_stats();
                set_counter(&self.queries, q.queries);
                set_counter(&self.searched, q.partitions_searched);
                set_counter(&self.partial, q.partial_answers);
            }
        }
    }

    /// The recall monitor's own counters, `recall_*_total`.
    fn read_recall_monitor(&self, e: &RuLake) {
        let r = e.recall_stats();
        set_counter(&self.recall_sampled, r.sampled);
        set_counter(
            &self.recall_dropped.with_label_values(&["budget"]),
            r.dropped_budget,
        );
        set_counter(
            &self.recall_dropped.with_label_values(&["queue_full"]),
            r.dropped_queue_full,
        );
        set_counter(&self.recall_measured, r.measured);
        set_counter(&self.recall_failed, r.failed);
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let e = &self.engine;
        f.read_cache(e);
        f.read_collections(e);
        f.read_fanout(e, self.fanout.as_ref());
        f.read_recall_monitor(e);
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

/// Readiness of the shard role in one process: every collection has
/// finished its first load, so each of its partitions was built (or loaded
/// from disk) at least once and queries do not wait for a build. Later
/// evictions under a tight budget do not make the node unready (that would
/// take the only copy out of service); they show in
/// `rulake_collection_partitions_warm` and its alert instead. Each
/// collection not loaded yet counts once; the details (names, load errors)
/// are for the log only.
pub fn shard_ready(engine: &RuLake) -> std::result::Result<(), NotReady> {
    let mut waiting = Vec::new();
    for name in engine.list_collections() {
        let Ok(info) = engine.describe(&name) else {
            continue;
        };
        if info.generation.is_none() {
            waiting.push(match info.last_error {
                Some(e) => format!("collection {name:?}: first load failed: {e}"),
                None => format!(
                    "collection {name:?}: {} of {} partitions warm",
                    info.partitions_warm, info.spec.partitions
                ),
            });
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(NotReady {
            waiting: waiting.len(),
            detail: waiting.join("; "),
        })
    }
}
