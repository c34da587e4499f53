//! Recall as the setting: a partition finds, on its own rows, the fewest
//! lists to probe that reach a declared recall.
//!
//! Why per partition and at build: how many lists a query must probe for
//! a given recall depends on the data (clustered Gaussian data reaches
//! 0.95 at a sixth of the probes real sentence embeddings need), and no
//! default `nprobe` fits both. The partition has all it needs to measure
//! it: its rows and an exact scan. So after a build it searches a sample
//! of its own rows, each as a query with the row itself left out
//! (leave-one-out, so a row never finds itself), against the exact
//! answer, and keeps the smallest `nprobe` whose recall clears the target
//! by two standard errors of the sample and a small share of the misses
//! the target allows. The engine then re-tunes from the
//! recall it measures on live queries if they turn out harder than the
//! rows themselves.
//!
//! The sampled rows are ones the coarse quantizer was not trained on: the
//! k-means centroids are fitted to their training rows, which therefore
//! sit closer to a centroid than an unseen query does and find their
//! neighbours with fewer probes. On the real-embedding benchmark, training
//! rows measured recall 0.948 where unseen rows measured 0.939 and held-out
//! queries 0.933, at the same nprobe.
//!
//! Recall is counted by distance, not by position: a row found at a
//! distance no larger than the exact `k`-th counts, so duplicate vectors
//! cannot make a right answer look wrong.
//!
//! The sample is sized so its exact scans cost a bounded amount
//! ([`CALIBRATION_WORK`] multiply-adds), between [`MIN_SAMPLES`] and
//! [`MAX_SAMPLES`] queries, and chosen by the build seed, so the same
//! rows give the same tuning.

use super::build::training_rows;
use super::{PartitionIndex, SAMPLE_PER_LIST};
use crate::deadline::Deadline;
use crate::error::Result;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;

/// Target recall@10 a collection declares when it says nothing.
pub const DEFAULT_TARGET_RECALL: f32 = 0.95;
/// The `k` calibration measures recall at (what the target means).
pub const CALIBRATION_K: usize = 10;
/// Multiply-adds the sample's exact scans may cost at most.
pub const CALIBRATION_WORK: usize = 1 << 33;
/// Fewest sampled queries (unless the partition has fewer rows).
pub const MIN_SAMPLES: usize = 48;
/// Most sampled queries.
pub const MAX_SAMPLES: usize = 256;
/// Share of the target's allowed misses the sample must leave unused
/// (see [`Tuning`]'s margin): on the real-embedding benchmark, unseen
/// rows missed 0.061 of their neighbours where held-out queries missed
/// 0.067 at the same probes.
const QUERY_MISS_ALLOWANCE: f64 = 0.15;
/// Mixed into the build seed to choose the sample.
const SAMPLE_SEED: u64 = 0xca11_b7a7e;

/// What calibration chose and what it measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tuning {
    /// The recall asked for.
    pub target: f32,
    /// Lists to probe by default.
    pub nprobe: usize,
    /// The rerank factor calibration searched with.
    pub rerank: usize,
    /// Recall@10 measured on the sample at `nprobe`.
    pub recall: f32,
    /// Queries in the sample.
    pub samples: usize,
}

impl Tuning {
    /// The error margin calibration adds to the target for a sample of
    /// `samples` queries of `k` neighbours: two standard errors of a
    /// proportion at the target, so a sample that meets the goal by luck
    /// is rare (about one in forty).
    ///
    /// Plus [`QUERY_MISS_ALLOWANCE`] of the misses the target allows:
    /// even rows the quantizer never saw find their neighbours a little
    /// more easily than queries do (a row's near-duplicates sit in its
    /// own list), so the sample must miss somewhat less than the target
    /// permits.
    fn margin(target: f32, samples: usize, k: usize) -> f32 {
        let t = target.clamp(0.0, 1.0) as f64;
        let sampling = 2.0 * ((t * (1.0 - t)) / (samples * k).max(1) as f64).sqrt();
        (sampling + QUERY_MISS_ALLOWANCE * (1.0 - t)) as f32
    }
}

