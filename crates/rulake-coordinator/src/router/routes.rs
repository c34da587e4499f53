//! Which replica serves each partition: the route table.
//!
//! Why the order is (warm, cold, not answering), then the assignment's
//! order: the assignment is committed, so every coordinator at one epoch
//! ranks replicas alike and [`Router::route_table`] can be compared across
//! coordinators; the status reports then only move a replica that can
//! answer from memory ahead of one that would load from the lake. For
//! picking a replica to send to, this coordinator's own load (requests in
//! flight) comes between warmth and assignment order, so a slow node sheds
//! work here without any coordination.

use super::Router;
use rulake_catalog::{Assignment, CollectionRecord};
use rulake_proto::internal::v1 as pb;
use rulake_types::Generation;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// One partition's serving state across its replicas, as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRoute {
    /// Partition number.
    pub partition: u32,
    /// The replicas (owners and hand-off nodes of the assignment) this
    /// coordinator would try, in order, with no request in flight: warm,
    /// then cold, then not answering; the assignment's order within each.
    pub replicas: Vec<u64>,
    /// Those that report it warm.
    pub warm: Vec<u64>,
}

/// The key of partition `p` of `collection`, as the assignment and the
/// shards' status reports name it.
pub(crate) fn partition_key(collection: &str, p: u32) -> String {
    format!("{collection}/{p}")
}

/// Partitions grouped by the node first in each one's candidate list
/// (`cands[p]`), and the first partition with no candidate at all.
pub(super) fn by_first_choice(cands: &[Vec<u64>]) -> (BTreeMap<u64, Vec<u32>>, Option<u32>) {
    let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut orphan = None;
    for (p, c) in cands.iter().enumerate() {
        match c.first() {
            Some(n) => groups.entry(*n).or_default().push(p as u32),
            None => {
                orphan.get_or_insert(p as u32);
            }
        }
    }
    (groups, orphan)
}

/// The generation reported most often (the last of equals in key order).
pub(super) fn most_common(counts: BTreeMap<String, u32>) -> Option<Generation> {
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(g, _)| Generation(g))
}

impl Router {
    /// Replicas serving `key` with a handle here, as (class, assignment
    /// rank, node): class 0 reports `key` warm, 1 cold, 2 does not answer.
    fn ranked(&self, a: &Assignment, key: &str) -> Vec<(u8, usize, u64)> {
        a.serving(key)
            .into_iter()
            .enumerate()
            .filter_map(|(rank, n)| {
                let class = match self.shard(n)?.warm(key) {
                    Some(true) => 0,
                    Some(false) => 1,
                    None => 2,
                };
                Some((class, rank, n))
            })
            .collect()
    }

    /// Replicas of each partition of `rec`, best first for this coordinator:
    /// the order of [`Router::routes`], then the fewest requests in flight.
    pub(super) fn candidates(&self, rec: &CollectionRecord) -> Vec<Vec<u64>> {
        self.ensure_handles();
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        (0..rec.partitions)
            .map(|p| {
                let mut reps: Vec<(u8, usize, usize, u64)> = self
                    .ranked(a, &partition_key(&rec.name, p))
                    .into_iter()
                    .filter_map(|(class, rank, n)| {
                        let load = self.shard(n)?.outstanding.load(Ordering::Relaxed);
                        Some((class, load, rank, n))
                    })
                    .collect();
                reps.sort();
                reps.into_iter().map(|(_, _, _, n)| n).collect()
            })
            .collect()
    }

    /// How each partition of `rec` is served now.
    pub fn routes(&self, rec: &CollectionRecord) -> Vec<PartitionRoute> {
        self.ensure_handles();
        let view = self.inner.view.read();
        self.routes_in(&view.catalog.assignment, rec)
    }

    fn routes_in(&self, a: &Assignment, rec: &CollectionRecord) -> Vec<PartitionRoute> {
        (0..rec.partitions)
            .map(|p| {
                let mut reps = self.ranked(a, &partition_key(&rec.name, p));
                reps.sort();
                PartitionRoute {
                    partition: p,
                    replicas: reps.iter().map(|r| r.2).collect(),
                    warm: reps.iter().filter(|r| r.0 == 0).map(|r| r.2).collect(),
                }
            })
            .collect()
    }

    /// The assignment epoch of this coordinator's catalog view and, under
    /// the same view, the routes of every collection by name: what two
    /// coordinators compare to check they route alike.
    pub fn route_table(&self) -> (u64, Vec<(String, Vec<PartitionRoute>)>) {
        self.ensure_handles();
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        let table = view
            .catalog
            .collections
            .values()
            .map(|rec| (rec.name.clone(), self.routes_in(a, rec)))
            .collect();
        (a.epoch, table)
    }

    /// Per partition of `rec`, the report of one replica that has it warm.
    fn warm_reports(&self, rec: &CollectionRecord) -> Vec<Option<pb::PartitionState>> {
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        (0..rec.partitions)
            .map(|p| {
                let key = partition_key(&rec.name, p);
                a.serving(&key).into_iter().find_map(|n| {
                    let s = self.shard(n)?;
                    let st = s.status.read();
                    st.as_ref()?
                        .partitions
                        .get(&key)
                        .filter(|p| p.warm)
                        .cloned()
                })
            })
            .collect()
    }

    /// Vectors in the collection, from the shards' reports; 0 when some
    /// partition has no warm report (the shards then plan on their own).
    pub fn collection_vectors(&self, rec: &CollectionRecord) -> u64 {
        self.warm_reports(rec)
            .into_iter()
            .try_fold(0, |total, r| r.map(|r| total + r.vectors))
            .unwrap_or(0)
    }

    /// The generation most warm partitions of `rec` report.
    pub fn generation(&self, rec: &CollectionRecord) -> Option<Generation> {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for r in self.warm_reports(rec).into_iter().flatten() {
            *seen.entry(r.generation).or_default() += 1;
        }
        most_common(seen)
    }
}
