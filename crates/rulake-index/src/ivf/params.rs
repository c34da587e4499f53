//! The numbers a caller does not have to choose, and how a collection split
//! into partitions shares them.
//!
//! Why a module of its own: these defaults were tuned together on the
//! clustered benchmark (lists ≈ √rows, a probe fraction, a rerank multiple),
//! and the engine and coordinator compute a partition's share of a query
//! ([`split_search`]) without holding the index. Keeping the figures and the
//! arithmetic that splits them side by side stops one from being retuned
//! without the other.

/// Rows of the k-means training sample per list.
pub const SAMPLE_PER_LIST: usize = 64;
/// Lloyd iterations of the coarse quantizer.
pub const TRAIN_ITERS: usize = 10;
/// Default candidates kept from the 1-bit estimate, as a multiple of `k`.
/// Each is re-scored from its 8-bit code; only those whose error bound can
/// still beat the `k`-th exact distance load their full vector, so a wide
/// pool costs little (see `search`).
pub const DEFAULT_RERANK: usize = 40;
/// Largest rerank factor a search uses; a larger one is taken as this
/// (the same convention as `nprobe`, where asking for more lists than
/// exist probes them all). The pool a search keeps, `k × rerank`, never
/// holds more than the rows there are, so every rerank past `rows / k` is
/// already "all of them"; this bound only keeps a caller's 2³² − 1 from
/// meaning anything more, and at `k = 1` still covers a partition of a
/// million rows exhaustively.
pub const MAX_RERANK: usize = 1 << 20;

/// How to build a partition index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildParams {
    /// Number of IVF lists; `None` picks [`default_nlist`].
    pub nlist: Option<usize>,
    /// Lloyd iterations.
    pub train_iters: usize,
    /// Training rows per list.
    pub sample_per_list: usize,
    /// Seed for sampling, k-means and the rotation.
    pub seed: u64,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            nlist: None,
            train_iters: TRAIN_ITERS,
            sample_per_list: SAMPLE_PER_LIST,
            seed: 0x5275_4c61_6b65, // "RuLake"
        }
    }
}

/// Lists for `n` rows: about `√n`, so a list holds about `√n` rows and the
/// coarse and fine scans cost the same order of work.
pub fn default_nlist(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize)
        .clamp(1, 4096)
        .min(n.max(1))
}

/// Lists probed by default for `nlist` lists: an eightieth of the lists, at
/// least 8 (all of them for tiny partitions). Chosen on the clustered
/// benchmark to reach recall@10 ≥ 0.95 with [`DEFAULT_RERANK`] (see
/// docs/BENCHMARKS.md); the floor keeps small partitions of a split
/// collection from probing too few lists.
pub fn default_nprobe(nlist: usize) -> usize {
    (nlist / 80).max(8).min(nlist)
}

/// One partition's share of a search over a collection split into
/// partitions: `nprobe` and `rerank` describe the collection as if it were
/// one index of `total_rows` rows, and each partition gets its proportional
/// part. It probes the same *fraction* of its lists, and keeps a candidate
/// pool in proportion to its rows (a partition holding a quarter of the
/// rows holds, in expectation, a quarter of any query's true neighbours, and
/// ranks each of them four times higher locally). So a collection split in
/// `P` does the same total work as one partition, spread over `P` threads,
/// instead of `P` times the work. With one partition this is the identity.
///
/// Both knobs are clamped to what exists: `nprobe` to the lists (of the
/// partition, or of the collection as one index), `rerank` to
/// `1..=`[`MAX_RERANK`]; so a caller's 2³² − 1 asks for an exhaustive
/// search and nothing more.
pub fn split_search(
    total_rows: usize,
    part_rows: usize,
    part_nlist: usize,
    nprobe: Option<usize>,
    rerank: usize,
) -> (usize, usize) {
    let part_nlist = part_nlist.max(1);
    let rerank = rerank.clamp(1, MAX_RERANK);
    if part_rows >= total_rows {
        let nprobe = nprobe.unwrap_or_else(|| default_nprobe(part_nlist));
        return (nprobe.clamp(1, part_nlist), rerank);
    }
    let whole_nlist = default_nlist(total_rows).max(1);
    let nprobe = nprobe
        .unwrap_or_else(|| default_nprobe(whole_nlist))
        .clamp(1, whole_nlist);
    let fraction = nprobe as f64 / whole_nlist as f64;
    let share = part_rows as f64 / total_rows.max(1) as f64;
    let part_nprobe = ((fraction * part_nlist as f64).ceil() as usize).clamp(1, part_nlist);
    let part_rerank = ((rerank as f64 * share).ceil() as usize).max(1);
    (part_nprobe, part_rerank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nprobe_is_clamped_to_the_lists_that_exist() {
        // One partition: its own lists.
        assert_eq!(split_search(1000, 1000, 30, Some(30), 40).0, 30);
        assert_eq!(split_search(1000, 1000, 30, Some(31), 40).0, 30);
        assert_eq!(
            split_search(1000, 1000, 30, Some(u32::MAX as usize), 40).0,
            30
        );
        // One partition of several: at most all of its lists.
        assert_eq!(split_search(4000, 1000, 30, Some(usize::MAX), 40).0, 30);
    }

    #[test]
    fn rerank_is_clamped_to_its_maximum() {
        assert_eq!(split_search(10, 10, 1, None, MAX_RERANK).1, MAX_RERANK);
        assert_eq!(split_search(10, 10, 1, None, MAX_RERANK + 1).1, MAX_RERANK);
        assert_eq!(
            split_search(10, 10, 1, None, u32::MAX as usize).1,
            MAX_RERANK
        );
        // A partition's share of the largest rerank, not of 2³² − 1.
        assert_eq!(split_search(40, 10, 1, None, usize::MAX).1, MAX_RERANK / 4);
    }
}