impl PartitionIndex {
    /// How many sampled queries calibration uses for this partition.
    fn calibration_samples(&self) -> usize {
        let live = self.live_len();
        if live <= CALIBRATION_K + 1 {
            return 0;
        }
        let per_query = live.saturating_mul(self.dim).max(1);
        (CALIBRATION_WORK / per_query)
            .clamp(MIN_SAMPLES, MAX_SAMPLES)
            .min(live)
    }

    /// Find the fewest lists to probe for recall@10 of at least `target`
    /// at rerank factor `rerank`, store it as this partition's default and
    /// return what was measured. A partition too small to sample probes
    /// every list (it is exact).
    pub fn calibrate(&mut self, target: f32, rerank: usize) -> Result<Tuning> {
        let target = target.clamp(0.0, 1.0);
        let nlist = self.nlist();
        let samples = self.calibration_samples();
        if samples == 0 {
            let t = Tuning {
                target,
                nprobe: nlist,
                rerank,
                recall: 1.0,
                samples: 0,
            };
            self.tuning = Some(t);
            return Ok(t);
        }
        let chosen = self.calibration_sample(samples);
        let truth = self.leave_one_out_truth(&chosen)?;
        let goal = target + Tuning::margin(target, samples, CALIBRATION_K);
        let recall_at = |nprobe: usize| self.sample_recall(&chosen, &truth, nprobe, rerank);

        // Double until the goal is met, then bisect between the last miss
        // and the first hit: recall rises with nprobe.
        let (mut lo, mut hi) = (0usize, 1usize);
        let mut hi_recall = recall_at(1)?;
        while hi_recall < goal && hi < nlist {
            lo = hi;
            hi = (hi * 2).min(nlist);
            hi_recall = recall_at(hi)?;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let r = recall_at(mid)?;
            if r >= goal {
                hi = mid;
                hi_recall = r;
            } else {
                lo = mid;
            }
        }
        let t = Tuning {
            target,
            nprobe: hi,
            rerank,
            recall: hi_recall,
            samples,
        };
        self.tuning = Some(t);
        Ok(t)
    }

    /// What calibration chose, if it ran.
    pub fn tuning(&self) -> Option<Tuning> {
        self.tuning
    }

    /// Lists probed when a search names no `nprobe`: the calibrated count,
    /// or [`super::default_nprobe`] for an uncalibrated partition.
    pub fn default_probes(&self) -> usize {
        self.tuning
            .map(|t| t.nprobe)
            .unwrap_or_else(|| super::default_nprobe(self.nlist()))
            .clamp(1, self.nlist().max(1))
    }

    /// [`Self::default_probes`] for a search of `k` neighbours, `factor`
    /// times over (the engine's live re-tuning), within the lists there
    /// are. Calibration measures recall@10; the `k`-th neighbour of a
    /// larger `k` lies farther out, so a larger `k` probes `√(k / 10)`
    /// times as many lists (a `k` beyond the rows probes them all).
    pub fn default_probes_for(&self, k: usize, factor: f32) -> usize {
        let nlist = self.nlist().max(1);
        if k >= self.live_len() {
            return nlist;
        }
        let widen = (k as f32 / CALIBRATION_K as f32).max(1.0).sqrt();
        let probes = (self.default_probes() as f32 * factor.max(1.0) * widen).ceil();
        (probes as usize).clamp(1, nlist)
    }

    /// `samples` live rows, chosen by the build seed among those that did
    /// not train the quantizer (all live rows when too few did not).
    fn calibration_sample(&self, samples: usize) -> Vec<u32> {
        let trained = training_rows(self.trained_rows, self.nlist() * SAMPLE_PER_LIST, self.seed)
            .unwrap_or_default();
        let unseen = |p: &u32| trained.binary_search(&(*p as usize)).is_err();
        let live: Vec<u32> = (0..self.len() as u32)
            .filter(|&p| !self.is_tombstoned(p))
            .collect();
        let held_out: Vec<u32> = live.iter().copied().filter(unseen).collect();
        let live = if held_out.len() >= samples {
            held_out
        } else {
            live
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ SAMPLE_SEED);
        sample(&mut rng, live.len(), samples.min(live.len()))
            .into_iter()
            .map(|i| live[i])
            .collect()
    }

