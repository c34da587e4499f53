//! Shared measurement: write a lake, time queries, compute recall. The demo
//! and the benchmark use the same code so their figures mean the same.

use indicatif::{ProgressBar, ProgressStyle};
use rulake_datasets::Generator;
use rulake_engine::{CacheConfig, RecallConfig, RuLake};
use rulake_index::exact;
use rulake_lake::{
    write_parquet_file, IdsRef, ParquetSource, ParquetSourceConfig, ID_COLUMN, VECTOR_COLUMN,
};
use rulake_types::{Metric, SearchParams, VectorId};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A progress bar on stderr with RuLake's style.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Write `n` generated vectors as `files` Parquet files of `row_groups`
/// row groups each under `dir`; returns the vectors (row i has id i).
pub fn write_lake(
    dir: &Path,
    g: &impl Generator,
    n: usize,
    dim: usize,
    files: usize,
    row_groups: usize,
) -> anyhow::Result<Vec<f32>> {
    std::fs::create_dir_all(dir)?;
    let pb = bar(n as u64, "writing lake");
    let per_file = n.div_ceil(files);
    let mut all = Vec::with_capacity(n * dim);
    for f in 0..files {
        let start = f * per_file;
        let end = ((f + 1) * per_file).min(n);
        if start >= end {
            break;
        }
        let v = g.sample(end - start, 1000 + f as u64);
        let ids: Vec<u64> = (start as u64..end as u64).collect();
        write_parquet_file(
            &dir.join(format!("part-{f:04}.parquet")),
            IdsRef::U64(&ids),
            &v,
            dim,
            (end - start).div_ceil(row_groups),
        )?;
        all.extend_from_slice(&v);
        pb.inc((end - start) as u64);
    }
    pb.finish();
    Ok(all)
}

/// An engine for measuring, with the Parquet lake at `lake` registered as
/// the source `lake`: a 16 GiB budget, nothing persisted, and live recall
/// sampling off, since its background exact scans (up to ten a second,
/// each reading every vector) would share the cores and the memory bus
/// with the searches measured and move the figures by whatever they
/// happened to overlap.
pub fn measuring_engine(lake: &Path) -> anyhow::Result<RuLake> {
    let engine = RuLake::with_recall(
        CacheConfig {
            budget_bytes: 16 << 30,
            persist_dir: None,
        },
        RecallConfig {
            sample_fraction: 0.0,
            ..RecallConfig::default()
        },
    );
    let src = ParquetSource::open(ParquetSourceConfig::new(
        lake.canonicalize()?.to_string_lossy(),
        ID_COLUMN,
        VECTOR_COLUMN,
    ))?;
    engine.register_source("lake", Arc::new(src))?;
    Ok(engine)
}

/// Exact top-k ids (as row numbers = ids) for every query.
pub fn ground_truth(
    data: &[f32],
    dim: usize,
    metric: Metric,
    queries: &[Vec<f32>],
    k: usize,
) -> Vec<Vec<u64>> {
    let flat: Vec<f32> = queries.iter().flatten().copied().collect();
    exact::batch_topk(data, dim, metric, &flat, k)
        .into_iter()
        .map(|r| r.into_iter().map(|(i, _)| i as u64).collect())
        .collect()
}

/// Mean recall of id lists against the truth.
pub fn mean_recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    found
        .iter()
        .zip(truth)
        .map(|(f, t)| exact::recall(f, t))
        .sum::<f64>()
        / truth.len().max(1) as f64
}

/// Run queries one after another through the engine; returns (recall, queries/s).
pub async fn engine_run(
    engine: &RuLake,
    collection: &str,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    params: SearchParams,
) -> anyhow::Result<(f64, f64)> {
    // Warm: the first query loads the collection; it is not timed.
    engine.search(collection, &queries[0], params).await?;
    let t = Instant::now();
    let mut found = Vec::with_capacity(queries.len());
    for q in queries {
        let r = engine.search(collection, q, params).await?;
        found.push(r.hits.into_iter().map(|h| recall_id(h.id)).collect());
    }
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    Ok((mean_recall(&found, truth), qps))
}

/// The benchmark lakes have u64 ids; a string id (never expected) maps to a
/// value no ground truth holds, so it counts as a miss.
pub fn recall_id(id: VectorId) -> u64 {
    match id {
        VectorId::U64(v) => v,
        VectorId::Str(_) => u64::MAX,
    }
}
