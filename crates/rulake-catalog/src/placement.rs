//! Where partitions live: consistent hashing with virtual nodes and bounded
//! loads, plus the hand-off rule that keeps a moved partition served.
//!
//! Every partition `collection/p` gets `R` distinct nodes. A new replica is
//! found by probing the ring (the `hashring` crate, `vnodes` points per
//! node) with `(key, 0)`, `(key, 1)`, ... and taking the first node that
//! is not chosen yet and not full. Probing instead of walking the ring
//! keeps each lookup logarithmic and each probe independent of the others.
//! Plain consistent hashing leaves the fullest node far above the mean when
//! nodes hold few partitions each (max/mean 2.5 at ten partitions a node);
//! a cap of `ceil(load_factor × mean)` replicas per node (consistent
//! hashing with bounded loads) keeps it at `load_factor`.
//!
//! A cap alone makes placement unstable: the cap moves with the node
//! count, and every partition placed after the first full node can land
//! elsewhere. So placement is sticky: owners that are still eligible and
//! under the cap keep their partitions, only orphaned replicas are placed
//! on the ring, and nodes below the mean take replicas from the fullest.
//! A join then moves about the new node's share and a leave about the
//! leaving node's, near the ideal `1/N` (`rulake-bench cluster` measures
//! it).
//!
//! The assignment is a function of the committed assignment, the
//! partitions and the eligible nodes, so any leader computes the same one;
//! it is committed through Raft with an epoch so every coordinator routes
//! by the same one.
//!
//! A partition whose owners change keeps its previous live owners in
//! [`Assignment::handoff`] until every new owner reports it warm; then a
//! later round drops them. Draining a node is the same move: it leaves the
//! ring and stays in hand-off until its partitions are warm elsewhere.

use crate::model::{Assignment, Catalog};
use hashring::HashRing;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Tuning of placement and liveness.
#[derive(Clone, Debug)]
pub struct PlacementConfig {
    /// Ring points per node.
    pub vnodes: usize,
    /// Cap on replicas per node as a multiple of the mean (≥ 1.0).
    pub load_factor: f64,
    /// A node silent this long is out of placement until it beats again.
    pub grace: Duration,
    /// How often the leader recomputes the assignment.
    pub interval: Duration,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            vnodes: 128,
            load_factor: 1.1,
            grace: Duration::from_secs(5),
            interval: Duration::from_millis(250),
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct VNode {
    node: u64,
    point: u32,
}

/// Place `partitions` (key, replicas wanted) on `nodes`, starting from
/// `previous` (the assignment in force; empty for a first placement). Each
/// partition gets `min(replicas, nodes.len())` distinct nodes, primary
/// first. Three passes, all deterministic:
///
/// 1. keep every previous owner that is still a node and under the cap;
/// 2. give each replica still missing the first node on its ring probes
///    that is not chosen and not full (a first placement is this pass
///    alone: consistent hashing with bounded loads);
/// 3. move replicas from the fullest nodes to nodes below the mean until
///    none is (a node that joined fills up to its share, and only that
///    share moves).
pub fn place(
    partitions: &[(String, u32)],
    nodes: &[u64],
    previous: &BTreeMap<String, Vec<u64>>,
    vnodes: usize,
    load_factor: f64,
) -> BTreeMap<String, Vec<u64>> {
    let nodes: BTreeSet<u64> = nodes.iter().copied().collect();
    if nodes.is_empty() {
        return BTreeMap::new();
    }
    let n = nodes.len();
    let slots: usize = partitions
        .iter()
        .map(|(_, r)| (*r as usize).clamp(1, n))
        .sum();
    let mean = slots as f64 / n as f64;
    // A fixed order that does not favour any collection: the key's hash.
    let mut order: Vec<&(String, u32)> = partitions.iter().collect();
    order.sort_by_key(|(k, _)| (rulake_types::stable_hash(k.as_bytes()), k.clone()));
    let mut draft = Draft {
        cap: ((mean * load_factor.max(1.0)).ceil() as usize).max(1),
        load: nodes.iter().map(|n| (*n, 0)).collect(),
        nodes,
        out: BTreeMap::new(),
    };
    draft.keep_previous(&order, previous);
    draft.fill_missing(&order, vnodes);
    draft.rebalance(&order, mean.floor() as usize);
    draft.out
}

/// A placement being built by [`place`]'s three passes: the owners chosen
/// so far and how many replicas each node holds.
struct Draft {
    nodes: BTreeSet<u64>,
    /// Most replicas a node may get in passes 1 and 2.
    cap: usize,
    out: BTreeMap<String, Vec<u64>>,
    load: HashMap<u64, usize>,
}

impl Draft {
    /// Replicas a partition that asks for `r` gets.
    fn want(&self, r: u32) -> usize {
        (r as usize).clamp(1, self.nodes.len())
    }

