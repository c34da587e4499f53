//! `rulake-bench prune`: what a collection's standing filter spares the
//! lake (section `prune`): files and row groups never read, and their
//! bytes, on a partitioned Delta table (deltalake), a partitioned Iceberg
//! table (pyiceberg) and Parquet files with small row groups (pyarrow).
//!
//! The rows are a time series: `day` rises with the row number (one year
//! of days over the rows), `lang` is one of eight languages by a hash of
//! the id. Delta and Iceberg tables are partitioned by `lang` and written
//! in 8 appends, each a slice of the year, so a file holds one language
//! and about six weeks; the Parquet files hold the same slices, in row
//! groups of `--row-group-rows`. Each standing filter loads a collection
//! from the lake, and the lake's own counters (`rulake_lake_*`) say what
//! was read and what was pruned: by partition values (`lang`), by file
//! statistics (`day`: Delta `add` stats, Iceberg manifest bounds), by row
//! group footers (Parquet, and the row groups of files kept).

use crate::report;
use rulake_datasets::{ClusteredGaussian, Layout, ReferenceWriters, TableFormat};
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::io::{snapshot, LakeKind};
use rulake_lake::{
    DeltaSource, DeltaSourceConfig, IcebergSource, IcebergSourceConfig, ParquetSource,
    ParquetSourceConfig, Source,
};
use rulake_types::{filter::parse, stable_hash};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// `rulake-bench prune` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 32)]
    pub dim: usize,
    /// Rows per Parquet row group of the Parquet files.
    #[arg(long, default_value_t = 2_000)]
    pub row_group_rows: usize,
    /// Working directory for the generated tables (emptied first).
    #[arg(long, default_value = "rulake-demo-lake/prune")]
    pub work: PathBuf,
    /// Markdown report to write (its `prune` section only).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

const LANGS: [&str; 8] = ["en", "de", "fr", "es", "it", "nl", "pt", "sv"];
/// 2024-01-01, days since the epoch.
const FIRST_DAY: i64 = 19_723;
/// Appends (Delta, Iceberg) and files (Parquet).
const PIECES: usize = 8;

/// The standing filters measured, after a load with none.
const FILTERS: [&str; 4] = [
    r#"lang = "de""#,
    r#"day >= "2024-12-01""#,
    r#"lang = "de" and day >= "2024-12-01""#,
    r#"lang in ("de", "fr") or day < "2024-01-15""#,
];

