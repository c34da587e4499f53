//! Recall you can see: the engine measures its own recall on live traffic.
//!
//! A configurable fraction of searches ([`RecallConfig::sample_fraction`],
//! default 1 %, zero disables) is answered a second time by an exact scan of
//! the very partitions that answered it, and recall@k — the share of the
//! exact top-k the approximate answer found — is kept per collection as the
//! mean of the last [`RecallConfig::window`] samples. An operator sees
//! recall drift when data, partitioning or search settings change, without
//! running a benchmark.
//!
//! The exact scan is off the query's path and bounded: a sampled query is
//! handed to one background thread through a bounded queue (a full queue
//! drops the sample), and a token bucket caps exact scans per second
//! ([`RecallConfig::max_scans_per_second`]; a sample over budget is
//! dropped before it is queued). An exact scan costs a pass over every
//! vector of the collection, so the budget is what keeps the measurement's
//! CPU share small on large collections; dropped samples are counted.
//! Queued samples hold their partitions until scanned, so at most
//! [`RecallConfig::queue`] samples keep evicted partitions in memory.
//!
//! Sampling is deterministic (every `1/fraction`-th search), so a test with
//! fraction 1 measures every query.

use crate::retune::Retune;
use crate::CachedPartition;
use parking_lot::Mutex;
use rulake_types::{merge_topk, Hit, VectorId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// How live recall is measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecallConfig {
    /// Share of searches re-answered exactly, in `[0, 1]`; 0 disables.
    pub sample_fraction: f64,
    /// Samples waiting for the background scan at most.
    pub queue: usize,
    /// Exact scans started per second at most (a token bucket holding one
    /// second's worth, at least one scan); 0 starts none.
    pub max_scans_per_second: f64,
    /// Samples per collection the estimate averages over (the latest).
    pub window: usize,
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            sample_fraction: 0.01,
            queue: 64,
            max_scans_per_second: 10.0,
            window: 1000,
        }
    }
}

/// One collection's measured recall.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecallEstimate {
    /// Mean recall@k over the samples in the window, in `[0, 1]`.
    pub recall: f64,
    /// Samples in the window.
    pub samples: usize,
    /// Samples measured since the collection was created.
    pub measured: u64,
}

/// Counters of the recall monitor as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecallStats {
    /// Searches picked for measurement.
    pub sampled: u64,
    /// Picked, but dropped because the scan budget was spent.
    pub dropped_budget: u64,
    /// Picked, but dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Exact scans finished.
    pub measured: u64,
    /// Exact scans that failed (none expected; counted rather than hidden).
    pub failed: u64,
}

/// Searches and how widely they fanned out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueryStats {
    /// Queries answered (a batch counts each query).
    pub queries: u64,
    /// Partitions searched, summed over queries (fan-out width).
    pub partitions_searched: u64,
    /// Answers that came from fewer partitions than the collection has.
    pub partial_answers: u64,
}

#[derive(Default)]
pub(crate) struct QueryCounters {
    queries: AtomicU64,
    partitions: AtomicU64,
    partial: AtomicU64,
}

impl QueryCounters {
    pub(crate) fn record(&self, queries: usize, answered: u32, total: u32) {
        let q = queries as u64;
        self.queries.fetch_add(q, Ordering::Relaxed);
        self.partitions
            .fetch_add(q * u64::from(answered), Ordering::Relaxed);
        if answered < total {
            self.partial.fetch_add(q, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::Relaxed),
            partitions_searched: self.partitions.load(Ordering::Relaxed),
            partial_answers: self.partial.load(Ordering::Relaxed),
        }
    }
}

struct Sample {
    collection: String,
    query: Vec<f32>,
    k: usize,
    found: Vec<VectorId>,
    parts: Vec<Arc<CachedPartition>>,
    /// Deleted positions per partition, skipped by the exact scan too.
    masks: Vec<Arc<Vec<u64>>>,
    /// Where an answer searched at the defaults counts toward re-tuning.
    retune: Option<Arc<Retune>>,
}

#[derive(Default)]
struct Window {
    values: VecDeque<f64>,
    sum: f64,
    measured: u64,
}

#[derive(Default)]
struct Shared {
    windows: Mutex<HashMap<String, Window>>,
    measured: AtomicU64,
    failed: AtomicU64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The sampler, the budget and the estimates of one engine.
pub(crate) struct RecallMonitor {
    config: Mutex<RecallConfig>,
    seen: AtomicU64,
    sampled: AtomicU64,
    dropped_budget: AtomicU64,
    dropped_queue: AtomicU64,
    bucket: Mutex<Bucket>,
    sender: Mutex<Option<SyncSender<Sample>>>,
    shared: Arc<Shared>,
}

impl RecallMonitor {
    pub(crate) fn new(config: RecallConfig) -> Self {
        RecallMonitor {
            config: Mutex::new(sanitize(config)),
            seen: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            dropped_budget: AtomicU64::new(0),
            dropped_queue: AtomicU64::new(0),
            bucket: Mutex::new(Bucket {
                tokens: bucket_size(config.max_scans_per_second),
                at: Instant::now(),
            }),
            sender: Mutex::new(None),
            shared: Arc::default(),
        }
    }

    pub(crate) fn config(&self) -> RecallConfig {
        *self.config.lock()
    }

