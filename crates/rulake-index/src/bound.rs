//! The `k`-th best exact distance found so far by one query's searches of
//! several partitions, shared between them.
//!
//! Why: each partition's exact rerank stops once the next candidate's lower
//! bound cannot beat its own `k`-th exact distance, so a query split over
//! `P` partitions computes at least `k` exact distances in each of them,
//! `P` times the reads of full vectors an unsplit index makes, and those
//! reads are the most expensive thing a search does. The merged answer only
//! needs the `k` best over all partitions: a candidate whose lower bound
//! exceeds the `k`-th best distance any sibling has already found cannot be
//! in it. Sharing that distance lets later (or concurrent) partitions stop
//! early, and the merge is unchanged: every row that belongs in the merged
//! top `k` is still reranked by its partition.
//!
//! The rule assumes the rows counted are distinct answers, as the merge
//! sees them: rows of different partitions with different ids (or of
//! different collections). Ids repeated across a collection's partitions
//! are a data error the build does not cross-check (docs/engine.md); with
//! them an answer may hold fewer than `k` distinct ids.
use crate::exact::OrdF32;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The `k` smallest exact distances offered so far; see the module docs.
#[derive(Debug)]
pub struct SharedKth {
    k: usize,
    best: Mutex<BinaryHeap<OrdF32>>,
    /// The `k`-th smallest, order-preserving encoded; +∞ until `k` are known.
    kth: AtomicU32,
}

/// `f32` → `u32` preserving order (negative distances occur: inner product
/// is reported as `−⟨q, x⟩`).
fn encode(d: f32) -> u32 {
    let b = d.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn decode(u: u32) -> f32 {
    if u & 0x8000_0000 != 0 {
        f32::from_bits(u & 0x7fff_ffff)
    } else {
        f32::from_bits(!u)
    }
}

impl SharedKth {
    /// Nothing known yet, for a query wanting `k` answers.
    pub fn new(k: usize) -> Self {
        SharedKth {
            k: k.max(1),
            best: Mutex::new(BinaryHeap::with_capacity(k + 1)),
            kth: AtomicU32::new(encode(f32::INFINITY)),
        }
    }

    /// The `k`-th smallest distance offered so far (+∞ before `k` offers):
    /// no row farther than this can be in the merged answer.
    #[inline]
    pub fn get(&self) -> f32 {
        decode(self.kth.load(Ordering::Relaxed))
    }

    /// Record the exact distance of a row some partition found.
    pub fn offer(&self, d: f32) {
        if d >= self.get() {
            return;
        }
        let mut best = self.best.lock().unwrap_or_else(|e| e.into_inner());
        best.push(OrdF32(d));
        if best.len() > self.k {
            best.pop();
        }
        if best.len() == self.k {
            if let Some(top) = best.peek() {
                self.kth.store(encode(top.0), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_order_across_signs() {
        let xs = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(encode(w[0]) <= encode(w[1]), "{} vs {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(decode(encode(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn holds_the_kth_smallest_of_everything_offered() {
        let s = SharedKth::new(3);
        assert_eq!(s.get(), f32::INFINITY);
        for d in [5.0, -1.0, 7.0] {
            s.offer(d);
        }
        assert_eq!(s.get(), 7.0);
        s.offer(2.0);
        assert_eq!(s.get(), 5.0);
        s.offer(9.0);
        assert_eq!(s.get(), 5.0);
        s.offer(-4.0);
        assert_eq!(s.get(), 2.0);
    }
}
