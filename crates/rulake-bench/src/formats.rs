//! `rulake-bench formats`: what a table format costs in front of the same
//! vectors. One set of Parquet files is served three ways, as a plain
//! prefix, as a Delta table and as an Iceberg table (both written by the
//! formats' reference Python writers from those files), and for each the
//! command measures the time from the lake to the first answered query and
//! the refresh after an append, then rewrites its own section of
//! `docs/BENCHMARKS.md`.

use crate::report;
use rulake::measure::write_lake;
use rulake_datasets::ClusteredGaussian;
use rulake_datasets::ReferenceWriters;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::io::{snapshot, LakeKind};
use rulake_lake::{
    write_parquet_file, DeltaSource, DeltaSourceConfig, IcebergSource, IcebergSourceConfig, IdsRef,
    ParquetSource, ParquetSourceConfig, Source,
};
use rulake_types::{Consistency, SearchParams};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `rulake-bench formats` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors in each table.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Rows appended before the refresh measurement.
    #[arg(long, default_value_t = 10_000)]
    pub append: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Partitions per collection.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Working directory for the generated tables (emptied first).
    #[arg(long, default_value = "rulake-demo-lake/formats")]
    pub work: PathBuf,
    /// Markdown report to write (its `formats` section only).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

/// Figures for one source kind.
struct Row {
    kind: &'static str,
    write_s: f64,
    units: usize,
    generation: String,
    first_answer_s: f64,
    /// Lake bytes read (GET bodies) up to the first answer.
    first_bytes: u64,
    noop_check_s: f64,
    refresh_s: f64,
    builds: u64,
    incremental: u64,
}

/// The 1-minute load average, for the report (`unknown` off Linux).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

async fn measure(
    kind: &'static str,
    write_s: f64,
    source: Arc<dyn Source>,
    a: &Args,
    query: &[f32],
    append: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Row> {
    eprintln!("[{kind}] loading {} ...", source.describe());
    let e = RuLake::new(CacheConfig::default());
    e.register_source(kind, source.clone())?;
    e.create_collection(
        CollectionSpec::new(kind, kind, a.dim)
            .partitions(a.partitions)
            .consistency(Consistency::Fresh),
    )?;
    let lake = LakeKind::of(kind);
    let read_before = snapshot(lake).bytes;
    let t = Instant::now();
    let first = e.search(kind, query, SearchParams::k(10)).await?;
    let first_answer_s = secs(t);
    let first_bytes = snapshot(lake).bytes - read_before;
    let units = source.list_units().await?.units.len();
    // A fresh query with nothing new: the generation check alone.
    let t = Instant::now();
    e.search(kind, query, SearchParams::k(10)).await?;
    let noop_check_s = secs(t);
    eprintln!(
        "[{kind}] first answer after {first_answer_s:.2} s; appending {} rows ...",
        a.append
    );
    append()?;
    let before = e.cache_stats();
    let t = Instant::now();
    let after = e.search(kind, query, SearchParams::k(10)).await?;
    let refresh_s = secs(t);
    anyhow::ensure!(
        after.generation != first.generation,
        "{kind}: the append did not change the generation"
    );
    let stats = e.cache_stats();
    eprintln!("[{kind}] refreshed after {refresh_s:.2} s");
    Ok(Row {
        kind,
        write_s,
        units,
        generation: after.generation.0,
        first_answer_s,
        first_bytes,
        noop_check_s,
        refresh_s,
        builds: stats.builds - before.builds,
        incremental: stats.incremental_builds - before.incremental_builds,
    })
}

fn parquet_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    v.retain(|p| p.extension().is_some_and(|x| x == "parquet"));
    v.sort();
    Ok(v)
}

