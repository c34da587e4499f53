//! `rulake-bench embeddings`: recall against queries/s on real sentence
//! embeddings and on two synthetic sets, RuLake beside FAISS's IVF-Flat,
//! IVF-RaBitQ + Refine and HNSW, in one run on the same files.
//!
//! Why a section of its own: the core benchmark's clustered Gaussians are
//! easy (the defaults reach 0.96–1.00 there), so they say little about the
//! data people bring. The real set is all-MiniLM-L6-v2 embeddings of the
//! cargo registry's doc comments and READMEs (`py/embed_corpus.py`, made
//! once and cached outside the repo); the harder synthetic set is wide
//! vectors near a low-dimensional manifold (`rulake_datasets::LowRank`).
//!
//! What it reports per set: whether the defaults reach the recall each
//! collection declares (0.90, 0.95, 0.98; calibrated per partition), the
//! lake → first answer time against HNSW's build, RuLake's sweep, FAISS's
//! curves (`py/faiss_curves.py`), and queries/s ratios at recall 0.90, 0.95
//! and 0.98 read off each system's Pareto frontier. A PNG of the curves
//! goes next to the report (`py/plot_curves.py`).

use crate::grpc::summarize;
use crate::report;
use rulake::measure::{engine_run, measuring_engine, recall_id, write_lake};
use rulake_datasets::{ClusteredGaussian, Generator, LowRank};
use rulake_engine::{CollectionSpec, RuLake};
use rulake_lake::{
    read_all, write_parquet_file, IdsRef, ParquetSource, ParquetSourceConfig, Source, ID_COLUMN,
    VECTOR_COLUMN,
};
use rulake_types::{Metric, SearchParams};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// `rulake-bench embeddings` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Sets to measure: `real`, `lowrank768`, `clustered128`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "real,lowrank768,clustered128"
    )]
    pub sets: Vec<String>,
    /// The real set (the output of `py/embed_corpus.py`); made there when
    /// missing (default: `~/.cache/rulake-bench/minilm-<real-n>`).
    #[arg(long)]
    pub real: Option<PathBuf>,
    /// Base vectors of the real set.
    #[arg(long, default_value_t = 60_000)]
    pub real_n: usize,
    /// Base vectors of each synthetic set.
    #[arg(long, default_value_t = 100_000)]
    pub synthetic_n: usize,
    /// Queries per synthetic set (the real set brings its own).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Python with `py/requirements-embed.txt` installed.
    #[arg(long, env = "RULAKE_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Working directory for the synthetic lakes and FAISS's results.
    #[arg(long, default_value = "rulake-demo-lake/bench-embeddings")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
    /// The plot of the curves.
    #[arg(long, default_value = "docs/img/recall-qps.png")]
    pub plot: PathBuf,
    /// Skip FAISS.
    #[arg(long)]
    pub no_faiss: bool,
}

/// One data set as both systems read it.
struct Set {
    name: &'static str,
    title: String,
    lake: PathBuf,
    queries_file: PathBuf,
    metric: Metric,
    dim: usize,
    queries: Vec<Vec<f32>>,
    truth: Vec<Vec<u64>>,
    n: usize,
}

/// A measured setting: system, setting, recall@10, queries/s (1 thread).
#[derive(Clone)]
struct Point {
    system: String,
    setting: String,
    recall: f64,
    qps: f64,
}

/// Targets the defaults are checked against and the ratios are read at.
const TARGETS: [f32; 3] = [0.90, 0.95, 0.98];
/// Interleaved rounds for the defaults' queries/s (median reported).
const ROUNDS: usize = 3;

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut md = String::new();
    writeln!(
        md,
        "## Search on real embeddings: RuLake, FAISS IVF-RaBitQ and HNSW\n"
    )?;
    writeln!(md, "Produced by `cargo run --release -p rulake-bench -- embeddings` (Python with `crates/rulake-bench/py/requirements-embed.txt` as `RULAKE_BENCH_PYTHON`); every figure comes from one run, and FAISS reads the same Parquet files RuLake does.\n")?;
    writeln!(md, "- queries/s: one thread, one query at a time (FAISS with `omp_set_num_threads(1)`), unless a column says batch; recall@10 against an exact scan, by id.")?;
    writeln!(md, "- RuLake runs with live recall sampling off, so the background exact scans do not share the cores with the searches measured.")?;
    writeln!(md, "- Ratios at a recall level compare the two systems' Pareto frontiers (the fastest setting reaching it, interpolated linearly between measured settings).\n")?;
    let mut plot_sets = Vec::new();
    for name in &a.sets {
        eprintln!("== set {name}");
        let set = prepare(&a, name).await?;
        let (section, points) = measure(&a, &set).await?;
        md.push_str(&section);
        plot_sets.push(json!({
            "name": set.name,
            "title": set.title,
            "points": points.iter().map(|p| json!({
                "system": p.system, "setting": p.setting, "recall": p.recall, "qps": p.qps,
            })).collect::<Vec<_>>(),
        }));
    }
    if !a.no_faiss {
        let curves = a.work.join("curves.json");
        std::fs::write(&curves, serde_json::to_vec(&json!({ "sets": plot_sets }))?)?;
        let ok = Command::new(&a.python)
            .arg("crates/rulake-bench/py/plot_curves.py")
            .arg("--input")
            .arg(&curves)
            .arg("--output")
            .arg(&a.plot)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let rel = a
                .plot
                .strip_prefix(a.output.parent().unwrap_or(Path::new("")))
                .unwrap_or(&a.plot);
            writeln!(md, "![recall against queries/s]({})\n", rel.display())?;
        }
    }
    report::write_section(&a.output, "embeddings", &md)?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

