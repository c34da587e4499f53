//! The parameters each partition is searched with.
//!
//! A collection's `nprobe` and `rerank` describe the work of one search
//! over the whole collection, however many partitions it is split into.
//! They are therefore shared out over the partitions by their sizes
//! ([`rulake_index::split_search`]) instead of being applied to each:
//! more partitions spread the same work over more threads rather than
//! multiplying it. A shard node holding some partitions plans with the
//! collection-wide vector count, so each partition gets the share it
//! gets in one process and a cluster's answer equals the single-process
//! answer.
//!
//! A query that names no `nprobe` (and whose collection names none) is
//! not shared out that way: each partition probes what it calibrated for
//! the collection's target recall on its own rows, times the
//! collection's live re-tuning factor (see `retune`), widened for a `k`
//! above the 10 calibration measured
//! (`rulake_index::PartitionIndex::default_probes_for`).

use crate::{CachedPartition, CollectionSpec};
use rulake_types::SearchParams;
use std::sync::Arc;

/// A query's parameters with the collection's defaults filled in.
pub(crate) fn effective(spec: &CollectionSpec, params: SearchParams) -> SearchParams {
    SearchParams {
        k: params.k,
        nprobe: params.nprobe.or(spec.nprobe),
        rerank: params.rerank.or(Some(spec.rerank)),
    }
}

/// The parameters each partition of one collection is searched with: the
/// collection-wide `nprobe` and `rerank` shared out by
/// [`rulake_index::split_search`], so splitting a collection into more
/// partitions spreads the same work over more threads rather than
/// multiplying it. The answer of a search is exactly the merge of each
/// partition's answer at these parameters.
pub fn partition_params(
    parts: &[Arc<CachedPartition>],
    p: SearchParams,
    factor: f32,
) -> Vec<SearchParams> {
    let total: usize = parts.iter().map(|x| x.index.len()).sum();
    plan_with_total(parts, p, total, factor)
}

/// [`partition_params`] for some partitions of a collection of `total`
/// vectors (a shard node holds only some of them). `factor` scales the
/// calibrated probes of a search at the defaults.
pub(crate) fn plan_with_total(
    parts: &[Arc<CachedPartition>],
    p: SearchParams,
    total: usize,
    factor: f32,
) -> Vec<SearchParams> {
    let rerank = p.rerank.unwrap_or(rulake_index::DEFAULT_RERANK);
    parts
        .iter()
        .map(|part| {
            let (nprobe, rerank) = rulake_index::split_search(
                total,
                part.index.len(),
                part.index.nlist(),
                p.nprobe,
                rerank,
            );
            let nprobe = match p.nprobe {
                Some(_) => nprobe,
                None => part.index.default_probes_for(p.k, factor),
            };
            SearchParams {
                k: p.k,
                nprobe: Some(nprobe),
                rerank: Some(rerank),
            }
        })
        .collect()
}