/// Run the benchmark.
pub async fn run(a: Args) -> anyhow::Result<()> {
    let w = ReferenceWriters::find()?;
    let load_at_start = load_average();
    if a.work.exists() {
        std::fs::remove_dir_all(&a.work)?;
    }
    let g = ClusteredGaussian::new(a.dim, 100, 0.15, 42);
    let base = a.work.join("parquet");
    let t = Instant::now();
    write_lake(&base, &g, a.n, a.dim, 16, 4)?;
    let parquet_write_s = secs(t);
    let files = parquet_files(&base)?;
    // The appended rows, as one more Parquet file outside the prefix.
    let extra = a.work.join("append.parquet");
    let ids: Vec<u64> = (a.n as u64..(a.n + a.append) as u64).collect();
    write_parquet_file(
        &extra,
        IdsRef::U64(&ids),
        &g.sample(a.append, 7),
        a.dim,
        a.append,
    )?;
    let query = g.sample(1, 99);

    eprintln!("writing the Delta table with the reference writer ...");
    let delta = a.work.join("delta");
    let t = Instant::now();
    w.delta_append(&delta, &files, false)?;
    let delta_write_s = secs(t);
    eprintln!("writing the Iceberg table with the reference writer ...");
    let wh = a.work.join("iceberg");
    let t = Instant::now();
    w.iceberg_append(&wh, "bench.emb", &files, false)?;
    let iceberg_write_s = secs(t);

    let mut rows = Vec::new();
    let src = ParquetSource::open(ParquetSourceConfig::new(
        base.to_str().unwrap_or_default(),
        "id",
        "vector",
    ))?;
    let (extra_c, base_c) = (extra.clone(), base.clone());
    rows.push(
        measure(
            "parquet",
            parquet_write_s,
            Arc::new(src),
            &a,
            &query,
            move || {
                std::fs::copy(&extra_c, base_c.join("part-append.parquet"))?;
                Ok(())
            },
        )
        .await?,
    );
    let src = DeltaSource::open(DeltaSourceConfig::new(
        delta.to_str().unwrap_or_default(),
        "id",
        "vector",
    ))?;
    rows.push(
        measure("delta", delta_write_s, Arc::new(src), &a, &query, || {
            Ok(w.delta_append(&delta, std::slice::from_ref(&extra), false)?)
        })
        .await?,
    );
    let table = wh.join("bench").join("emb");
    let src = IcebergSource::open(IcebergSourceConfig::new(
        table.to_str().unwrap_or_default(),
        "id",
        "vector",
    ))?;
    rows.push(
        measure(
            "iceberg",
            iceberg_write_s,
            Arc::new(src),
            &a,
            &query,
            || {
                w.iceberg_append(&wh, "bench.emb", std::slice::from_ref(&extra), false)?;
                Ok(())
            },
        )
        .await?,
    );

    let mut md = String::new();
    writeln!(
        md,
        "## Lake formats: Parquet prefix, Delta table, Iceberg table\n"
    )?;
    writeln!(
        md,
        "Produced by `cargo run {}-p rulake-bench -- formats --n {} --append {}`; one run, local disk, {} threads available.\n",
        // The profile the figures came from: a dev build (opt-level 1 for
        // RuLake, 2 for dependencies) is slower than a release one.
        if cfg!(debug_assertions) {
            ""
        } else {
            "--release "
        },
        a.n,
        a.append,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    )?;
    writeln!(
        md,
        "- Load average (1 min) when the run started: {load_at_start}; when it ended: {}. Figures taken on a busy machine are slower than on an idle one.",
        load_average()
    )?;
    writeln!(
        md,
        "- The same {} clustered-Gaussian vectors (D = {}) in 16 Parquet files, served as a plain prefix, as a Delta table (Python `deltalake`) and as an Iceberg table (Python `pyiceberg`, SQL catalog) written from those files; P = {} partitions, `fresh` consistency.",
        a.n, a.dim, a.partitions
    )?;
    writeln!(
        md,
        "- *first answer*: a new engine, from registering the source to the first answered query (listing, footers, reading every row, building every partition).\n- *fresh check*: the next query with nothing new (generation check only).\n- *refresh*: after one commit appending {} rows, the next `fresh` query (listing, reading the new rows, extending the partitions they fall in).\n",
        a.append
    )?;
    writeln!(md, "| source | write (reference writer) | units | lake → first answer | target | lake bytes read (MB) | read ÷ first answer (MB/s) | fresh check | append {} rows → refreshed answer | partitions rebuilt (of them extended) | generation after |", a.append)?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for r in &rows {
        let mb = r.first_bytes as f64 / 1e6;
        writeln!(
            md,
            "| {} | {:.1} s | {} | {:.2} s | ≤ 20 s | {:.0} | {:.0} | {:.1} ms | {:.2} s | {} ({}) | `{}` |",
            r.kind,
            r.write_s,
            r.units,
            r.first_answer_s,
            mb,
            mb / r.first_answer_s,
            r.noop_check_s * 1e3,
            r.refresh_s,
            r.builds,
            r.incremental,
            r.generation
        )?;
    }
    writeln!(
        md,
        "\nThe parquet row's write time is RuLake's own Parquet writer producing the input files. \
A unit is a row group: a table whose writer puts many rows in one row group (pyiceberg's \
default limit is 1M rows) has few units, so few partitions hold data and fewer cores build them."
    )?;
    report::write_section(&a.output, "formats", &md)?;
    println!("{md}");
    eprintln!("wrote the formats section of {}", a.output.display());
    Ok(())
}
