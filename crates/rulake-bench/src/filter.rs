//! `rulake-bench filter`: filtered search against an exact filtered scan
//! at 50, 10, 1 and 0.1 % selectivity, beside what a client does without
//! filters: over-fetch and filter the hits itself (sections `filter` and
//! `filter-real`).
//!
//! The rows get an integer payload column (`year`, here a bucket 0..999
//! from a hash of the id, so it is independent of where a vector lies) and
//! the filter `year < t` selects `t / 1000` of them. The Parquet files are
//! written by pyarrow through the reference writers. Two sets: clustered
//! synthetic vectors, and the real sentence embeddings of
//! `rulake-bench embeddings` (its cached set, made there when missing).
//!
//! Per selectivity it measures three ways to get the `k` nearest matching
//! rows: RuLake's filter, a client asking for `k × overfetch` unfiltered
//! hits with the `year` column and keeping the matching ones, and a client
//! that knows the selectivity and asks for `2k / selectivity` hits (at most
//! the largest `k` a search takes). Each gets recall@k by distance against
//! a brute-force scan of the matching rows, the count of answers shorter
//! than `min(k, matches)` (zero for RuLake's filter, by design), and
//! queries per second.

use crate::embeddings::real_set;
use crate::report;
use rayon::prelude::*;
use rulake_datasets::{ClusteredGaussian, ReferenceWriters};
use rulake_engine::{CacheConfig, CollectionSpec, RuLake, MAX_K};
use rulake_lake::{read_all, ParquetSource, ParquetSourceConfig, Source};
use rulake_types::{stable_hash, Filter, Hit, Metric, SearchParams, Selection, Value, VectorId};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// `rulake-bench filter` flags.
#[derive(clap::Args)]
pub struct Args {
    /// The vectors: `clustered` (synthetic) or `real` (sentence embeddings).
    #[arg(long, default_value = "clustered")]
    pub set: String,
    /// Vectors of the clustered set.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension of the clustered set.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// The real set's directory (default: the cache of
    /// `rulake-bench embeddings` for `--real-n` rows).
    #[arg(long)]
    pub real: Option<PathBuf>,
    /// Base vectors of the real set.
    #[arg(long, default_value_t = 60_000)]
    pub real_n: usize,
    /// Python with `py/requirements-embed.txt`, to embed a missing real set.
    #[arg(long, env = "RULAKE_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Partitions.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Queries per selectivity.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// The fixed over-fetch factor of the client baseline.
    #[arg(long, default_value_t = 10)]
    pub overfetch: usize,
    /// Working directory for the generated files (emptied first).
    #[arg(long, default_value = "rulake-demo-lake/filter")]
    pub work: PathBuf,
    /// Markdown report to write (its `filter` or `filter-real` section).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

fn bucket(id: u64) -> i64 {
    (stable_hash(&id.to_le_bytes()) % 1000) as i64
}

/// The vectors measured, their ids and the queries.
struct Data {
    /// What the report says of them.
    title: String,
    section: &'static str,
    ids: Vec<u64>,
    vectors: Vec<f32>,
    dim: usize,
    metric: Metric,
    queries: Vec<f32>,
}

fn clustered(a: &Args) -> Data {
    let g = ClusteredGaussian::new(a.dim, 100, 0.15, 42);
    Data {
        title: format!("{} clustered {}-d vectors, L2", a.n, a.dim),
        section: "filter",
        ids: (0..a.n as u64).collect(),
        vectors: g.sample(a.n, 1),
        dim: a.dim,
        metric: Metric::L2,
        queries: g.sample(a.queries, 99),
    }
}

async fn real(a: &Args) -> anyhow::Result<Data> {
    let dir = real_set(a.real.as_deref(), a.real_n, &a.python)?;
    let open = |p: PathBuf| -> anyhow::Result<ParquetSource> {
        let url = p.canonicalize()?.to_string_lossy().into_owned();
        Ok(ParquetSource::open(ParquetSourceConfig::new(
            &url, "id", "vector",
        ))?)
    };
    let base_src = open(dir.join("lake"))?;
    let dim = base_src.probe_dimension().await?;
    let base = read_all(&base_src, &base_src.list_units().await?, dim).await?;
    let query_src = open(dir.join("queries.parquet"))?;
    let mut queries = read_all(&query_src, &query_src.list_units().await?, dim)
        .await?
        .vectors;
    queries.truncate(a.queries * dim);
    let ids = base
        .ids
        .iter()
        .map(|id| match id {
            VectorId::U64(n) => Ok(*n),
            other => anyhow::bail!("the real set's ids are integers, got {other:?}"),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Data {
        title: format!(
            "{} all-MiniLM-L6-v2 sentence embeddings (384-d, the real set of `rulake-bench embeddings`), cosine",
            base.ids.len()
        ),
        section: "filter-real",
        ids,
        vectors: base.vectors,
        dim,
        metric: Metric::Cosine,
        queries,
    })
}

/// How the `k` nearest matching rows are asked for.
#[derive(Clone, Copy)]
enum Method {
    /// RuLake's filter.
    Filter,
    /// An unfiltered search for this many hits with the `year` column,
    /// filtered by the client.
    OverFetch(usize),
}

/// One query's answer by `method` for `year < t` (`t = 1000`: no filter).
async fn ask(e: &RuLake, q: &[f32], k: usize, t: i64, method: Method) -> anyhow::Result<Vec<Hit>> {
    let filter = (t < 1000).then(|| Filter::Range {
        column: "year".into(),
        gt: None,
        gte: None,
        lt: Some(Value::Int(t)),
        lte: None,
    });
    Ok(match method {
        Method::Filter => {
            let sel = Selection {
                filter,
                columns: Vec::new(),
            };
            e.search_selected("f", q, SearchParams::k(k), &sel, None)
                .await?
                .hits
        }
        Method::OverFetch(fetch) => {
            let sel = Selection {
                filter: None,
                columns: vec!["year".into()],
            };
            let got = e
                .search_selected("f", q, SearchParams::k(fetch), &sel, None)
                .await?;
            got.hits
                .into_iter()
                .filter(|h| matches!(h.columns.get("year"), Some(Value::Int(y)) if *y < t))
                .take(k)
                .collect()
        }
    })
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let w = ReferenceWriters::find()?;
    let data = match a.set.as_str() {
        "clustered" => clustered(&a),
        "real" => real(&a).await?,
        other => anyhow::bail!("unknown set {other:?}: clustered or real"),
    };
    let (n, dim) = (data.ids.len(), data.dim);
    if a.work.exists() {
        std::fs::remove_dir_all(&a.work)?;
    }
    std::fs::create_dir_all(&a.work)?;
    let jsonl = a.work.join("rows.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        for (id, v) in data.ids.iter().zip(data.vectors.chunks(dim)) {
            let row = serde_json::json!({"id": id, "vector": v, "year": bucket(*id)});
            writeln!(f, "{row}")?;
        }
    }
    eprintln!("writing {n} rows with pyarrow ...");
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
        CollectionSpec::new("f", "f", dim)
            .metric(data.metric)
            .partitions(a.partitions)
            .payload_columns(["year"]),
    )?;
    let t = Instant::now();
    e.search("f", &data.queries[..dim], SearchParams::k(a.k))
        .await?;
    let load_s = t.elapsed().as_secs_f64();