/// Make (or find) the set's lake and queries, and its exact answers.
async fn prepare(a: &Args, name: &str) -> anyhow::Result<Set> {
    let (name, title, dir, metric) = match name {
        "real" => {
            let dir = real_set(a.real.as_deref(), a.real_n, &a.python)?;
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
            let title = format!(
                "real: {} × {} {} embeddings ({}), cosine",
                meta["n"],
                meta["dim"],
                meta["model"].as_str().unwrap_or("?"),
                meta["corpus"].as_str().unwrap_or("?")
            );
            ("real", title, dir, Metric::Cosine)
        }
        "lowrank768" => {
            let g = LowRank::new(768, 32, 1000, 5);
            let dir = synthetic(a, name, &g)?;
            let title = format!(
                "synthetic: {} × 768 near a 32-dimensional manifold, 1,000 power-law clusters, cosine",
                a.synthetic_n
            );
            ("lowrank768", title, dir, Metric::Cosine)
        }
        "clustered128" => {
            let g = ClusteredGaussian::new(128, 100, 0.15, 7);
            let dir = synthetic(a, name, &g)?;
            let title = format!(
                "synthetic: {} × 128 clustered Gaussian (100 clusters, sigma 0.15), l2",
                a.synthetic_n
            );
            ("clustered128", title, dir, Metric::L2)
        }
        other => anyhow::bail!("unknown set {other:?}: real, lowrank768 or clustered128"),
    };
    let lake = dir.join("lake").canonicalize()?;
    let queries_file = dir.join("queries.parquet");
    let open =
        |url: &str| ParquetSource::open(ParquetSourceConfig::new(url, ID_COLUMN, VECTOR_COLUMN));
    let src = open(&lake.to_string_lossy())?;
    let dim = src.probe_dimension().await?;
    let base = read_all(&src, &src.list_units().await?, dim).await?;
    let qsrc = open(&queries_file.canonicalize()?.to_string_lossy())?;
    let qrows = read_all(&qsrc, &qsrc.list_units().await?, dim).await?;
    let queries: Vec<Vec<f32>> = qrows.vectors.chunks(dim).map(|q| q.to_vec()).collect();
    eprintln!(
        "exact ground truth for {} queries over {} rows ...",
        queries.len(),
        base.len()
    );
    let flat: Vec<f32> = queries.iter().flatten().copied().collect();
    let truth = rulake_index::exact::batch_topk(&base.vectors, dim, metric, &flat, 10)
        .into_iter()
        .map(|hits| {
            hits.into_iter()
                .map(|(row, _)| recall_id(base.ids[row as usize].clone()))
                .collect()
        })
        .collect();
    Ok(Set {
        name,
        title,
        lake,
        queries_file,
        metric,
        dim,
        queries,
        truth,
        n: base.len(),
    })
}

/// The real set's directory (`dir`, else the cache for `n` rows),
/// embedding it first with `python` when it is not there yet.
pub(crate) fn real_set(dir: Option<&Path>, n: usize, python: &str) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(format!(".cache/rulake-bench/minilm-{n}"))
        }
    };
    if !dir.join("meta.json").exists() {
        eprintln!(
            "embedding the real set into {} (once; about 30 texts/s a core) ...",
            dir.display()
        );
        let ok = Command::new(python)
            .env("HF_HUB_OFFLINE", "1")
            .arg("crates/rulake-bench/py/embed_corpus.py")
            .arg("--n")
            .arg(n.to_string())
            .arg("--out")
            .arg(&dir)
            .status()?
            .success();
        anyhow::ensure!(ok, "py/embed_corpus.py failed; install crates/rulake-bench/py/requirements-embed.txt into the Python named by RULAKE_BENCH_PYTHON");
    }
    Ok(dir)
}

