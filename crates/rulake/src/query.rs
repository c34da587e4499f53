//! `rulake query`: answer a Parquet file of queries against a Parquet
//! source and report recall against an exact scan.

use crate::measure::bar;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::{read_all, ParquetSource, ParquetSourceConfig, RowBatch, Source};
use rulake_types::{merge_topk, Hit, Metric, SearchParams};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `rulake query` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Source URL: file://, s3://, gs://, az:// prefix, file or glob, or a local path.
    #[arg(long)]
    pub source: String,
    /// Id column.
    #[arg(long = "id-col", default_value = "id")]
    pub id_col: String,
    /// Vector column.
    #[arg(long = "vector-col", default_value = "vector")]
    pub vector_col: String,
    /// Parquet file (or URL) of query vectors, with the same column names.
    #[arg(long)]
    pub queries: String,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// l2, cosine or inner_product.
    #[arg(long, default_value = "l2")]
    pub metric: Metric,
    /// Rerank factor.
    #[arg(long)]
    pub rerank: Option<usize>,
    /// IVF lists probed per partition (unset: what each partition
    /// calibrates for `--target-recall`).
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// Recall@10 the defaults aim for, in (0, 1].
    #[arg(long, default_value_t = rulake_engine::DEFAULT_TARGET_RECALL)]
    pub target_recall: f32,
    /// Partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Output JSON Lines file.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Serialize)]
struct Line<'a> {
    query_id: &'a rulake_types::VectorId,
    ids: Vec<&'a rulake_types::VectorId>,
    distances: Vec<f32>,
}

/// Answer the queries and print recall and queries/s.
pub async fn run(a: Args) -> anyhow::Result<()> {
    let (source, dim, queries) = open(&a).await?;
    let engine = build_engine(&a, source, dim).await?;
    let params = SearchParams {
        k: a.k,
        nprobe: a.nprobe,
        rerank: a.rerank,
    };
    let qv: Vec<&[f32]> = queries.vectors.chunks(dim).collect();
    let (answers, secs) = answer(&engine, &qv, params).await?;
    write_answers(&a.output, &queries.ids, &answers)?;
    let recall = exact_recall(&engine, &qv, &answers, a.k).await? / qv.len().max(1) as f64;
    println!(
        "{} queries, k = {}: recall@{} {:.4} against an exact scan, {:.0} queries/s; answers in {}",
        qv.len(),
        a.k,
        a.k,
        recall,
        qv.len() as f64 / secs,
        a.output.display()
    );
    println!("{}", against_target(&engine, &a, recall).await?);
    Ok(())
}

/// The measured recall against the collection's target, with what each
/// partition calibrated (or why the target does not apply).
async fn against_target(engine: &RuLake, a: &Args, recall: f64) -> anyhow::Result<String> {
    if a.nprobe.is_some() {
        return Ok(format!(
            "target recall {} not applied: --nprobe {} overrides it",
            a.target_recall,
            a.nprobe.unwrap_or_default()
        ));
    }
    let (_, parts) = engine.partitions("query").await?;
    let probes: Vec<String> = parts
        .iter()
        .filter_map(|p| {
            let t = p.index.tuning()?;
            Some(format!(
                "{} of {} lists (sample recall {:.3})",
                t.nprobe,
                p.index.nlist(),
                t.recall
            ))
        })
        .collect();
    let verdict = if a.k != rulake_index::CALIBRATION_K {
        format!("the target is recall@{}", rulake_index::CALIBRATION_K)
    } else if recall >= a.target_recall as f64 {
        "met".to_owned()
    } else {
        format!("missed by {:.4}", a.target_recall as f64 - recall)
    };
    Ok(format!(
        "target recall@{} {}: {verdict}; calibrated probes: {}",
        rulake_index::CALIBRATION_K,
        a.target_recall,
        probes.join(", ")
    ))
}

/// Open the source, find its dimension and read every query vector.
async fn open(a: &Args) -> anyhow::Result<(ParquetSource, usize, RowBatch)> {
    // The queries file has the same column names as the source.
    let parquet =
        |url: &str| ParquetSource::open(ParquetSourceConfig::new(url, &a.id_col, &a.vector_col));
    let source = parquet(&a.source)?;
    let dim = source.probe_dimension().await?;
    let qsource = parquet(&a.queries)?;
    let qlisting = qsource.list_units().await?;
    let queries = read_all(&qsource, &qlisting, dim).await?;
    eprintln!(
        "{}: {} dimensions; {} queries",
        a.source,
        dim,
        queries.len()
    );
    Ok((source, dim, queries))
}

/// An engine with `source` as the collection `query`, its caches built.
async fn build_engine(a: &Args, source: ParquetSource, dim: usize) -> anyhow::Result<RuLake> {
    let engine = RuLake::new(CacheConfig::default());
    engine.register_source("source", Arc::new(source))?;
    engine.create_collection(
        CollectionSpec::new("query", "source", dim)
            .metric(a.metric)
            .partitions(a.partitions)
            .nprobe(a.nprobe)
            .target_recall(a.target_recall),
    )?;
    let t = Instant::now();
    engine.refresh("query").await?;
    eprintln!("caches built in {:.2} s", t.elapsed().as_secs_f64());
    Ok(engine)
}

/// Run the queries one after another; returns the hits of each and the
/// seconds they took.
async fn answer(
    engine: &RuLake,
    qv: &[&[f32]],
    params: SearchParams,
) -> anyhow::Result<(Vec<Vec<Hit>>, f64)> {
    let pb = bar(qv.len() as u64, "querying");
    let t = Instant::now();
    let mut answers = Vec::with_capacity(qv.len());
    for q in qv {
        answers.push(engine.search("query", q, params).await?.hits);
        pb.inc(1);
    }
    let secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    Ok((answers, secs))
}

/// One JSON line per query: its id, then the ids and distances found.
fn write_answers(
    output: &Path,
    ids: &[rulake_types::VectorId],
    answers: &[Vec<Hit>],
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    for (qid, hits) in ids.iter().zip(answers) {
        let line = Line {
            query_id: qid,
            ids: hits.iter().map(|h| &h.id).collect(),
            distances: hits.iter().map(|h| h.distance).collect(),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Recall against an exact scan of the same partitions, summed over the
/// queries.
async fn exact_recall(
    engine: &RuLake,
    qv: &[&[f32]],
    answers: &[Vec<Hit>],
    k: usize,
) -> anyhow::Result<f64> {
    let (_, parts) = engine.partitions("query").await?;
    let pb = bar(qv.len() as u64, "exact scan");
    let mut recall = 0.0;
    for (q, hits) in qv.iter().zip(answers) {
        let lists = parts
            .iter()
            .map(|p| {
                let ids = p.index.ids();
                p.index.exact_search(q, k).map(|r| {
                    r.into_iter()
                        .map(|(pos, distance)| Hit::new(ids.get(pos), distance))
                        .collect::<Vec<_>>()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let truth: Vec<_> = merge_topk(lists, k).into_iter().map(|h| h.id).collect();
        let found: Vec<_> = hits.iter().map(|h| h.id.clone()).collect();
        recall += rulake_index::exact::recall(&found, &truth);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(recall)
}
