//! Filtered search: which rows of a partition a filter selects, and which
//! of two plans searches them.
//!
//! The filter is evaluated over the partition's cached payload columns
//! before anything is scored, giving the exact set of live matching rows
//! (so its cardinality is known, not estimated). Each partition then
//! chooses, as Qdrant chooses between its filtered HNSW walk and a plain
//! scan of the payload index's matches:
//!
//! - **exact scan of the matches** when few rows match: when the candidate
//!   pool (`k × rerank`) would hold every match anyway, or when the IVF
//!   plan below would have to probe every list. It reads only the matching
//!   rows' vectors and is exact, so it always answers `min(k, matches)`.
//! - **filtered IVF scan** otherwise: the non-matching rows are masked out
//!   of the index's candidate filter, before the candidate pool, so the
//!   pool holds only matching rows; and the partition probes
//!   `nprobe × live / matches` lists instead of `nprobe`, so the matching
//!   rows scanned are about as many as an unfiltered search scans rows
//!   (the filtered `k`-th neighbour lies about `1 / selectivity` times
//!   farther out in rank). Should the probed lists still hold fewer than
//!   `k` matches, the partition falls back to the exact scan: an answer
//!   never has fewer than `k` hits while `k` rows match.
//!
//! Filtered partitions do not share the `k`-th best distance with their
//! siblings ([`rulake_index::SharedKth`]): that bound may legitimately stop
//! a partition short of `k`, and the fallback needs to tell a short answer
//! from a pruned one.
//!
//! Before any row is evaluated, the filter is checked against the
//! partition's zone map (min, max and null count of every payload column,
//! kept with the partition): a partition it cannot match answers nothing
//! without a row counted, and one every row of which matches skips the
//! per-row evaluation. (The lake's own statistics prune earlier, at load,
//! for a collection's standing filter: see `rulake-lake`'s `stats`.)

use crate::{CachedPartition, EngineError, Result};
use rulake_index::{Deadline, IndexError, DEFAULT_RERANK};
use rulake_types::{Filter, SearchParams, Verdict};

/// A partition's rows a filter selects.
#[derive(Debug, Default)]
pub(crate) struct Selected {
    /// Bitset of rows deleted or not matching (what the index skips).
    exclude: Vec<u64>,
    /// Live matching positions, ascending.
    positions: Vec<u32>,
}

impl Selected {
    /// Rows that match and are live.
    pub(crate) fn matches(&self) -> usize {
        self.positions.len()
    }
}

/// Which plan a partition's filtered search ran, for tests and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Exact distances to every matching row.
    Exact,
    /// IVF with the non-matching rows masked, probing this many lists.
    Ivf(usize),
}

/// Evaluate `filter` over `part`'s payload, leaving out rows in the
/// `deleted` bitset and rows the index tombstoned.
pub(crate) fn select(part: &CachedPartition, deleted: &[u64], filter: &Filter) -> Result<Selected> {
    let bound = filter.bind(&part.payload)?;
    let n = part.index.len();
    let mut exclude = vec![u64::MAX; n.div_ceil(64)];
    let mut positions = Vec::new();
    let every = match filter.prune(&part.zones) {
        Verdict::None => return Ok(Selected { exclude, positions }),
        Verdict::All => true,
        Verdict::Some => false,
    };
    for pos in 0..n as u32 {
        let deleted = deleted
            .get(pos as usize / 64)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0);
        if deleted || part.index.is_tombstoned(pos) || !(every || bound.matches(pos as usize)) {
            continue;
        }
        exclude[pos as usize / 64] &= !(1 << (pos % 64));
        positions.push(pos);
    }
    Ok(Selected { exclude, positions })
}