/// Write a synthetic set's lake and queries under the work directory.
fn synthetic(a: &Args, name: &str, g: &impl Generator) -> anyhow::Result<PathBuf> {
    let dir = a.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let dim = g.dim();
    write_lake(&dir.join("lake"), g, a.synthetic_n, dim, 8, 2)?;
    let qv = g.sample(a.queries, 999_999);
    let qids: Vec<u64> = (0..a.queries as u64).collect();
    write_parquet_file(
        &dir.join("queries.parquet"),
        IdsRef::U64(&qids),
        &qv,
        dim,
        a.queries,
    )?;
    Ok(dir)
}

/// An engine over `set`'s lake with one collection aiming at `target`;
/// returns it with the seconds from creation to the first answer.
async fn engine_for(set: &Set, target: f32) -> anyhow::Result<(RuLake, f64)> {
    let t = Instant::now();
    let engine = measuring_engine(&set.lake)?;
    engine.create_collection(
        CollectionSpec::new("c", "lake", set.dim)
            .metric(set.metric)
            .target_recall(target),
    )?;
    engine
        .search("c", &set.queries[0], SearchParams::k(10))
        .await?;
    Ok((engine, t.elapsed().as_secs_f64()))
}

async fn measure(a: &Args, set: &Set) -> anyhow::Result<(String, Vec<Point>)> {
    let mut md = String::new();
    let mut points = Vec::new();
    writeln!(md, "### {}\n", set.title)?;
    writeln!(
        md,
        "{} queries held out of the base set.\n",
        set.queries.len()
    )?;

    // The defaults at each declared target.
    writeln!(md, "| target recall@10 | calibrated nprobe (of lists) | sample recall | measured recall@10 | met | queries/s | lake → first answer s |\n|---:|---:|---:|---:|---|---:|---:|")?;
    let mut first_answer_95 = f64::NAN;
    let mut batch_95 = f64::NAN;
    let mut nlist = 0;
    let mut sweep_engine = None;
    for target in TARGETS {
        eprintln!("RuLake at target recall {target} ...");
        let (engine, first) = engine_for(set, target).await?;
        let (_, parts) = engine.partitions("c").await?;
        let index = &parts[0].index;
        nlist = index.nlist();
        let tuning = index.tuning();
        let mut qps = Vec::new();
        let mut recall = 0.0;
        for _ in 0..ROUNDS {
            let (r, q) =
                engine_run(&engine, "c", &set.queries, &set.truth, SearchParams::k(10)).await?;
            recall = r;
            qps.push(q);
        }
        let qps = summarize(qps).p50;
        writeln!(
            md,
            "| {target} | {} of {} | {:.3} | {recall:.4} | {} | {qps:.0} | {first:.1} |",
            tuning.map_or("-".to_string(), |t| t.nprobe.to_string()),
            index.nlist(),
            tuning.map_or(f32::NAN, |t| t.recall),
            if recall >= target as f64 {
                "yes"
            } else {
                "**no**"
            }
        )?;
        points.push(Point {
            system: "RuLake".into(),
            setting: format!(
                "target {target} (nprobe {})",
                tuning.map_or(0, |t| t.nprobe)
            ),
            recall,
            qps,
        });
        if target == 0.95 {
            first_answer_95 = first;
            let t = Instant::now();
            engine
                .batch_search("c", &set.queries, SearchParams::k(10))
                .await?;
            batch_95 = set.queries.len() as f64 / t.elapsed().as_secs_f64();
            sweep_engine = Some(engine);
        }
    }
    writeln!(
        md,
        "\nBatch at the 0.95 defaults, 2 threads: {batch_95:.0} queries/s.\n"
    )?;

    // The sweep.
    let engine = sweep_engine.expect("0.95 is a target");
    eprintln!("RuLake sweep ...");
    for nprobe in [2usize, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128] {
        if nprobe > nlist {
            continue;
        }
        for rerank in [10usize, 20, 40] {
            let p = SearchParams {
                k: 10,
                nprobe: Some(nprobe),
                rerank: Some(rerank),
            };
            let (recall, qps) = engine_run(&engine, "c", &set.queries, &set.truth, p).await?;
            points.push(Point {
                system: "RuLake".into(),
                setting: format!("nprobe {nprobe}, rerank {rerank}"),
                recall,
                qps,
            });
        }
    }
    drop(engine);

    let mut hnsw_build = f64::NAN;
    if !a.no_faiss {
        let (faiss_points, build) = faiss(a, set, nlist)?;
        points.extend(faiss_points);
        hnsw_build = build;
    }

    // Ratios at the recall levels.
    let systems: Vec<String> = {
        let mut s: Vec<String> = points.iter().map(|p| p.system.clone()).collect();
        s.sort();
        s.dedup();
        s
    };
    writeln!(md, "Queries/s on each system's frontier at a recall level (1 thread), and RuLake's ratio to it:\n")?;
    write!(md, "| system |")?;
    for r in TARGETS {
        write!(md, " q/s at {r} | RuLake ÷ it at {r} |")?;
    }
    writeln!(md, "\n|---|{}", "---:|---:|".repeat(TARGETS.len()))?;
    for s in &systems {
        write!(md, "| {s} |")?;
        for r in TARGETS {
            let theirs = at_recall(&points, s, r as f64);
            let ours = at_recall(&points, "RuLake", r as f64);
            match (ours, theirs) {
                (Some(o), Some(t)) => write!(md, " {t:.0} | {:.2}× |", o / t)?,
                (_, Some(t)) => write!(md, " {t:.0} | - |")?,
                _ => write!(md, " not reached | - |")?,
            }
        }
        writeln!(md)?;
    }
    if hnsw_build.is_finite() {
        writeln!(
            md,
            "\nLake → first answer (0.95 defaults, Parquet read, build and calibration): {first_answer_95:.1} s; FAISS HNSW32 build on the same cores: {hnsw_build:.1} s; ratio {:.2}× (target ≤ 0.5×).",
            first_answer_95 / hnsw_build
        )?;
    }
    writeln!(md, "\n<details><summary>every measured setting</summary>\n")?;
    writeln!(
        md,
        "| system | setting | recall@10 | queries/s |\n|---|---|---:|---:|"
    )?;
    for p in &points {
        writeln!(
            md,
            "| {} | {} | {:.4} | {:.0} |",
            p.system, p.setting, p.recall, p.qps
        )?;
    }
    writeln!(md, "\n</details>\n")?;
    Ok((md, points))
}