    /// Replace the configuration; the queue length applies from the next
    /// start of the background thread (the first sample).
    pub(crate) fn set_config(&self, config: RecallConfig) {
        *self.config.lock() = sanitize(config);
    }

    /// Consider one answered query for measurement.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer(
        &self,
        collection: &str,
        query: &[f32],
        hits: &[Hit],
        parts: &[Arc<CachedPartition>],
        masks: &[Arc<Vec<u64>>],
        k: usize,
        retune: Option<&Arc<Retune>>,
    ) {
        let config = self.config();
        if config.sample_fraction <= 0.0 {
            return;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        let f = config.sample_fraction;
        if ((n + 1.0) * f).floor() <= (n * f).floor() {
            return;
        }
        self.sampled.fetch_add(1, Ordering::Relaxed);
        if !self.take_token(config.max_scans_per_second) {
            self.dropped_budget.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sample = Sample {
            collection: collection.to_owned(),
            query: query.to_vec(),
            k,
            found: hits.iter().map(|h| h.id.clone()).collect(),
            parts: parts.to_vec(),
            masks: masks.to_vec(),
            retune: retune.cloned(),
        };
        let mut sender = self.sender.lock();
        let tx = sender.get_or_insert_with(|| self.start(config));
        match tx.try_send(sample) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(s)) => {
                // The thread is gone (it never panics on purpose; if it
                // did, start another rather than stop measuring).
                let tx = self.start(config);
                if tx.try_send(s).is_err() {
                    self.dropped_queue.fetch_add(1, Ordering::Relaxed);
                }
                *sender = Some(tx);
            }
        }
    }

    fn take_token(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut b = self.bucket.lock();
        let now = Instant::now();
        let cap = bucket_size(rate);
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn start(&self, config: RecallConfig) -> SyncSender<Sample> {
        let (tx, rx) = sync_channel::<Sample>(config.queue);
        let shared = self.shared.clone();
        let window = config.window;
        let spawned = std::thread::Builder::new()
            .name("rulake-recall".into())
            .spawn(move || {
                // Ends when the engine (the only sender) is dropped.
                while let Ok(s) = rx.recv() {
                    match exact_recall(&s) {
                        Some(r) => {
                            shared.measured.fetch_add(1, Ordering::Relaxed);
                            if let Some(factor) = s.retune.as_ref().and_then(|t| t.record(r)) {
                                tracing::info!(
                                    collection = %s.collection,
                                    factor,
                                    "live recall below the target: probing more lists"
                                );
                            }
                            let mut w = shared.windows.lock();
                            let w = w.entry(s.collection).or_default();
                            w.values.push_back(r);
                            w.sum += r;
                            w.measured += 1;
                            while w.values.len() > window {
                                let old = w.values.pop_front().expect("non-empty");
                                w.sum -= old;
                            }
                        }
                        None => {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the recall thread; samples will be dropped");
        }
        tx
    }

    /// Forget a dropped collection's estimate.
    pub(crate) fn forget(&self, collection: &str) {
        self.shared.windows.lock().remove(collection);
    }

    pub(crate) fn estimates(&self) -> BTreeMap<String, RecallEstimate> {
        self.shared
            .windows
            .lock()
            .iter()
            .filter(|(_, w)| !w.values.is_empty())
            .map(|(name, w)| {
                // Re-sum rather than trust the running sum's rounding.
                let sum: f64 = w.values.iter().sum();
                (
                    name.clone(),
                    RecallEstimate {
                        recall: sum / w.values.len() as f64,
                        samples: w.values.len(),
                        measured: w.measured,
                    },
                )
            })
            .collect()
    }

    pub(crate) fn stats(&self) -> RecallStats {
        RecallStats {
            sampled: self.sampled.load(Ordering::Relaxed),
            dropped_budget: self.dropped_budget.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue.load(Ordering::Relaxed),
            measured: self.shared.measured.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }
}

fn sanitize(mut c: RecallConfig) -> RecallConfig {
    c.sample_fraction = if c.sample_fraction.is_finite() {
        c.sample_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    c.queue = c.queue.max(1);
    c.window = c.window.max(1);
    if c.max_scans_per_second.is_nan() || c.max_scans_per_second < 0.0 {
        c.max_scans_per_second = 0.0;
    }
    c
}

fn bucket_size(rate: f64) -> f64 {
    rate.max(1.0)
}

/// recall@k of the sample's answer against an exact scan of its partitions
/// (`None` if a partition refused the scan).
fn exact_recall(s: &Sample) -> Option<f64> {
    let mut lists = Vec::with_capacity(s.parts.len());
    for (i, part) in s.parts.iter().enumerate() {
        let ids = part.index.ids();
        let mask = s.masks.get(i).map_or(&[][..], |m| m.as_slice());
        let hits = part
            .index
            .exact_search_excluding(&s.query, s.k, mask)
            .ok()?;
        lists.push(
            hits.into_iter()
                .map(|(pos, distance)| Hit::new(ids.get(pos), distance))
                .collect(),
        );
    }
    let truth: Vec<VectorId> = merge_topk(lists, s.k).into_iter().map(|h| h.id).collect();
    Some(rulake_index::exact::recall(&s.found, &truth))
}