/// The plan for `selected` rows of `part` at the partition's planned
/// parameters `p` (see the module docs).
pub(crate) fn plan(part: &CachedPartition, selected: &Selected, p: SearchParams) -> Plan {
    let matches = selected.matches().max(1);
    let nlist = part.index.nlist().max(1);
    let rerank = p.rerank.unwrap_or(DEFAULT_RERANK).max(1);
    let nprobe = p
        .nprobe
        .unwrap_or_else(|| part.index.default_probes_for(p.k, 1.0))
        .max(1);
    let live = part.index.live_len().max(matches);
    let scaled = (nprobe as u128 * live as u128).div_ceil(matches as u128);
    if selected.matches() <= p.k.saturating_mul(rerank) || scaled >= nlist as u128 {
        Plan::Exact
    } else {
        Plan::Ivf(scaled as usize)
    }
}

/// `part`'s nearest `selected` rows as `(position, exact distance)`.
pub(crate) fn search(
    part: &CachedPartition,
    selected: &Selected,
    query: &[f32],
    p: SearchParams,
    deadline: Deadline,
) -> Result<(Plan, Vec<(u32, f32)>)> {
    if selected.positions.is_empty() {
        return Ok((Plan::Exact, Vec::new()));
    }
    let exact = || {
        part.index
            .exact_search_among(query, p.k, &selected.positions, deadline)
            .map_err(index_error)
    };
    match plan(part, selected, p) {
        Plan::Exact => Ok((Plan::Exact, exact()?)),
        Plan::Ivf(nprobe) => {
            let hits = part
                .index
                .search_within(
                    query,
                    p.k,
                    Some(nprobe),
                    p.rerank,
                    &selected.exclude,
                    None,
                    deadline,
                )
                .map_err(index_error)?;
            if hits.len() < p.k.min(selected.matches()) {
                return Ok((Plan::Exact, exact()?));
            }
            Ok((Plan::Ivf(nprobe), hits))
        }
    }
}

/// An index error of a search as the engine reports it.
pub(crate) fn index_error(e: IndexError) -> EngineError {
    match e {
        IndexError::DeadlineExceeded => EngineError::deadline(),
        e => EngineError::InvalidArgument(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulake_index::{BuildParams, PartitionIndex};
    use rulake_types::{filter::parse, Column, ColumnType, Generation, Metric, Payload, Value};

    /// 100 rows, `year` 2020..2029 with nulls every tenth row.
    fn partition() -> CachedPartition {
        let n = 100;
        let ids = (0..n as u64).map(rulake_types::VectorId::U64).collect();
        let vectors = (0..n * 4).map(|i| (i % 17) as f32).collect();
        let index =
            PartitionIndex::build(4, Metric::L2, ids, vectors, BuildParams::default()).unwrap();
        let payload = Payload {
            columns: vec![Column {
                name: "year".into(),
                ty: Some(ColumnType::Int),
                values: (0..n)
                    .map(|i| {
                        if i % 10 == 0 {
                            Value::Null
                        } else {
                            Value::Int(2020 + (i % 10) as i64)
                        }
                    })
                    .collect(),
            }],
        };
        CachedPartition::new(
            index,
            Generation("g".into()),
            Default::default(),
            payload,
            None,
        )
    }

    #[test]
    fn the_zone_map_decides_before_any_row_is_evaluated() {
        let part = partition();
        let rows = |text: &str| select(&part, &[], &parse(text).unwrap()).unwrap().positions;
        // Ruled out by the zone map: nothing selected.
        assert!(rows("year > 2100").is_empty());
        assert!(rows("year < 2021").is_empty());
        // Every non-null row, by the zone map, plus the nulls by rows.
        assert_eq!(rows("year >= 2021 or year is null").len(), 100);
        assert_eq!(rows("year >= 2021").len(), 90);
        assert_eq!(rows("year = 2025").len(), 10);
        // Every row, nulls too (a predicate on a null is false, so its
        // negation is true), decided by the zone map alone.
        let none_above = parse("not year > 2100").unwrap();
        assert_eq!(none_above.prune(&part.zones), Verdict::All);
        assert_eq!(rows("not year > 2100").len(), 100);
    }
}
