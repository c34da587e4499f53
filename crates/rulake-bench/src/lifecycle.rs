//! `rulake-bench lifecycle`: what the data-lifecycle operations cost at
//! scale (the `lifecycle` section of docs/BENCHMARKS.md): managed ingest,
//! deletes, a compaction that erases them, a backup, its verification and
//! a restore into a new node, each timed as a client sees it through the
//! gRPC API, then the restored node's first answer.
//!
//! Why through the API: these are the calls an operator makes (`rulake
//! compact`, `rulake backup create`, `rulake backup restore`), and their
//! cost includes streaming progress, the catalog commands through Raft and
//! the reload and re-persist of the new generation.

use crate::grpc::serve_loopback;
use crate::report;
use rulake::measure::bar;
use rulake_api::{router, Api, Limits};
use rulake_client::{proto, Client, Id};
use rulake_coordinator::{Embedded, EmbeddedConfig};
use rulake_datasets::ClusteredGaussian;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `rulake-bench lifecycle` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Vectors ingested.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Ingest calls the vectors arrive in (each commits one generation).
    #[arg(long, default_value_t = 10)]
    pub ingests: usize,
    /// Share of the rows deleted before the compaction.
    #[arg(long, default_value_t = 0.01)]
    pub delete_fraction: f64,
    /// Partitions of the collection.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Working directory (both nodes' data directories and the backup).
    #[arg(long, default_value = "rulake-demo-lake/lifecycle")]
    pub work: PathBuf,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub output: PathBuf,
}

