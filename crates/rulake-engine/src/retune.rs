//! Live re-tuning: a collection whose measured recall falls below its
//! target probes more lists.
//!
//! Why: each partition calibrates its default probes on its own rows
//! (`rulake_index::PartitionIndex::calibrate`), but the queries users send
//! need not look like the rows. Questions against passages, or a query
//! mix that drifts, can sit farther from the data than the rows sit from
//! each other, and then need more probes for the same recall. The recall
//! monitor already measures every sampled answer against an exact scan;
//! this module turns those measurements into a per-collection factor on
//! the calibrated probes.
//!
//! Only answers searched at the defaults count (a query that names its
//! own `nprobe` says nothing about them). After [`MIN_SAMPLES`] such
//! answers, a mean more than [`TOLERANCE`] below the target raises the
//! factor by [`STEP`] (up to [`MAX_FACTOR`]) and starts a new count, so
//! each step is judged on answers searched with it. The factor only
//! rises: lowering it would trade recall for speed the target did not
//! ask for, and a rebuilt generation calibrates afresh anyway.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Answers at the defaults a decision waits for.
pub const MIN_SAMPLES: u32 = 50;
/// How far below the target the measured mean may be before probes rise.
pub const TOLERANCE: f64 = 0.01;
/// Factor applied per step.
pub const STEP: f32 = 1.5;
/// Largest factor on the calibrated probes.
pub const MAX_FACTOR: f32 = 16.0;

/// One collection's re-tuning state.
#[derive(Debug)]
pub(crate) struct Retune {
    target: f64,
    /// The factor's bits (`f32::to_bits`), read by every query.
    factor: AtomicU32,
    /// Answers since the last step: count and sum of recall.
    since: Mutex<(u32, f64)>,
}

impl Retune {
    pub(crate) fn new(target: f32) -> Self {
        Retune {
            target: target as f64,
            factor: AtomicU32::new(1.0f32.to_bits()),
            since: Mutex::new((0, 0.0)),
        }
    }

    /// The factor on each partition's calibrated probes.
    pub(crate) fn factor(&self) -> f32 {
        f32::from_bits(self.factor.load(Ordering::Relaxed))
    }

    /// Count one answer searched at the defaults; returns the new factor
    /// when this answer completed a window that fell short.
    pub(crate) fn record(&self, recall: f64) -> Option<f32> {
        let mut since = self.since.lock();
        since.0 += 1;
        since.1 += recall;
        if since.0 < MIN_SAMPLES {
            return None;
        }
        let mean = since.1 / since.0 as f64;
        *since = (0, 0.0);
        let current = self.factor();
        if mean + TOLERANCE >= self.target || current >= MAX_FACTOR {
            return None;
        }
        let next = (current * STEP).min(MAX_FACTOR);
        self.factor.store(next.to_bits(), Ordering::Relaxed);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_below_target_raises_the_factor_once_per_window() {
        let r = Retune::new(0.95);
        for _ in 0..MIN_SAMPLES - 1 {
            assert_eq!(r.record(0.80), None);
        }
        assert_eq!(r.record(0.80), Some(STEP));
        assert_eq!(r.factor(), STEP);
        // The next window starts empty.
        for _ in 0..MIN_SAMPLES - 1 {
            assert_eq!(r.record(0.80), None);
        }
        assert_eq!(r.record(0.80), Some(STEP * STEP));
    }

    #[test]
    fn recall_at_target_keeps_the_factor() {
        let r = Retune::new(0.95);
        for _ in 0..3 * MIN_SAMPLES {
            r.record(0.945);
        }
        assert_eq!(r.factor(), 1.0);
    }

    #[test]
    fn the_factor_stops_at_its_maximum() {
        let r = Retune::new(0.99);
        for _ in 0..100 * MIN_SAMPLES {
            r.record(0.0);
        }
        assert_eq!(r.factor(), MAX_FACTOR);
    }
}
