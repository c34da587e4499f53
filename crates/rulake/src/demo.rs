//! `rulake demo`: the README's first command. Everything it prints is
//! measured in this run, on one dataset and one query set.

use crate::measure::{bar, engine_run, ground_truth, mean_recall, write_lake};
use rulake_datasets::ClusteredGaussian;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_index::baseline::FlatRabitq;
use rulake_lake::{ParquetSource, ParquetSourceConfig, ID_COLUMN, VECTOR_COLUMN};
use rulake_types::{Consistency, Metric, SearchParams};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `rulake demo` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors in the generated lake.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Gaussian clusters.
    #[arg(long, default_value_t = 100)]
    pub clusters: usize,
    /// Queries to run (drawn independently of the lake).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Directory of the generated lake (reused when it already matches).
    #[arg(long, default_value = "rulake-demo-lake")]
    pub lake: PathBuf,
}

/// One row of the demo's table.
struct Row {
    label: String,
    recall: f64,
    qps: f64,
    /// Seconds to build the index or the partition caches.
    build: f64,
}

/// Run the demo and print its table.
pub async fn run(a: Args) -> anyhow::Result<()> {
    let g = ClusteredGaussian::new(a.dim, a.clusters, 0.15, 7);
    let lake = a.lake.join(format!("n{}-d{}-c{}", a.n, a.dim, a.clusters));
    let _ = std::fs::remove_dir_all(&lake);
    let files = 16;
    let data = write_lake(&lake, &g, a.n, a.dim, files, 4)?;
    let queries: Vec<Vec<f32>> = g
        .sample(a.queries, 999_999)
        .chunks(a.dim)
        .map(|q| q.to_vec())
        .collect();
    eprintln!("computing exact ground truth for {} queries ...", a.queries);
    let truth = ground_truth(&data, a.dim, Metric::L2, &queries, a.k);
    let mut rows = vec![flat_row(&a, &data, &queries, &truth)?];
    rows.extend(engine_rows(&a, &lake, &queries, &truth).await?);
    print_table(&a, &rows, &lake);
    Ok(())
}

/// The bare flat RaBitQ+ index at the prototype's rerank x20.
fn flat_row(
    a: &Args,
    data: &[f32],
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
) -> anyhow::Result<Row> {
    let t = Instant::now();
    let flat = FlatRabitq::build(a.dim, data, 20)?;
    let build = t.elapsed().as_secs_f64();
    let pb = bar(queries.len() as u64, "flat RaBitQ+");
    let t = Instant::now();
    let found: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            pb.inc(1);
            flat.search(q, a.k)
                .map(|r| r.into_iter().map(|(i, _)| i as u64).collect())
        })
        .collect::<Result<_, _>>()?;
    pb.finish_and_clear();
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    Ok(Row {
        label: "RabitqPlusIndex flat, rerank x20".into(),
        recall: mean_recall(&found, truth),
        qps,
        build,
    })
}

/// The engine configurations the demo compares: label, partitions,
/// consistency.
fn engine_configs() -> Vec<(String, u32, Consistency)> {
    let eventual = Consistency::Eventual {
        max_staleness: Duration::from_secs(30),
    };
    vec![
        ("RuLake fresh, P=1".into(), 1, Consistency::Fresh),
        ("RuLake eventual, P=1".into(), 1, eventual),
        ("RuLake eventual, P=2".into(), 2, eventual),
        ("RuLake eventual, P=4".into(), 4, eventual),
    ]
}

/// Each of [`engine_configs`] as a collection over `lake`: build its
/// caches, run the queries, drop it.
async fn engine_rows(
    a: &Args,
    lake: &Path,
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
) -> anyhow::Result<Vec<Row>> {
    let engine = RuLake::new(CacheConfig::default());
    let url = lake.canonicalize()?.to_string_lossy().into_owned();
    let source = ParquetSource::open(ParquetSourceConfig::new(url, ID_COLUMN, VECTOR_COLUMN))?;
    engine.register_source("lake", Arc::new(source))?;
    let params = SearchParams::k(a.k);
    let mut rows = Vec::new();
    for (i, (label, p, consistency)) in engine_configs().into_iter().enumerate() {
        let name = format!("demo-{i}");
        engine.create_collection(
            CollectionSpec::new(&name, "lake", a.dim)
                .partitions(p)
                .consistency(consistency),
        )?;
        eprintln!("{label}: building partition caches from the lake ...");
        let t = Instant::now();
        engine.refresh(&name).await?;
        let build = t.elapsed().as_secs_f64();
        let (recall, qps) = engine_run(&engine, &name, queries, truth, params).await?;
        rows.push(Row {
            label,
            recall,
            qps,
            build,
        });
        engine.drop_collection(&name)?;
    }
    Ok(rows)
}

/// The table, with the run's parameters above it and the lake below.
fn print_table(a: &Args, rows: &[Row], lake: &Path) {
    println!();
    println!(
        "RuLake demo: n = {}, D = {}, {} clusters, {} queries, k = {} (recall@{} against an exact scan; queries run one at a time)",
        a.n, a.dim, a.clusters, a.queries, a.k, a.k
    );
    println!();
    println!(
        "| {:<34} | {:>9} | {:>10} | {:>9} |",
        "configuration", "recall@10", "queries/s", "build s"
    );
    println!("|{:-<36}|{:->11}|{:->12}|{:->11}|", "", "", "", "");
    for r in rows {
        println!(
            "| {:<34} | {:>9.3} | {:>10.0} | {:>9.2} |",
            r.label, r.recall, r.qps, r.build
        );
    }
    println!();
    println!("RuLake P>1 fans out over partitions in parallel (one query at a time, so P=2/4 shows fan-out speed-up, not batch throughput).");
    println!("Lake: {}", lake.display());
}