    // Every query's rows by exact distance, once: each selectivity's
    // truth is the first `k` of them that match.
    eprintln!(
        "exact distances for {} queries ...",
        data.queries.len() / dim
    );
    let years: Vec<i64> = data.ids.iter().map(|&id| bucket(id)).collect();
    let ranked: Vec<Vec<(f32, u32)>> = data
        .queries
        .par_chunks(dim)
        .map(|q| {
            let mut d: Vec<(f32, u32)> = data
                .vectors
                .chunks(dim)
                .enumerate()
                .map(|(i, v)| (data.metric.distance(q, v), i as u32))
                .collect();
            d.sort_by(|x, y| x.0.total_cmp(&y.0));
            d
        })
        .collect();

    // Recall and short answers do not depend on the build; queries/s do.
    let profile = if cfg!(debug_assertions) {
        "a dev-profile build (queries/s are not release figures)"
    } else {
        "a release build"
    };
    let mut body = String::new();
    let command = match a.set.as_str() {
        "real" => format!("--set real --real-n {}", a.real_n),
        _ => format!("--n {} --dim {}", a.n, a.dim),
    };
    writeln!(
        body,
        "## Filtered search{} (`rulake-bench filter`)\n\n\
         `rulake-bench filter {command} --partitions {} --queries {}`, {profile}: \
         {}; 8 Parquet files written by pyarrow, an integer payload column \
         (a hash of the id into 0..999, independent of the vectors) filtered with `year < t`; \
         recall@{k} by distance against a brute-force scan of the matching rows, at the collection's \
         defaults (calibrated nprobe, rerank 40). Lake to first answer {load_s:.1} s. \
         Beside RuLake's filter, two clients without one: one asks for `{k} × {}` unfiltered hits \
         with the `year` column and keeps those that match; one knows the selectivity and asks for \
         `2 × {k} / selectivity` hits (at most {MAX_K}, the largest `k` a search takes).\n",
        if data.section == "filter-real" {
            " on real embeddings"
        } else {
            ""
        },
        a.partitions,
        a.queries,
        data.title,
        a.overfetch,
        k = a.k,
    )?;
    writeln!(
        body,
        "| selectivity | rows matching | method | hits asked | recall@{} | answers short of min(k, matches) | queries/s | queries/s against RuLake's filter |\n|---|---:|---|---:|---:|---:|---:|---:|",
        a.k
    )?;
    for (label, t) in [
        ("none (unfiltered)", 1000i64),
        ("50 %", 500),
        ("10 %", 100),
        ("1 %", 10),
        ("0.1 %", 1),
    ] {
        let matching = years.iter().filter(|&&y| y < t).count();
        let kth: Vec<Option<f32>> = ranked
            .iter()
            .map(|r| {
                r.iter()
                    .filter(|(_, i)| years[*i as usize] < t)
                    .take(a.k)
                    .last()
                    .map(|&(d, _)| d)
            })
            .collect();
        let mut methods = vec![("RuLake filter", Method::Filter, a.k)];
        if t < 1000 {
            let fixed = a.k * a.overfetch;
            let sized = (2 * a.k * 1000).div_ceil(t as usize).min(MAX_K);
            methods.push(("client over-fetch, fixed", Method::OverFetch(fixed), fixed));
            methods.push(("client over-fetch, sized", Method::OverFetch(sized), sized));
        }
        let mut filter_qps = 0.0;
        for (name, method, asked) in methods {
            let (mut recall, mut short, mut searched) = (0.0, 0, 0.0);
            for (q, kth) in data.queries.chunks(dim).zip(&kth) {
                let started = Instant::now();
                let hits = ask(&e, q, a.k, t, method).await?;
                searched += started.elapsed().as_secs_f64();
                if hits.len() < a.k.min(matching) {
                    short += 1;
                }
                if let Some(kth) = kth {
                    let found = hits
                        .iter()
                        .filter(|h| h.distance <= kth * (1.0 + 1e-4) + 1e-6)
                        .count();
                    recall += found as f64 / a.k.min(matching) as f64;
                }
            }
            let nq = kth.len() as f64;
            let qps = nq / searched;
            if matches!(method, Method::Filter) {
                filter_qps = qps;
            }
            writeln!(
                body,
                "| {label} | {matching} | {name} | {asked} | {:.4} | {short} | {qps:.0} | {:.2}× |",
                recall / nq,
                qps / filter_qps
            )?;
            eprintln!(
                "{label}, {name}: recall {:.4}, short {short}, {qps:.0} q/s",
                recall / nq
            );
        }
    }
    writeln!(
        body,
        "\nTarget: recall@{} ≥ 0.95 at every selectivity and no short answer for RuLake's filter. \
         Plans (docs/api.md, \"Plans\"): the exact scan of the matches takes over where the IVF plan \
         would probe every list or the matches fit the candidate pool.",
        a.k
    )?;
    report::write_section(&a.output, data.section, &body)?;
    Ok(())
}