    /// For each sampled row, the exact distance of its `k`-th nearest
    /// other live row. Queries go in groups through one pass over the rows
    /// each, so a row's vector is read from memory once a group rather
    /// than once a query: at a million rows the scans are memory-bound.
    fn leave_one_out_truth(&self, chosen: &[u32]) -> Result<Vec<f32>> {
        const GROUP: usize = 8;
        let queries: Vec<Vec<f32>> = chosen
            .iter()
            .map(|&p| self.prepare_query(self.row(p)))
            .collect::<Result<_>>()?;
        Ok(chosen
            .par_chunks(GROUP)
            .zip(queries.par_chunks(GROUP))
            .flat_map_iter(|(rows, qs)| {
                let mut best = vec![Vec::with_capacity(CALIBRATION_K + 1); rows.len()];
                for p in 0..self.len() as u32 {
                    if self.is_tombstoned(p) {
                        continue;
                    }
                    for ((q, &me), kept) in qs.iter().zip(rows).zip(best.iter_mut()) {
                        if p != me {
                            keep_smallest(kept, self.exact(q, p), CALIBRATION_K);
                        }
                    }
                }
                best.into_iter()
                    .map(|kept| kept.last().copied().unwrap_or(f32::INFINITY))
            })
            .collect())
    }

    /// Mean recall@10 over the sample at `nprobe` and `rerank`.
    fn sample_recall(
        &self,
        chosen: &[u32],
        truth: &[f32],
        nprobe: usize,
        rerank: usize,
    ) -> Result<f32> {
        let found: usize = chosen
            .par_iter()
            .zip(truth)
            .map_init(
                || vec![0u64; self.len().div_ceil(64)],
                |exclude, (&p, &kth)| {
                    let q = self.row(p).to_vec();
                    set(exclude, p, true);
                    let hits = self.search_within(
                        &q,
                        CALIBRATION_K,
                        Some(nprobe),
                        Some(rerank),
                        exclude,
                        None,
                        Deadline::NONE,
                    );
                    set(exclude, p, false);
                    // Within float rounding of the k-th exact distance.
                    let slack = kth.abs() * 1e-5 + 1e-6;
                    Ok(hits?.iter().filter(|h| h.1 <= kth + slack).count())
                },
            )
            .collect::<Result<Vec<usize>>>()?
            .into_iter()
            .sum();
        Ok(found as f32 / (chosen.len() * CALIBRATION_K) as f32)
    }

    /// Row `p`'s stored vector (normalised for cosine).
    fn row(&self, p: u32) -> &[f32] {
        &self.vectors[p as usize * self.dim..(p as usize + 1) * self.dim]
    }
}

/// Insert `d` into `kept` (ascending, at most `k` long).
fn keep_smallest(kept: &mut Vec<f32>, d: f32, k: usize) {
    if kept.len() == k && kept.last().is_some_and(|&w| d >= w) {
        return;
    }
    let at = kept.partition_point(|&x| x <= d);
    kept.insert(at, d);
    kept.truncate(k);
}