    fn take(&mut self, key: &str, node: u64) {
        self.out
            .get_mut(key)
            .expect("inserted by pass 1")
            .push(node);
        *self.load.get_mut(&node).expect("a node") += 1;
    }

    /// Pass 1, stickiness: keep previous owners that are still nodes and
    /// under the cap.
    fn keep_previous(&mut self, order: &[&(String, u32)], previous: &BTreeMap<String, Vec<u64>>) {
        for (key, r) in order {
            let want = self.want(*r);
            self.out.insert(key.clone(), Vec::with_capacity(want));
            for node in previous.get(key).into_iter().flatten() {
                let kept = &self.out[key];
                if kept.len() < want
                    && self.nodes.contains(node)
                    && !kept.contains(node)
                    && self.load[node] < self.cap
                {
                    self.take(key, *node);
                }
            }
        }
    }

    /// Pass 2, bounded-load consistent hashing for the replicas missing.
    fn fill_missing(&mut self, order: &[&(String, u32)], vnodes: usize) {
        let mut ring = HashRing::new();
        ring.batch_add(
            self.nodes
                .iter()
                .flat_map(|&node| (0..vnodes.max(1) as u32).map(move |point| VNode { node, point }))
                .collect(),
        );
        let max_probes = 32 * self.nodes.len() + 64;
        for (key, r) in order {
            let want = self.want(*r);
            let mut probe = 0u32;
            while self.out[key].len() < want && (probe as usize) < max_probes {
                let v = ring.get(&(key.as_str(), probe)).expect("ring is not empty");
                probe += 1;
                if self.out[key].contains(&v.node) || self.load[&v.node] >= self.cap {
                    continue;
                }
                self.take(key, v.node);
            }
            // Every probe hit a full or chosen node (tiny clusters): the
            // least loaded remaining nodes.
            while self.out[key].len() < want {
                let chosen = &self.out[key];
                let next = self
                    .nodes
                    .iter()
                    .filter(|n| !chosen.contains(n))
                    .min_by_key(|n| (self.load[*n], **n))
                    .copied()
                    .expect("want ≤ nodes");
                self.take(key, next);
            }
        }
    }

    /// Pass 3: move replicas from the fullest nodes to nodes below `floor`
    /// (the mean, rounded down) until none is or no move helps.
    fn rebalance(&mut self, order: &[&(String, u32)], floor: usize) {
        let mut held: HashMap<u64, Vec<String>> = HashMap::new();
        for (key, _) in order {
            for node in &self.out[key] {
                held.entry(*node).or_default().push(key.clone());
            }
        }
        let mut by_load: BTreeSet<(usize, u64)> = self.load.iter().map(|(n, l)| (*l, *n)).collect();
        while let Some(&(low, under)) = by_load.first() {
            let Some(&(high, over)) = by_load.last() else {
                break;
            };
            if low >= floor || high <= low + 1 {
                break;
            }
            // The first partition (in hash order) of the fullest node that
            // the emptiest does not hold yet.
            let list = held.get_mut(&over).expect("a loaded node holds partitions");
            let Some(i) = list.iter().position(|k| !self.out[k].contains(&under)) else {
                break;
            };
            let key = list.remove(i);
            let owners = self.out.get_mut(&key).expect("placed");
            let slot = owners.iter().position(|n| *n == over).expect("held");
            owners[slot] = under;
            held.entry(under).or_default().push(key);
            by_load.remove(&(low, under));
            by_load.remove(&(high, over));
            by_load.insert((low + 1, under));
            by_load.insert((high - 1, over));
        }
    }
}

/// What one node last said about itself.
#[derive(Clone, Debug)]
pub struct Beat {
    /// When it was heard.
    pub at: Instant,
    /// Partitions it reported warm.
    pub warm: BTreeSet<String>,
}

/// Heartbeats as one meta member heard them. In memory only: a member that
/// starts treats every registered node as alive for one grace period
/// before it may declare any dead.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    beats: HashMap<u64, Beat>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            started: Instant::now(),
            beats: HashMap::new(),
        }
    }
}

impl Liveness {
    /// Record a heartbeat.
    pub fn beat(&mut self, node: u64, warm: BTreeSet<String>) {
        self.beats.insert(
            node,
            Beat {
                at: Instant::now(),
                warm,
            },
        );
    }

    /// Whether `node` counts as alive under `grace`.
    pub fn alive(&self, node: u64, grace: Duration) -> bool {
        match self.beats.get(&node) {
            Some(b) => b.at.elapsed() <= grace,
            None => self.started.elapsed() <= grace,
        }
    }

