//! The vocabulary every RuLake crate shares, with no I/O and no runtime.
//!
//! Ids, metrics, consistency levels, search parameters, hits and the k-way
//! merge live here so that the lake readers, the partition cache, the
//! embedded engine and the coordinator agree on one definition of
//! "nearest" without depending on each other.
//!
//! # Layout
//! - [`VectorId`] — u64 or UTF-8 string ids, never truncated.
//! - [`Metric`] — how distances are reported and ranked.
//! - [`Consistency`] — `fresh` or `eventual` with a staleness bound.
//! - [`Generation`] — an opaque, comparable version of a source.
//! - [`Hit`], [`merge_topk`]: exact per-partition answers and their merge.
//! - [`stable_hash`] — the one hash used to place units and ids on partitions.
//! - [`StatusCode`] — the gRPC code an error maps to, named by its owner.
//! - [`source`] — [`SourceKind`]: the one description of a source, and its validation.
//! - [`payload`] — payload columns: [`Value`], [`ColumnType`], a partition's [`Payload`].
//! - [`declare`] — payload columns as declared (`year:int`) and values fitted to a type.
//! - [`filter`] — [`Filter`]: the filter language, its typing, evaluation and readable form.
//! - [`zone`] — [`ZoneMap`]: min, max and null counts over a run of rows, and what a
//!   filter concludes from them ([`Verdict`]), for pruning by statistics.
//! - [`Selection`] — what a search asks beyond the nearest: a filter and the columns to return.

pub mod declare;
pub mod filter;
pub mod payload;
pub mod source;
mod status;
pub mod zone;

pub use declare::{declared, declared_names, Declared};
pub use filter::{Filter, FilterError};
pub use payload::{Column, ColumnType, Payload, Value};
pub use source::{IcebergSqlCatalog, SourceError, SourceKind};
pub use status::StatusCode;
pub use zone::{ColumnZone, Verdict, ZoneMap};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A vector's identity as the lake spells it.
///
/// The id column decides the variant: integer columns give `U64`, string
/// columns give `Str`. Ids are carried end to end; the index stores only
/// u32 row positions and maps them back through a per-partition table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorId {
    /// An unsigned integer id (signed lake columns must be non-negative).
    U64(u64),
    /// A UTF-8 string id.
    Str(String),
}

impl fmt::Display for VectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VectorId::U64(v) => write!(f, "{v}"),
            VectorId::Str(s) => f.write_str(s),
        }
    }
}

impl VectorId {
    /// A string that names the id and its type (`n:42`, `s:doc-7`), so the
    /// integer 42 and the string "42" stay apart where ids are stored as
    /// text (catalog tombstones).
    pub fn to_key(&self) -> String {
        match self {
            VectorId::U64(v) => format!("n:{v}"),
            VectorId::Str(s) => format!("s:{s}"),
        }
    }

    /// The id a [`VectorId::to_key`] string names; `None` for anything else.
    pub fn from_key(key: &str) -> Option<VectorId> {
        if let Some(n) = key.strip_prefix("n:") {
            return n.parse().ok().map(VectorId::U64);
        }
        key.strip_prefix("s:").map(|s| VectorId::Str(s.to_owned()))
    }
}

impl From<u64> for VectorId {
    fn from(v: u64) -> Self {
        VectorId::U64(v)
    }
}

impl From<&str> for VectorId {
    fn from(v: &str) -> Self {
        VectorId::Str(v.to_owned())
    }
}

impl From<String> for VectorId {
    fn from(v: String) -> Self {
        VectorId::Str(v)
    }
}

/// How a collection measures closeness.
///
/// Every metric is reported as a *distance* (smaller is nearer) so that the
/// merge across partitions and collections is one ordering:
/// - `L2`: squared Euclidean distance.
/// - `Cosine`: `1 - cos(q, x)`.
/// - `InnerProduct`: `-<q, x>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Squared Euclidean distance.
    #[default]
    L2,
    /// One minus cosine similarity.
    Cosine,
    /// Negated inner product.
    InnerProduct,
}

impl Metric {
    /// The exact distance between two vectors under this metric.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => l2_sq(a, b),
            Metric::InnerProduct => -dot(a, b),
            Metric::Cosine => {
                let na = dot(a, a).sqrt();
                let nb = dot(b, b).sqrt();
                if na == 0.0 || nb == 0.0 {
                    1.0
                } else {
                    1.0 - dot(a, b) / (na * nb)
                }
            }
        }
    }

    /// The canonical lower-case name (`l2`, `cosine`, `inner_product`).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "inner_product",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclid" | "euclidean" => Ok(Metric::L2),
            "cosine" | "cos" => Ok(Metric::Cosine),
            "ip" | "dot" | "inner_product" | "innerproduct" => Ok(Metric::InnerProduct),
            other => Err(format!(
                "unknown metric {other:?}: expected l2, cosine or inner_product"
            )),
        }
    }
}

/// Dot product; written as 8 independent lanes so it vectorises.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Squared Euclidean distance; written as 8 independent lanes so it vectorises.
// Always inlined, so that a caller compiled with wider vector units (see
// rulake-index's run-time dispatch) compiles this loop with them too.
#[inline(always)]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// When a collection checks its source for a newer generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// The source's generation is checked before every answer; a changed
    /// source is loaded before the query is served.
    Fresh,
    /// The source is checked in the background; an answer is never built
    /// from a generation verified longer ago than `max_staleness`.
    Eventual {
        /// Upper bound on how old the last successful check may be.
        max_staleness: Duration,
    },
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency::Eventual {
            max_staleness: Duration::from_secs(30),
        }
    }
}