fn set(bits: &mut [u64], p: u32, on: bool) {
    let (w, b) = (p as usize / 64, p % 64);
    if on {
        bits[w] |= 1 << b;
    } else {
        bits[w] &= !(1 << b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::BuildParams;
    use rulake_types::{Metric, VectorId};

    fn index(n: usize, dim: usize, metric: Metric) -> PartitionIndex {
        let data = rulake_datasets::ClusteredGaussian::new(dim, 20, 0.3, 11).sample(n, 0);
        let ids = (0..n as u64).map(VectorId::U64).collect();
        PartitionIndex::build(dim, metric, ids, data, BuildParams::default()).unwrap()
    }

    /// Recall of held-out queries at the index's own default.
    fn held_out_recall(ix: &PartitionIndex, dim: usize) -> f64 {
        let queries = rulake_datasets::ClusteredGaussian::new(dim, 20, 0.3, 11).sample(200, 77);
        let mut found = 0.0;
        for q in queries.chunks(dim) {
            let truth = ix.exact_search(q, 10).unwrap();
            let got = ix.search(q, 10, None, None).unwrap();
            let kth = truth.last().unwrap().1;
            found += got.iter().filter(|h| h.1 <= kth + 1e-5).count() as f64 / 10.0;
        }
        found / 200.0
    }

    #[test]
    fn calibration_meets_its_target_on_held_out_queries() {
        for (metric, target) in [
            (Metric::L2, 0.9f32),
            (Metric::Cosine, 0.95),
            (Metric::InnerProduct, 0.95),
        ] {
            let mut ix = index(20_000, 32, metric);
            let t = ix.calibrate(target, 40).unwrap();
            assert!(t.recall >= target, "{metric:?}: sample recall {t:?}");
            assert_eq!(ix.default_probes(), t.nprobe);
            let r = held_out_recall(&ix, 32);
            // Held-out queries differ from the sampled rows; allow the
            // sample's own margin of error twice over.
            assert!(
                r >= target as f64 - 0.03,
                "{metric:?}: held-out {r} for {t:?}"
            );
        }
    }

    #[test]
    fn a_higher_target_never_probes_fewer_lists() {
        let mut ix = index(20_000, 32, Metric::L2);
        let mut last = 0;
        for target in [0.5, 0.8, 0.9, 0.95, 0.99] {
            let t = ix.calibrate(target, 40).unwrap();
            assert!(t.nprobe >= last, "{target}: {t:?} after {last}");
            last = t.nprobe;
        }
        // The fewest lists: one fewer misses the goal.
        let t = ix.calibrate(0.9, 40).unwrap();
        if t.nprobe > 1 {
            let below = ix.sample_recall_for_test(t.nprobe - 1, 40).expect("sample");
            assert!(below < 0.9 + Tuning::margin(0.9, t.samples, 10));
        }
    }

    #[test]
    fn a_tiny_partition_probes_everything() {
        let mut ix = index(8, 4, Metric::L2);
        let t = ix.calibrate(0.95, 40).unwrap();
        assert_eq!(t.nprobe, ix.nlist());
        assert_eq!(t.samples, 0);
    }

    #[test]
    fn a_larger_k_probes_more_and_k_beyond_the_rows_probes_all() {
        let mut ix = index(5_000, 16, Metric::L2);
        let t = ix.calibrate(0.9, 40).unwrap();
        assert_eq!(ix.default_probes_for(10, 1.0), t.nprobe);
        assert_eq!(ix.default_probes_for(1, 1.0), t.nprobe);
        assert!(ix.default_probes_for(100, 1.0) >= t.nprobe * 3);
        assert!(ix.default_probes_for(10, 2.0) >= t.nprobe * 2);
        assert_eq!(ix.default_probes_for(5_000, 1.0), ix.nlist());
        // All rows come back when k covers them.
        let q = vec![0.0f32; 16];
        assert_eq!(ix.search(&q, 6_000, None, None).unwrap().len(), 5_000);
    }

    #[test]
    fn calibration_is_deterministic() {
        let mut a = index(5_000, 16, Metric::L2);
        let mut b = index(5_000, 16, Metric::L2);
        assert_eq!(
            a.calibrate(0.95, 40).unwrap(),
            b.calibrate(0.95, 40).unwrap()
        );
    }

    impl PartitionIndex {
        fn sample_recall_for_test(&self, nprobe: usize, rerank: usize) -> Result<f32> {
            let chosen = self.calibration_sample(self.calibration_samples());
            let truth = self.leave_one_out_truth(&chosen)?;
            self.sample_recall(&chosen, &truth, nprobe, rerank)
        }
    }
}
