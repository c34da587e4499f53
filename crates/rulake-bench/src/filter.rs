//! `rulake-bench filter`: filtered search against an exact filtered scan
//! at 50, 10, 1 and 0.1 % selectivity (section `filter`).
//!
//! The rows get an integer payload column (`year`, here a bucket 0..999
//! from a hash of the id, so it is independent of where a vector lies) and
//! the filter `year < t` selects `t / 1000` of them. The Parquet files are
//! written by pyarrow through the reference writers. For each selectivity
//! the command measures recall@k by distance against a brute-force scan of
//! the matching rows, counts answers shorter than `min(k, matches)`, which
//! must be zero, and reports queries per second at the collection's
//! defaults.

use crate::report;
use rulake_datasets::{ClusteredGaussian, ReferenceWriters};
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{ParquetSource, ParquetSourceConfig};
use rulake_types::{stable_hash, Filter, Metric, SearchParams, Selection, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// `rulake-bench filter` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Partitions.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Queries per selectivity.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Working directory for the generated files (emptied first).
    #[arg(long, default_value = "rulake-demo-lake/filter")]
    pub work: PathBuf,
    /// Markdown report to write (its `filter` section only).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

fn bucket(id: u64) -> i64 {
    (stable_hash(&id.to_le_bytes()) % 1000) as i64
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let w = ReferenceWriters::find()?;
    if a.work.exists() {
        std::fs::remove_dir_all(&a.work)?;
    }
    std::fs::create_dir_all(&a.work)?;
    let g = ClusteredGaussian::new(a.dim, 100, 0.15, 42);
    let vectors = g.sample(a.n, 1);
    let jsonl = a.work.join("rows.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        for (i, v) in vectors.chunks(a.dim).enumerate() {
            let row = serde_json::json!({"id": i, "vector": v, "year": bucket(i as u64)});
            writeln!(f, "{row}")?;
        }
    }
    eprintln!("writing {} rows with pyarrow ...", a.n);
    let lake = a.work.join("lake");
    w.payload_write(false, &lake, &jsonl, 8)?;
    let e = RuLake::new(CacheConfig::default());
    let src = ParquetSource::open(ParquetSourceConfig::new(
        lake.to_str().unwrap_or_default(),
        "id",
        "vector",
    ))?;
    e.register_source("f", Arc::new(src))?;
    e.create_collection(
        CollectionSpec::new("f", "f", a.dim)
            .partitions(a.partitions)
            .payload_columns(["year"]),
    )?;
    let queries = g.sample(a.queries, 99);
    let t = Instant::now();
    e.search("f", &queries[..a.dim], SearchParams::k(a.k))
        .await?;
    let load_s = t.elapsed().as_secs_f64();

    // Recall and short answers do not depend on the build; queries/s do.
    let profile = if cfg!(debug_assertions) {
        "a dev-profile build (queries/s are not release figures)"
    } else {
        "a release build"
    };
    let mut body = String::new();
    writeln!(
        body,
        "## Filtered search (`rulake-bench filter`)\n\n\
         `rulake-bench filter --n {} --dim {} --partitions {} --queries {}`, {profile}: \
         {} clustered {}-d vectors in 8 Parquet files written by pyarrow, an integer payload column \
         (a hash of the id into 0..999, independent of the vectors) filtered with `year < t`; \
         recall@{} by distance against a brute-force scan of the matching rows, at the collection's \
         defaults (calibrated nprobe, rerank 40). Lake to first answer {load_s:.1} s.\n",
        a.n, a.dim, a.partitions, a.queries, a.n, a.dim, a.k
    )?;
    writeln!(
        body,
        "| selectivity | rows matching | recall@{} | answers short of min(k, matches) | queries/s |\n|---|---|---|---|---|",
        a.k
    )?;
    for (label, t) in [
        ("none (unfiltered)", 1000),
        ("50 %", 500),
        ("10 %", 100),
        ("1 %", 10),
        ("0.1 %", 1),
    ] {
        let sel = Selection {
            filter: (t < 1000).then(|| Filter::Range {
                column: "year".into(),
                gt: None,
                gte: None,
                lt: Some(Value::Int(t)),
                lte: None,
            }),
            columns: Vec::new(),
        };
        let matching: Vec<usize> = (0..a.n).filter(|&i| bucket(i as u64) < t).collect();
        let mut recall = 0.0;
        let mut short = 0;
        let mut searched = 0.0;
        for q in queries.chunks(a.dim) {
            let mut exact: Vec<f32> = matching
                .iter()
                .map(|&i| Metric::L2.distance(q, &vectors[i * a.dim..(i + 1) * a.dim]))
                .collect();
            exact.sort_by(f32::total_cmp);
            exact.truncate(a.k);
            let started = Instant::now();
            let got = e
                .search_selected("f", q, SearchParams::k(a.k), &sel, None)
                .await?;
            searched += started.elapsed().as_secs_f64();
            if got.hits.len() < a.k.min(matching.len()) {
                short += 1;
            }
            if let Some(&kth) = exact.last() {
                let found = got
                    .hits
                    .iter()
                    .filter(|h| h.distance <= kth * (1.0 + 1e-4) + 1e-6)
                    .count();
                recall += found as f64 / exact.len() as f64;
            }
        }
        let nq = (queries.len() / a.dim) as f64;
        writeln!(
            body,
            "| {label} | {} | {:.4} | {short} | {:.0} |",
            matching.len(),
            recall / nq,
            nq / searched
        )?;
        eprintln!("{label}: recall {:.4}, short {short}", recall / nq);
    }
    writeln!(
        body,
        "\nTarget: recall@{} ≥ 0.95 at every selectivity and no short answer. Plans (docs/api.md, \
         \"Plans\"): the exact scan of the matches takes over where the IVF plan would probe every \
         list or the matches fit the candidate pool.",
        a.k
    )?;
    report::write_section(&a.output, "filter", &body)?;
    Ok(())
}
