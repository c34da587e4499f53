//! Exact nearest neighbours by brute force: the ground truth every recall
//! figure and equivalence test in RuLake is measured against.

use rayon::prelude::*;
use rulake_types::Metric;

/// Exact top-`k` `(row, distance)` of `query` over `data` (`n × dim`),
/// ordered by distance then row.
pub fn topk(data: &[f32], dim: usize, metric: Metric, query: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut heap: std::collections::BinaryHeap<(OrdF32, u32)> = Default::default();
    for (i, x) in data.chunks_exact(dim).enumerate() {
        let d = metric.distance(query, x);
        if heap.len() < k {
            heap.push((OrdF32(d), i as u32));
        } else if let Some(top) = heap.peek() {
            if (OrdF32(d), i as u32) < *top {
                heap.pop();
                heap.push((OrdF32(d), i as u32));
            }
        }
    }
    let mut v: Vec<(u32, f32)> = heap.into_iter().map(|(d, i)| (i, d.0)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v
}

/// [`topk`] for many queries, in parallel.
pub fn batch_topk(
    data: &[f32],
    dim: usize,
    metric: Metric,
    queries: &[f32],
    k: usize,
) -> Vec<Vec<(u32, f32)>> {
    queries
        .par_chunks(dim)
        .map(|q| topk(data, dim, metric, q, k))
        .collect()
}

/// `f32` ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrdF32(pub f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// recall@k of `found` against `truth` (fraction of true neighbours found).
pub fn recall<T: PartialEq>(found: &[T], truth: &[T]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let hits = truth.iter().filter(|t| found.contains(t)).count();
    hits as f64 / truth.len() as f64
}