/// A node serving the API on loopback, backups allowed under `backups`.
async fn node(dir: &Path, backups: &Path) -> anyhow::Result<(Embedded, Client)> {
    let node = Embedded::start(EmbeddedConfig {
        cache_bytes: 16 << 30,
        ..EmbeddedConfig::new(dir)
    })
    .await?;
    let policy = rulake_lake::SourcePolicy::new()
        .allow(&backups.display().to_string(), Default::default())?;
    // Ingest calls load the generation they commit before they answer: at
    // a million vectors that is longer than the default request deadline,
    // as a server run with a longer --request-timeout would allow.
    let limits = Limits {
        request_timeout: Duration::from_secs(4 * 3600),
        ..Limits::default()
    };
    let api = Api::new(node.coordinator.clone(), limits).with_backup_policy(policy);
    let addr = serve_loopback(router(api)).await?;
    let client = Client::connect(&format!("http://{addr}"))
        .await?
        .with_timeout(Duration::from_secs(4 * 3600));
    Ok((node, client))
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The top-10 ids of each query, as text.
async fn answers(c: &Client, queries: &[Vec<f32>]) -> anyhow::Result<Vec<Vec<u64>>> {
    use proto::vector_id::Id as Pb;
    let mut out = Vec::new();
    for q in queries {
        let r = c.search("life", q, 10).await?;
        out.push(
            r.hits
                .iter()
                .filter_map(|h| match h.id.as_ref()?.id {
                    Some(Pb::Num(n)) => Some(n),
                    _ => None,
                })
                .collect(),
        );
    }
    Ok(out)
}

/// The exact 10 nearest live rows (L2) of each query.
fn exact(all: &[f32], dim: usize, dead: &HashSet<u64>, queries: &[Vec<f32>]) -> Vec<Vec<u64>> {
    queries
        .iter()
        .map(|q| {
            let mut d: Vec<(f32, u64)> = all
                .chunks(dim)
                .enumerate()
                .filter(|(i, _)| !dead.contains(&(*i as u64)))
                .map(|(i, v)| {
                    let dist: f32 = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                    (dist, i as u64)
                })
                .collect();
            d.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
            d.truncate(10);
            d.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// The mean share of `want`'s ids each answer of `got` has.
fn overlap(got: &[Vec<u64>], want: &[Vec<u64>]) -> f64 {
    let shared: usize = got
        .iter()
        .zip(want)
        .map(|(g, w)| w.iter().filter(|id| g.contains(id)).count())
        .sum();
    let total: usize = want.iter().map(Vec::len).sum();
    shared as f64 / total.max(1) as f64
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.ingests >= 1 && a.n >= a.ingests, "too few vectors");
    let _ = std::fs::remove_dir_all(&a.work);
    let backups = a.work.join("backups");
    std::fs::create_dir_all(&backups)?;
    let backups = backups.canonicalize()?;
    let (source, client) = node(&a.work.join("source"), &backups).await?;
    client
        .create_collection(proto::CollectionSpec {
            name: "life".into(),
            source: Some(proto::Source {
                kind: Some(proto::source::Kind::Managed(proto::ManagedSource {})),
            }),
            dimension: a.dim as u32,
            metric: proto::Metric::L2 as i32,
            partitions: a.partitions,
            ..Default::default()
        })
        .await?;
    let g = ClusteredGaussian::new(a.dim, 64, 0.35, 42);
    let per = a.n.div_ceil(a.ingests);
    let pb = bar(a.n as u64, "ingest");
    let t = Instant::now();
    // Every vector, for the exact answers the recall is measured against.
    let mut all: Vec<f32> = Vec::with_capacity(a.n * a.dim);
    for call in 0..a.ingests {
        let first = call * per;
        let rows = per.min(a.n - first);
        let vectors = g.sample(rows, 1000 + call as u64);
        all.extend_from_slice(&vectors);
        let records: Vec<(Id, Vec<f32>)> = vectors
            .chunks(a.dim)
            .enumerate()
            .map(|(i, v)| (Id::Num((first + i) as u64), v.to_vec()))
            .collect();
        let p = pb.clone();
        client
            .ingest("life", records, 1000, move |sent| {
                p.set_position((first as u64) + sent)
            })
            .await?;
    }
    let ingest_s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    eprintln!("ingested {} vectors in {ingest_s:.1} s", a.n);

    // Every `stride`-th id, spread over every file.
    let stride = (1.0 / a.delete_fraction.clamp(1e-6, 1.0)).round() as usize;
    let doomed: Vec<Id> = (0..a.n)
        .step_by(stride)
        .map(|i| Id::Num(i as u64))
        .collect();
    let t = Instant::now();
    let mut deleted = 0;
    for chunk in doomed.chunks(10_000) {
        deleted += client.delete("life", chunk.to_vec()).await?;
    }
    let delete_s = t.elapsed().as_secs_f64();
    eprintln!("deleted {deleted} ids in {delete_s:.1} s");

    let managed_before = bytes_under(&a.work.join("source").join("managed"));
    let pb = bar(0, "compaction");
    let p = pb.clone();
    let t = Instant::now();
    let compacted = client
        .compact("life", move |c| {
            p.set_length(c.files_total);
            p.set_position(c.files_scanned);
        })
        .await?;
    let compact_s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    eprintln!("compacted in {compact_s:.1} s: {compacted:?}");

    let queries: Vec<Vec<f32>> = g.sample(50, 7).chunks(a.dim).map(<[f32]>::to_vec).collect();
    let before = answers(&client, &queries).await?;

    let to = backups.join("b1").display().to_string();
    let pb = bar(0, "backup");
    let p = pb.clone();
    let t = Instant::now();
    let backed = client
        .create_backup(&to, move |b| {
            p.set_length(b.files_total);
            p.set_position(b.files_done);
        })
        .await?;
    let backup_s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    eprintln!("backed up in {backup_s:.1} s: {backed:?}");

    let t = Instant::now();
    rulake_coordinator::backup::read_backup(&to, &|_| {}).await?;
    let verify_s = t.elapsed().as_secs_f64();
    source.shutdown().await;

    let (restored, client) = node(&a.work.join("restored"), &backups).await?;
    let pb = bar(0, "restore");
    let p = pb.clone();
    let t = Instant::now();
    client
        .restore_backup(&to, move |b| {
            p.set_length(b.files_total);
            p.set_position(b.files_done);
        })
        .await?;
    let restore_s = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let t = Instant::now();
    client.search("life", &queries[0], 10).await?;
    let first_answer_s = t.elapsed().as_secs_f64();
    let after = answers(&client, &queries).await?;
    let dead: HashSet<u64> = (0..a.n as u64).step_by(stride).collect();
    let no_dead = before
        .iter()
        .chain(&after)
        .flatten()
        .all(|id| !dead.contains(id));
    let truth = exact(&all, a.dim, &dead, &queries);
    let (recall_before, recall_after) = (overlap(&before, &truth), overlap(&after, &truth));
    let same = overlap(&after, &before);
    restored.shutdown().await;
    eprintln!("restored in {restore_s:.1} s; first answer {first_answer_s:.1} s later; top-10 overlap with the source: {same:.4}; recall@10 source {recall_before:.4}, restored {recall_after:.4}");

    let mb = |b: u64| b as f64 / 1e6;
    let rows_read = compacted.rows_kept + compacted.rows_dropped;
    let mut md = String::new();
    writeln!(md, "## Data lifecycle: compaction, backup, restore\n")?;
    writeln!(
        md,
        "`cargo run -p rulake-bench -- lifecycle --n {n} --dim {d}` (dev profile as configured in Cargo.toml, so \
not release figures; one run, local disk, 2 cores). One embedded node serves the gRPC API on loopback; a managed \
collection of {n} clustered vectors (D = {d}, P = {p}) arrives in {calls} ingest calls, every {stride}th id is \
deleted, `Compact` erases them, `CreateBackup` copies the catalog and the managed files, and `RestoreBackup` \
rebuilds them in a second node with a new data directory, as `rulake compact`, `rulake backup create` and \
`rulake backup restore` do. Times are the client's, progress streams included.\n",
        n = a.n,
        d = a.dim,
        p = a.partitions,
        calls = a.ingests,
    )?;
    writeln!(md, "| step | time | work | throughput |")?;
    writeln!(md, "|---|---:|---|---:|")?;
    writeln!(
        md,
        "| ingest | {ingest_s:.1} s | {} vectors in {} calls | {:.0} vectors/s |",
        a.n,
        a.ingests,
        a.n as f64 / ingest_s
    )?;
    writeln!(
        md,
        "| delete | {delete_s:.1} s | {deleted} ids (tombstones through Raft) | {:.0} ids/s |",
        deleted as f64 / delete_s
    )?;
    writeln!(
        md,
        "| compact | {compact_s:.1} s | {} files ({:.0} MB) read, {} rewritten into {}; {} rows kept, {} dropped; \
{} tombstones retired; new generation `{}` loaded and persisted | {:.0} rows/s, {:.1} MB/s |",
        compacted.files_scanned,
        mb(managed_before),
        compacted.files_retired,
        compacted.files_written,
        compacted.rows_kept,
        compacted.rows_dropped,
        compacted.tombstones_retired,
        compacted.generation,
        rows_read as f64 / compact_s,
        mb(managed_before) / compact_s
    )?;
    writeln!(
        md,
        "| backup | {backup_s:.1} s | {} files, {:.0} MB | {:.1} MB/s |",
        backed.files,
        mb(backed.bytes),
        mb(backed.bytes) / backup_s
    )?;
    writeln!(
        md,
        "| verify (every checksum) | {verify_s:.1} s | {:.0} MB | {:.1} MB/s |",
        mb(backed.bytes),
        mb(backed.bytes) / verify_s
    )?;
    writeln!(
        md,
        "| restore into a new node | {restore_s:.1} s | checked, copied, catalog written | {:.1} MB/s |",
        mb(backed.bytes) / restore_s
    )?;
    writeln!(
        md,
        "| restored node's first answer | {first_answer_s:.1} s | {} vectors loaded from the restored files | {:.0} vectors/s |",
        compacted.rows_kept,
        compacted.rows_kept as f64 / first_answer_s
    )?;
    writeln!(
        md,
        "\nRecall@10 against an exact scan of the live rows (50 queries, collection defaults): source node after the \
compaction {recall_before:.4}, restored node {recall_after:.4}; their answers share {:.1} % of their ids. The restored \
node builds its partitions from the restored files in one go, the source node's come from the compaction's reload, \
and two builds of an IVF index need not probe the same candidates (the restore drill in `tests/backup.rs`, on a \
small collection, compares answers exactly). No deleted id is in either node's answers: {}.\n",
        100.0 * same,
        if no_dead { "checked" } else { "FAILED" }
)?;
    print!("{md}");
    report::write_section(&a.output, "lifecycle", &md)?;
    eprintln!("wrote the lifecycle section of {}", a.output.display());
    Ok(())
}