/// A comparable version of a source: a Delta version, an Iceberg snapshot
/// id, a digest of a Parquet listing, or a managed commit sequence.
///
/// Only equality is meaningful across kinds; within a kind that has a
/// sequence, the string is that sequence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Generation(pub String);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-query knobs. `None` means the collection's (or index's) default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Number of nearest neighbours wanted.
    pub k: usize,
    /// IVF lists probed, counted as if the collection were one index; a
    /// collection split into partitions probes the same fraction of each
    /// partition's lists. `None`: the default for the collection's size.
    pub nprobe: Option<usize>,
    /// Candidate pool kept from the 1-bit estimate, as a multiple of `k`
    /// for the collection as a whole (each partition keeps its share).
    pub rerank: Option<usize>,
}

impl SearchParams {
    /// `k` nearest with the defaults for everything else.
    pub fn k(k: usize) -> Self {
        SearchParams {
            k,
            ..Default::default()
        }
    }
}

/// What a search asks for beyond the nearest rows: only rows matching a
/// filter, and payload columns returned with each hit. Kept apart from
/// [`SearchParams`] (a small `Copy` value every partition's plan is made
/// of) because it owns a tree and names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Only rows matching it are answers (`None`: every row).
    pub filter: Option<Filter>,
    /// Payload columns each hit carries.
    pub columns: Vec<String>,
}

impl Selection {
    /// True when the search is a plain nearest-neighbour search.
    pub fn is_empty(&self) -> bool {
        self.filter.is_none() && self.columns.is_empty()
    }

    /// Check every column named (by the filter or for output) is one of
    /// the collection's payload columns `names`.
    pub fn check_columns(&self, names: &[String]) -> Result<(), FilterError> {
        if let Some(f) = &self.filter {
            f.check_columns(names)?;
        }
        match self.columns.iter().find(|c| !names.contains(c)) {
            Some(c) => Err(FilterError::UnknownColumn {
                column: c.clone(),
                available: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            }),
            None => Ok(()),
        }
    }
}

/// One answer row: an id and its exact distance under the collection's metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The vector's id as the lake spells it.
    pub id: VectorId,
    /// Exact distance (smaller is nearer), see [`Metric`].
    pub distance: f32,
    /// The payload columns the search asked for ([`Selection::columns`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub columns: std::collections::BTreeMap<String, Value>,
}

impl Hit {
    /// A hit without payload columns.
    pub fn new(id: VectorId, distance: f32) -> Self {
        Hit {
            id,
            distance,
            columns: Default::default(),
        }
    }
}

/// Total order used everywhere a hit list is sorted: distance, then id, so
/// ties break the same way on every node and in every test.
#[inline]
pub fn hit_order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    a.distance
        .total_cmp(&b.distance)
        .then_with(|| a.id.cmp(&b.id))
}

/// Merge already-exact per-partition answers into the global top-`k`.
///
/// Each input must hold exact distances under one metric. An id that
/// appears in several inputs (the same row in two units of a lake) is kept
/// once, at its smallest distance, so an answer never repeats an id.
pub fn merge_topk<I>(lists: I, k: usize) -> Vec<Hit>
where
    I: IntoIterator<Item = Vec<Hit>>,
{
    let mut all: Vec<Hit> = lists.into_iter().flatten().collect();
    all.sort_by(hit_order);
    let mut seen = std::collections::HashSet::with_capacity(k * 2);
    let mut out = Vec::with_capacity(k);
    for h in all {
        if out.len() == k {
            break;
        }
        if seen.insert(h.id.clone()) {
            out.push(h);
        }
    }
    out
}

/// FNV-1a, 64 bit: stable across processes, versions and platforms, which
/// `std`'s hasher is not. Used to place source units and managed ids on
/// partitions, so every node computes the same placement.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final avalanche (from splitmix64) so nearby keys spread over partitions.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The partition in `0..partitions` that owns a unit key.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    (stable_hash(key.as_bytes()) % partitions.max(1) as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(id: u64, d: f32) -> Hit {
        Hit::new(VectorId::U64(id), d)
    }

    #[test]
    fn merge_orders_and_dedups() {
        let a = vec![h(1, 0.1), h(2, 0.5), h(3, 0.9)];
        let b = vec![h(4, 0.2), h(2, 0.4), h(5, 1.0)];
        let m = merge_topk([a, b], 4);
        let ids: Vec<_> = m.iter().map(|x| x.id.clone()).collect();
        assert_eq!(
            ids,
            vec![
                VectorId::U64(1),
                VectorId::U64(4),
                VectorId::U64(2),
                VectorId::U64(3)
            ]
        );
        assert_eq!(m[2].distance, 0.4);
    }

    #[test]
    fn metrics_match_definitions() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.0, 2.0, 0.0];
        assert_eq!(Metric::L2.distance(&a, &b), 5.0);
        assert_eq!(Metric::InnerProduct.distance(&a, &b), 0.0);
        assert!((Metric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        let c: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let naive: f32 = c.iter().map(|x| x * x).sum();
        assert_eq!(dot(&c, &c), naive);
    }

    #[test]
    fn stable_hash_is_stable() {
        // Pinned values: placement must never change between releases.
        assert_eq!(partition_of("a.parquet#0", 1), 0);
        assert_eq!(stable_hash(b""), stable_hash(b""));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
        let spread: std::collections::HashSet<u32> = (0..64)
            .map(|i| partition_of(&format!("f{i}.parquet#0"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn metric_parses() {
        assert_eq!("cosine".parse::<Metric>().unwrap(), Metric::Cosine);
        assert!("hamming".parse::<Metric>().is_err());
    }
}