    /// Whether `node` reported `key` warm in its last beat.
    pub fn warm(&self, node: u64, key: &str) -> bool {
        self.beats.get(&node).is_some_and(|b| b.warm.contains(key))
    }
}

/// The assignment the catalog should have now, or `None` when the current
/// one is right (or there is no node to place on).
pub fn plan(cat: &Catalog, live: &Liveness, cfg: &PlacementConfig) -> Option<Assignment> {
    let alive = |n: u64| cat.nodes.contains_key(&n) && live.alive(n, cfg.grace);
    let eligible: Vec<u64> = cat
        .nodes
        .values()
        .filter(|n| !n.draining && alive(n.id))
        .map(|n| n.id)
        .collect();
    if eligible.is_empty() {
        return None;
    }
    let parts: Vec<(String, u32)> = cat
        .collections
        .values()
        .flat_map(|c| (0..c.partitions).map(move |p| (format!("{}/{p}", c.name), c.replication)))
        .collect();
    let current = &cat.assignment;
    let target = place(
        &parts,
        &eligible,
        &current.partitions,
        cfg.vnodes,
        cfg.load_factor,
    );
    let mut handoff = BTreeMap::new();
    for (key, owners) in &target {
        let all_warm = owners.iter().all(|n| live.warm(*n, key));
        if all_warm {
            continue;
        }
        let keep: Vec<u64> = current
            .serving(key)
            .into_iter()
            .filter(|n| !owners.contains(n) && alive(*n))
            .collect();
        if !keep.is_empty() {
            handoff.insert(key.clone(), keep);
        }
    }
    if target == current.partitions && handoff == current.handoff {
        return None;
    }
    Some(Assignment {
        epoch: current.epoch + 1,
        partitions: target,
        handoff,
    })
}

/// How a placement change moves replicas: `(moved, total)` where `moved`
/// counts replicas of `after` that `before` did not have on that node.
pub fn moved(
    before: &BTreeMap<String, Vec<u64>>,
    after: &BTreeMap<String, Vec<u64>>,
) -> (usize, usize) {
    let mut moved = 0;
    let mut total = 0;
    for (k, ns) in after {
        let old = before.get(k);
        for n in ns {
            total += 1;
            if !old.is_some_and(|o| o.contains(n)) {
                moved += 1;
            }
        }
    }
    (moved, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|p| (format!("c/{p}"), 1)).collect()
    }

    #[test]
    fn distinct_replicas_and_deterministic() {
        let parts: Vec<(String, u32)> = (0..200).map(|p| (format!("c/{p}"), 3)).collect();
        let none = BTreeMap::new();
        let a = place(&parts, &[1, 2, 3, 4, 5], &none, 64, 1.1);
        let b = place(&parts, &[5, 4, 3, 2, 1], &none, 64, 1.1);
        assert_eq!(a, b, "placement depends on the node set, not its order");
        for ns in a.values() {
            assert_eq!(ns.len(), 3);
            assert_eq!(ns.iter().collect::<BTreeSet<_>>().len(), 3);
        }
        // R larger than the cluster: every node once.
        let small = place(&parts[..3], &[1, 2], &none, 64, 1.1);
        assert!(small.values().all(|ns| ns.len() == 2));
    }

    #[test]
    fn join_moves_about_one_nth_and_loads_stay_bounded() {
        let parts = keys(2000);
        let nodes: Vec<u64> = (1..=10).collect();
        let before = place(&parts, &nodes, &BTreeMap::new(), 128, 1.1);
        let mut grown = nodes.clone();
        grown.push(11);
        let after = place(&parts, &grown, &before, 128, 1.1);
        let (moved, total) = moved(&before, &after);
        let ideal = total as f64 / 11.0;
        assert!(
            (moved as f64) <= 1.5 * ideal,
            "moved {moved} of {total}; ideal {ideal:.0}"
        );
        let mut load: HashMap<u64, usize> = HashMap::new();
        for ns in after.values() {
            for n in ns {
                *load.entry(*n).or_default() += 1;
            }
        }
        let max = *load.values().max().unwrap() as f64;
        let mean = total as f64 / 11.0;
        assert!(max / mean <= 1.1 + 1.0 / mean, "max/mean {}", max / mean);
        let min = *load.values().min().unwrap() as f64;
        assert!(min >= mean.floor(), "the new node filled up: min {min}");

        // A leave moves the leaving node's replicas, and a few more to
        // even out the others.
        let shrunk = place(&parts, &grown[1..], &after, 128, 1.1);
        let (moved, _) = super::moved(&after, &shrunk);
        assert!(
            moved >= load[&1] && moved as f64 <= 1.5 * load[&1] as f64,
            "moved {moved}"
        );
        // Placing again changes nothing.
        assert_eq!(place(&parts, &grown[1..], &shrunk, 128, 1.1), shrunk);
    }
}