pub async fn run(a: Args) -> anyhow::Result<()> {
    let w = ReferenceWriters::find()?;
    if a.work.exists() {
        std::fs::remove_dir_all(&a.work)?;
    }
    std::fs::create_dir_all(&a.work)?;
    let vectors = ClusteredGaussian::new(a.dim, 50, 0.2, 7).sample(a.n, 1);
    let jsonl = a.work.join("rows.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        for (i, v) in vectors.chunks(a.dim).enumerate() {
            let lang = LANGS[(stable_hash(&(i as u64).to_le_bytes()) % 8) as usize];
            let day = FIRST_DAY + (i as i64 * 365) / a.n as i64;
            let row = serde_json::json!({"id": i, "vector": v, "lang": lang, "day": day});
            writeln!(f, "{row}")?;
        }
    }
    let profile = if cfg!(debug_assertions) {
        "a dev-profile build (load times are not release figures)"
    } else {
        "a release build"
    };
    let mut body = String::new();
    writeln!(
        body,
        "## Pruning by the lake's statistics (`rulake-bench prune`)\n\n\
         `rulake-bench prune --n {n} --dim {dim} --row-group-rows {rg}`, {profile}: {n} {dim}-d vectors \
         with a `lang` column (8 languages, by a hash of the id) and a `day` column (one year, rising \
         with the row), written in {PIECES} appends of consecutive days by the reference writers: a Delta \
         table (deltalake) and an Iceberg table (pyiceberg) partitioned by `lang`, and {PIECES} Parquet \
         files (pyarrow) in row groups of {rg} rows. Each row loads a collection with the standing \
         filter shown (`--standing-filter`) from the lake; files and row groups are counted by the \
         lake metrics (`rulake_lake_pruned_files_total`, `_row_groups_total`, `_bytes_total`, \
         `rulake_lake_read_bytes_total`). Rows kept are checked against the rows written.\n",
        n = a.n,
        dim = a.dim,
        rg = a.row_group_rows,
    )?;
    writeln!(
        body,
        "| table | standing filter | files pruned / listed | row groups pruned / listed | bytes read | bytes pruned | rows kept | load s |\n|---|---|---|---|---|---|---|---|"
    )?;
    for format in [
        TableFormat::Delta,
        TableFormat::Iceberg,
        TableFormat::Parquet,
    ] {
        let (name, kind, layout) = match format {
            TableFormat::Delta => ("Delta", LakeKind::Delta, partitioned()),
            TableFormat::Iceberg => ("Iceberg", LakeKind::Iceberg, partitioned()),
            TableFormat::Parquet => (
                "Parquet",
                LakeKind::Parquet,
                Layout {
                    row_group_rows: Some(a.row_group_rows),
                    ..Layout::default()
                },
            ),
        };
        eprintln!("writing the {name} table ...");
        let out = a.work.join(name.to_lowercase());
        let url = w.payload_table(format, &out, &jsonl, PIECES, &layout)?;
        let source: Arc<dyn Source> = match format {
            TableFormat::Delta => Arc::new(DeltaSource::open(DeltaSourceConfig::new(
                url, "id", "vector",
            ))?),
            TableFormat::Iceberg => Arc::new(IcebergSource::open(IcebergSourceConfig::new(
                url, "id", "vector",
            ))?),
            TableFormat::Parquet => Arc::new(ParquetSource::open(ParquetSourceConfig::new(
                url, "id", "vector",
            ))?),
        };
        let listing = source.list_units().await?;
        let files: BTreeSet<&str> = listing.units.iter().map(|u| u.object.as_str()).collect();
        let (files, groups) = (files.len(), listing.units.len());
        let e = RuLake::new(CacheConfig::default());
        e.register_source("t", source.clone())?;
        for (i, filter) in std::iter::once(None).chain(FILTERS.map(Some)).enumerate() {
            let collection = format!("c{i}");
            let mut spec = CollectionSpec::new(&collection, "t", a.dim).payload_columns(["lang"]);
            if let Some(f) = filter {
                spec = spec.standing_filter(parse(f)?);
            }
            e.create_collection(spec)?;
            let before = snapshot(kind);
            let started = Instant::now();
            e.refresh(&collection).await?;
            let load_s = started.elapsed().as_secs_f64();
            let after = snapshot(kind);
            let kept = e.describe(&collection)?.vectors_cached;
            let want = expected_rows(a.n, filter);
            anyhow::ensure!(
                kept == want,
                "{name} {filter:?}: {kept} rows kept, {want} match"
            );
            writeln!(
                body,
                "| {name} | {} | {} / {files} | {} / {groups} | {} | {} | {kept} | {load_s:.2} |",
                filter.map_or("none".into(), |f| format!("`{f}`")),
                after.pruned_files - before.pruned_files,
                after.pruned_row_groups - before.pruned_row_groups,
                mib(after.bytes - before.bytes),
                mib(after.pruned_bytes - before.pruned_bytes),
            )?;
            eprintln!("{name} {filter:?}: {kept} rows in {load_s:.2} s");
            e.drop_collection(&collection)?;
        }
    }
    writeln!(
        body,
        "\nRow groups listed count those of every file (a pruned file's row groups are never \
         seen, so its row groups are not counted as pruned); bytes read include the footers of the \
         files kept and, for Delta and Iceberg, the table's log or metadata. Pruning never leaves \
         out a matching row: `crates/rulake-engine/tests/prune.rs` checks random standing filters \
         against the rows written, on tables of all three formats."
    )?;
    report::write_section(&a.output, "prune", &body)?;
    Ok(())
}

fn partitioned() -> Layout {
    Layout {
        partition_by: Some("lang".into()),
        ..Layout::default()
    }
}

/// Rows of `n` that `filter` keeps, counted from the generator's rules.
fn expected_rows(n: usize, filter: Option<&str>) -> u64 {
    let Some(text) = filter else {
        return n as u64;
    };
    let f = parse(text).expect("the benchmark's filters parse");
    let payload = rulake_types::Payload {
        columns: vec![
            rulake_types::Column {
                name: "lang".into(),
                ty: Some(rulake_types::ColumnType::String),
                values: (0..n)
                    .map(|i| {
                        let lang = LANGS[(stable_hash(&(i as u64).to_le_bytes()) % 8) as usize];
                        rulake_types::Value::String(lang.into())
                    })
                    .collect(),
            },
            rulake_types::Column {
                name: "day".into(),
                ty: Some(rulake_types::ColumnType::Date),
                values: (0..n)
                    .map(|i| {
                        rulake_types::Value::Date((FIRST_DAY + (i as i64 * 365) / n as i64) as i32)
                    })
                    .collect(),
            },
        ],
    };
    let bound = f.bind(&payload).expect("the benchmark's filters fit");
    (0..n).filter(|&i| bound.matches(i)).count() as u64
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}
