//! `rulake-bench core`: the one command behind `docs/BENCHMARKS.md`. Every
//! figure of one size comes from the same run, lake files and queries, and
//! FAISS (through `crates/rulake-bench/py/faiss_bench.py`) reads those same files.

use crate::grpc::summarize;
use crate::report;
use rulake::measure::{
    bar, engine_run, ground_truth, mean_recall, measuring_engine, recall_id, write_lake,
};
use rulake_datasets::ClusteredGaussian;
use rulake_engine::CollectionSpec;
use rulake_index::baseline::FlatRabitq;
use rulake_lake::{write_parquet_file, IdsRef};
use rulake_types::{Metric, SearchParams};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// `rulake-bench core` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Lake sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub sizes: Vec<usize>,
    /// Queries per measurement.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Working directory for the generated lakes.
    #[arg(long, default_value = "rulake-demo-lake/bench")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
    /// Skip FAISS even when it is installed.
    #[arg(long)]
    pub no_faiss: bool,
}

fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vpopcntdq")
        {
            f.push("AVX-512F+VPOPCNTDQ (ruvector-rabitq scan: AVX-512 kernel)");
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
            f.push("AVX2+POPCNT (ruvector-rabitq scan: AVX2 kernel)");
        } else {
            f.push("no AVX2 (ruvector-rabitq scan: scalar kernel)");
        }
        let compiled = if cfg!(target_feature = "avx2") {
            "avx2"
        } else {
            "baseline x86-64 (SSE2)"
        };
        format!(
            "{}; the rest of RuLake compiled for {compiled}",
            f.join(", ")
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "non-x86_64".to_owned()
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn ids_u64(hits: &[(u32, f32)], ids: &rulake_index::IdTable) -> Vec<u64> {
    hits.iter().map(|(p, _)| recall_id(ids.get(*p))).collect()
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut md = String::new();
    writeln!(
        md,
        "## Core engine: partition cache, intermediary tax, federation, FAISS\n"
    )?;
    writeln!(md, "Produced by `cargo run --release -p rulake-bench -- core`; every figure here comes from the same run, the same Parquet lake and the same queries.\n")?;
    writeln!(
        md,
        "- CPU: {} ({} threads available)",
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )?;
    writeln!(md, "- CPU features used: {}", cpu_features())?;
    writeln!(md, "- Data: clustered Gaussian, D = {}, 100 clusters (sigma 0.15), queries drawn independently of the base set; k = 10; recall@10 against an exact scan.", a.dim)?;
    writeln!(md, "- queries/s are single queries one after another on one thread unless the column says 2 threads (a batch spread over both cores).")?;
    writeln!(md, "- The engine runs with live recall sampling off (`--recall-sample 0`): at its defaults it re-answers up to ten queries a second by exact scan in the background, which on two cores competes with the searches measured.\n")?;

    for &n in &a.sizes {
        eprintln!("== n = {n}");
        let g = ClusteredGaussian::new(a.dim, 100, 0.15, 7);
        let dir = a.work.join(format!("n{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        let lake = dir.join("lake");
        let files = 16;
        let data = write_lake(
            &lake,
            &g,
            n,
            a.dim,
            files,
            n.div_ceil(files).div_ceil(8192).max(4),
        )?;
        let qv = g.sample(a.queries, 999_999);
        let qids: Vec<u64> = (0..a.queries as u64).collect();
        let qfile = dir.join("queries.parquet");
        write_parquet_file(&qfile, IdsRef::U64(&qids), &qv, a.dim, a.queries)?;
        let queries: Vec<Vec<f32>> = qv.chunks(a.dim).map(|q| q.to_vec()).collect();
        eprintln!("exact ground truth ...");
        let truth = ground_truth(&data, a.dim, Metric::L2, &queries, 10);

        // Lake → first answer (live recall sampling off: see
        // `measuring_engine`).
        let t = Instant::now();
        let engine = measuring_engine(&lake)?;
        engine.create_collection(CollectionSpec::new("p1", "lake", a.dim))?;
        engine
            .search("p1", &queries[0], SearchParams::k(10))
            .await?;
        let first_answer = t.elapsed().as_secs_f64();
        let build_s = engine.cache_stats().build_seconds;
        let (_, parts) = engine.partitions("p1").await?;
        let index = &parts[0].index;
        let bytes = engine.cache_stats().bytes;
        let raw = n * a.dim * 4 + index.code_bytes();

        // Engine at defaults, 1 and 2 threads, and the bare partition index
        // (tax): engine and bare index in interleaved rounds, median of each,
        // so the ratio compares like with like on this shared machine.
        let defaults = SearchParams::k(10);
        let bare_run = || -> anyhow::Result<(f64, f64)> {
            let t = Instant::now();
            let mut found = Vec::new();
            for q in &queries {
                found.push(ids_u64(
                    &index.search(q, 10, None, Some(rulake_index::DEFAULT_RERANK))?,
                    index.ids(),
                ));
            }
            let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
            Ok((mean_recall(&found, &truth), qps))
        };
        let (mut engine_qps, mut bare_qps) = (Vec::new(), Vec::new());
        let (mut recall, mut bare_recall) = (0.0, 0.0);
        for _ in 0..ROUNDS {
            let (r, q) = engine_run(&engine, "p1", &queries, &truth, defaults).await?;
            recall = r;
            engine_qps.push(q);
            let (r, q) = bare_run()?;
            bare_recall = r;
            bare_qps.push(q);
        }
        let (qps1, bare_qps) = (summarize(engine_qps).p50, summarize(bare_qps).p50);
        let t = Instant::now();
        let batch = engine.batch_search("p1", &queries, defaults).await?;
        let qps2 = queries.len() as f64 / t.elapsed().as_secs_f64();
        drop(batch);

        writeln!(md, "### n = {n}\n")?;
        writeln!(
            md,
            "Lake: {files} Parquet files; partition: {} IVF lists, default nprobe {} (calibrated for recall@10 {}), rerank {}.\n",
            index.nlist(),
            index.default_probes(),
            rulake_index::DEFAULT_TARGET_RECALL,
            rulake_index::DEFAULT_RERANK
        )?;
        writeln!(md, "| measure | value |\n|---|---|")?;
        writeln!(md, "| Parquet lake → first answered query | {first_answer:.2} s (of which index build {build_s:.2} s) |")?;
        writeln!(
            md,
            "| cache bytes per vector | {:.1} (codes + original vectors: {:.1}; ratio {:.3}) |",
            bytes as f64 / n as f64,
            raw as f64 / n as f64,
            bytes as f64 / raw as f64
        )?;
        writeln!(md, "| RuLake defaults: recall@10 | {recall:.4} |")?;
        writeln!(md, "| RuLake defaults: queries/s, 1 thread | {qps1:.0} |")?;
        writeln!(
            md,
            "| RuLake defaults: queries/s, 2 threads (batch) | {qps2:.0} |"
        )?;
        writeln!(md, "| bare partition index, same parameters: recall / queries/s | {bare_recall:.4} / {bare_qps:.0} |")?;
        writeln!(
            md,
            "| intermediary tax (bare / engine queries/s, median of {ROUNDS} interleaved rounds) | {:.3}× |\n",
            bare_qps / qps1
        )?;

        // nprobe × rerank sweep on the partition index, one thread.
        writeln!(
            md,
            "#### RuLake partition index: nprobe × rerank (1 thread)\n"
        )?;
        writeln!(
            md,
            "| nprobe | rerank | recall@10 | queries/s |\n|---:|---:|---:|---:|"
        )?;
        const NPROBES: [usize; 6] = [4, 8, 10, 12, 16, 32];
        const RERANKS: [usize; 4] = [10, 20, 40, 80];
        let pb = bar((NPROBES.len() * RERANKS.len()) as u64, "sweep");
        let mut sweep: Vec<(usize, usize, f64, f64)> = Vec::new();
        for nprobe in NPROBES {
            for rerank in RERANKS {
                let t = Instant::now();
                let mut found = Vec::new();
                for q in &queries {
                    found.push(ids_u64(
                        &index.search(q, 10, Some(nprobe), Some(rerank))?,
                        index.ids(),
                    ));
                }
                let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
                let recall = mean_recall(&found, &truth);
                writeln!(md, "| {nprobe} | {rerank} | {recall:.4} | {qps:.0} |")?;
                sweep.push((nprobe, rerank, recall, qps));
                pb.inc(1);
            }
        }
        pb.finish_and_clear();
        drop(parts);
        engine.drop_collection("p1")?;

        // Fan-out over P partitions: every collection is loaded first, then
        // measured in interleaved rounds (median of each), so a slow spell
        // of this shared machine falls on all of them alike.
        writeln!(
            md,
            "\n#### Fan-out over P partitions (one query at a time, parallel over partitions; median of {ROUNDS} interleaved rounds)\n"
        )?;
        writeln!(
            md,
            "| P | recall@10 | queries/s | vs P = 1 |\n|---:|---:|---:|---:|"
        )?;
        let fan = [1u32, 2, 4];
        for p in fan {
            let name = format!("fan{p}");
            engine.create_collection(CollectionSpec::new(&name, "lake", a.dim).partitions(p))?;
            engine.refresh(&name).await?;
        }
        let mut rounds: Vec<Vec<(f64, f64)>> = vec![Vec::new(); fan.len()];
        let pb = bar((ROUNDS * fan.len()) as u64, "fan-out");
        for _ in 0..ROUNDS {
            for (i, p) in fan.iter().enumerate() {
                rounds[i].push(
                    engine_run(&engine, &format!("fan{p}"), &queries, &truth, defaults).await?,
                );
                pb.inc(1);
            }
        }
        pb.finish_and_clear();
        let medians: Vec<(f64, f64)> = rounds
            .iter()
            .map(|r| (r[0].0, summarize(r.iter().map(|x| x.1).collect()).p50))
            .collect();
        for (p, (r, q)) in fan.iter().zip(&medians) {
            writeln!(md, "| {p} | {r:.4} | {q:.0} | {:.2}× |", q / medians[0].1)?;
            engine.drop_collection(&format!("fan{p}"))?;
        }

        // The bare flat RaBitQ+ index at the prototype's rerank ×20.
        eprintln!("flat RabitqPlusIndex ...");
        let t = Instant::now();
        let flat = FlatRabitq::build(a.dim, &data, 20)?;
        let flat_build = t.elapsed().as_secs_f64();
        let flat_q = queries
            .len()
            .min(if n > 200_000 { 200 } else { queries.len() });
        let t = Instant::now();
        let mut found = Vec::new();
        for q in &queries[..flat_q] {
            found.push(
                flat.search(q, 10)?
                    .into_iter()
                    .map(|(i, _)| i as u64)
                    .collect::<Vec<_>>(),
            );
        }
        let flat_qps = flat_q as f64 / t.elapsed().as_secs_f64();
        writeln!(md, "\n#### Baselines\n")?;
        writeln!(md, "| index | recall@10 | queries/s (1 thread) | build s | bytes/vector |\n|---|---:|---:|---:|---:|")?;
        writeln!(md, "| RuLake partition, defaults | {bare_recall:.4} | {bare_qps:.0} | {build_s:.2} | {:.1} |", bytes as f64 / n as f64)?;
        writeln!(md, "| RabitqPlusIndex flat, rerank 20 ({flat_q} queries) | {:.4} | {flat_qps:.0} | {flat_build:.2} | {:.1} |", mean_recall(&found, &truth[..flat_q]), flat.memory_bytes() as f64 / n as f64)?;
        drop(flat);

        if !a.no_faiss {
            let faiss_rows = faiss(&mut md, &lake, &qfile, n)?;
            against_faiss(&mut md, &sweep, &faiss_rows)?;
        }
        writeln!(md)?;
        report::write_section(&a.output, "core", &md)?;
    }
    report::write_section(&a.output, "core", &md)?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

/// Interleaved rounds of the measurements that compare two ways of searching.
const ROUNDS: usize = 5;

/// One FAISS IVF measurement: nprobe, recall@10, single-query queries/s on one thread.
type FaissRow = (u64, f64, f64);

/// The comparison the core benchmark targets: the fastest single-thread
/// setting of each system whose recall@10 reaches 0.95.
fn against_faiss(
    md: &mut String,
    sweep: &[(usize, usize, f64, f64)],
    faiss: &[FaissRow],
) -> anyhow::Result<()> {
    const TARGET: f64 = 0.95;
    let ours = sweep
        .iter()
        .filter(|r| r.2 >= TARGET)
        .max_by(|a, b| a.3.total_cmp(&b.3));
    let theirs = faiss
        .iter()
        .filter(|r| r.1 >= TARGET)
        .max_by(|a, b| a.2.total_cmp(&b.2));
    writeln!(
        md,
        "\n#### Against FAISS IVF-Flat at recall@10 ≥ {TARGET} (one thread, one query at a time)\n"
    )?;
    match (ours, theirs) {
        (Some(o), Some(t)) => {
            writeln!(
                md,
                "| system | setting | recall@10 | queries/s |\n|---|---|---:|---:|"
            )?;
            writeln!(
                md,
                "| RuLake partition | nprobe {}, rerank {} | {:.4} | {:.0} |",
                o.0, o.1, o.2, o.3
            )?;
            writeln!(
                md,
                "| FAISS IndexIVFFlat | nprobe {} | {:.4} | {:.0} |",
                t.0, t.1, t.2
            )?;
            writeln!(
                md,
                "\nRuLake / FAISS: **{:.2}×** (target ≥ 1.5×).",
                o.3 / t.2
            )?;
        }
        _ => writeln!(
            md,
            "One of the two never reached recall {TARGET} in its sweep."
        )?,
    }
    Ok(())
}

fn faiss(
    md: &mut String,
    lake: &std::path::Path,
    queries: &std::path::Path,
    n: usize,
) -> anyhow::Result<Vec<FaissRow>> {
    let out = lake.with_file_name("faiss.json");
    let nlist = 1024.min(n / 39).max(1);
    eprintln!("FAISS (crates/rulake-bench/py/faiss_bench.py) ...");
    let status = std::process::Command::new("python3")
        .arg("crates/rulake-bench/py/faiss_bench.py")
        .arg("--lake")
        .arg(lake)
        .arg("--queries")
        .arg(queries)
        .args([
            "--k",
            "10",
            "--nlist",
            &nlist.to_string(),
            "--nprobe",
            "1,2,4,6,7,8,10,12,16,32,64",
            "--threads",
            "1,2",
            "--output",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            writeln!(md, "\nFAISS not measured: `python3 crates/rulake-bench/py/faiss_bench.py` did not run ({other:?}); `pip install -r crates/rulake-bench/py/requirements.txt` first.")?;
            return Ok(Vec::new());
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    writeln!(
        md,
        "\n#### FAISS {} on the same files (`crates/rulake-bench/py/faiss_bench.py`)\n",
        v["faiss_version"].as_str().unwrap_or("?")
    )?;
    writeln!(md, "| index | nlist | nprobe | threads | recall@10 | queries/s (one at a time) | queries/s (batch) | bytes/vector |\n|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut rows = Vec::new();
    for r in v["results"].as_array().into_iter().flatten() {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        if r["index"] == "IndexIVFFlat" && r["threads"] == 1 {
            if let Some(np) = r["nprobe"].as_u64() {
                rows.push((np, f("recall"), f("qps_single")));
            }
        }
        writeln!(
            md,
            "| {} | {} | {} | {} | {:.4} | {:.0} | {:.0} | {:.1} |",
            r["index"].as_str().unwrap_or("?"),
            r["nlist"]
                .as_u64()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "-".into()),
            r["nprobe"]
                .as_u64()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "-".into()),
            r["threads"],
            f("recall"),
            f("qps_single"),
            f("qps_batch"),
            f("bytes_per_vector")
        )?;
    }
    Ok(rows)
}