/// Queries/s of `system`'s Pareto frontier at `recall`: interpolated
/// between the slowest setting reaching it and the fastest one below it;
/// `None` when no setting reaches it.
fn at_recall(points: &[Point], system: &str, recall: f64) -> Option<f64> {
    let mine: Vec<&Point> = points.iter().filter(|p| p.system == system).collect();
    let above = mine
        .iter()
        .filter(|p| p.recall >= recall)
        .max_by(|a, b| a.qps.total_cmp(&b.qps))?;
    let below = mine
        .iter()
        .filter(|p| p.recall < recall && p.qps > above.qps)
        .max_by(|a, b| a.recall.total_cmp(&b.recall));
    Some(match below {
        Some(b) => {
            let w = (recall - b.recall) / (above.recall - b.recall);
            b.qps + w * (above.qps - b.qps)
        }
        None => above.qps,
    })
}

/// FAISS's curves on the same files; returns its points and HNSW's build
/// seconds.
fn faiss(a: &Args, set: &Set, nlist: usize) -> anyhow::Result<(Vec<Point>, f64)> {
    let out = a.work.join(format!("faiss-{}.json", set.name));
    std::fs::create_dir_all(&a.work)?;
    eprintln!("FAISS curves (crates/rulake-bench/py/faiss_curves.py) ...");
    let ok = Command::new(&a.python)
        .arg("crates/rulake-bench/py/faiss_curves.py")
        .arg("--lake")
        .arg(&set.lake)
        .arg("--queries")
        .arg(&set.queries_file)
        .arg("--metric")
        .arg(if set.metric == Metric::Cosine {
            "cosine"
        } else {
            "l2"
        })
        .arg("--nlist")
        .arg(nlist.to_string())
        .arg("--output")
        .arg(&out)
        .status()?
        .success();
    anyhow::ensure!(ok, "py/faiss_curves.py failed (n = {})", set.n);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let mut points = Vec::new();
    let mut hnsw_build = f64::NAN;
    for r in v["results"].as_array().into_iter().flatten() {
        let system = format!("FAISS {}", r["index"].as_str().unwrap_or("?"));
        if system.contains("HNSW") {
            hnsw_build = r["build_seconds"].as_f64().unwrap_or(f64::NAN);
        }
        points.push(Point {
            system,
            setting: r["setting"].as_str().unwrap_or("?").to_owned(),
            recall: r["recall"].as_f64().unwrap_or(0.0),
            qps: r["qps_single"].as_f64().unwrap_or(0.0),
        });
    }
    Ok((points, hnsw_build))
}
