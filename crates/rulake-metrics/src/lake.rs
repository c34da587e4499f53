//! Scrape-time metrics of lake I/O per source kind: bytes and GET requests
//! of object data, listings and HEADs (what generation checks cost),
//! failed source operations, and the reads a standing filter's pruning
//! saved (files and row groups never read, and their bytes).
//!
//! `rulake_lake::io` counts them where every source's reads pass (the
//! object store each source opens, and the engine's wrapper around each
//! source it serves); [`LakeCollector`] reads those counters when
//! Prometheus scrapes and counts nothing itself. The counters are
//! process-wide, so a process registers one collector whatever its roles.
//!
//! The only label is `kind`, a closed set (`parquet`, `delta`, `iceberg`,
//! `managed`, plus `memory` for errors): never a path, table or collection.
//! Bytes and requests exist only for the kinds that read objects; the
//! memory source holds its rows in the process.

use crate::Result;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};
use rulake_lake::io::{snapshot, LakeKind};
use std::sync::Mutex;

struct Families {
    bytes: IntCounterVec,
    requests: IntCounterVec,
    lists: IntCounterVec,
    heads: IntCounterVec,
    errors: IntCounterVec,
    pruned_files: IntCounterVec,
    pruned_row_groups: IntCounterVec,
    pruned_bytes: IntCounterVec,
}

/// Reads the process's lake I/O counters at scrape time (see the module
/// docs).
pub struct LakeCollector {
    families: Mutex<Families>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for LakeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeCollector").finish_non_exhaustive()
    }
}

fn set(c: &IntCounterVec, kind: LakeKind, v: u64) {
    let c = c.with_label_values(&[kind.as_str()]);
    c.reset();
    c.inc_by(v);
}

impl LakeCollector {
    /// A collector (register it with [`crate::Metrics::register`]).
    pub fn new() -> Result<Self> {
        let vec = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["kind"]);
        let families = Families {
            bytes: vec(
                "lake_read_bytes_total",
                "Bytes of lake objects returned by successful GET requests (whole objects and byte ranges), by source kind.",
            )?,
            requests: vec(
                "lake_read_requests_total",
                "Successful GET requests for lake object data, by source kind: each whole-object GET and each byte range of a ranged or multi-range read counts once; listings and HEADs are not counted.",
            )?,
            lists: vec(
                "lake_list_requests_total",
                "Listings of a lake prefix started, by source kind (a Parquet prefix's generation check, a Delta log listing, a load); a listing of more than one page counts once.",
            )?,
            heads: vec(
                "lake_head_requests_total",
                "HEAD requests (one object's metadata, no data), by source kind: a Delta table's cheap generation check, a probe of a single-object URL.",
            )?,
            errors: vec(
                "lake_read_errors_total",
                "Source operations that failed, by source kind: a generation check, a listing or the read of one unit ending in an error (failed request, vanished object, undecodable file).",
            )?,
            pruned_files: vec(
                "lake_pruned_files_total",
                "Lake files a collection's standing filter left unread, footer included, because their table metadata (Delta partition values and add statistics, Iceberg manifest bounds) rules out every row; counted once per load by the partition the file hashes to, by source kind.",
            )?,
            pruned_row_groups: vec(
                "lake_pruned_row_groups_total",
                "Parquet row groups a collection's standing filter left unread because their footer statistics rule out every row; counted once per load by the partition that would have read them, by source kind.",
            )?,
            pruned_bytes: vec(
                "lake_pruned_bytes_total",
                "Bytes of the pruned files (their size) and row groups (compressed size) not read, by source kind.",
            )?,
        };
        let descs = [
            &families.bytes,
            &families.requests,
            &families.lists,
            &families.heads,
            &families.errors,
            &families.pruned_files,
            &families.pruned_row_groups,
            &families.pruned_bytes,
        ]
        .into_iter()
        .flat_map(|c| c.desc().into_iter().cloned())
        .collect();
        Ok(LakeCollector {
            families: Mutex::new(families),
            descs,
        })
    }
}

impl Collector for LakeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        for kind in LakeKind::OBJECT_KINDS {
            let s = snapshot(kind);
            set(&f.bytes, kind, s.bytes);
            set(&f.requests, kind, s.requests);
            set(&f.lists, kind, s.lists);
            set(&f.heads, kind, s.heads);
            set(&f.pruned_files, kind, s.pruned_files);
            set(&f.pruned_row_groups, kind, s.pruned_row_groups);
            set(&f.pruned_bytes, kind, s.pruned_bytes);
        }
        for kind in LakeKind::ALL {
            let s = snapshot(kind);
            // `other` (a source kind this build does not define) only
            // appears once such a source failed.
            if kind != LakeKind::Other || s.errors > 0 {
                set(&f.errors, kind, s.errors);
            }
        }
        [
            &f.bytes,
            &f.requests,
            &f.lists,
            &f.heads,
            &f.errors,
            &f.pruned_files,
            &f.pruned_row_groups,
            &f.pruned_bytes,
        ]
        .into_iter()
        .flat_map(|c| c.collect())
        .collect()
    }
}
