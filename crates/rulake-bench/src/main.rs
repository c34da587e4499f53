//! `rulake-bench`: every benchmark behind `docs/BENCHMARKS.md`, each
//! rewriting its own section of that file. Never part of the product image;
//! `cargo run --release -p rulake-bench -- <section>` reproduces a section.

mod catalog;
mod cluster;
mod core;
mod embeddings;
mod fanout;
mod filter;
#[cfg(all(feature = "delta", feature = "iceberg"))]
mod formats;
mod fresh;
mod grpc;
mod lifecycle;
mod process;
#[cfg(all(feature = "delta", feature = "iceberg"))]
mod prune;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rulake-bench",
    about = "RuLake's benchmarks: each command rewrites one section of docs/BENCHMARKS.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recall, queries/s, build, memory and fan-out at n = 100k and 1M, FAISS beside (section `core`).
    Core(core::Args),
    /// Recall against queries/s on real embeddings and two synthetic sets, FAISS IVF-RaBitQ and HNSW beside (section `embeddings`).
    Embeddings(embeddings::Args),
    /// `fresh` against `eventual` at 8 concurrent clients, local and S3 lakes, with the lake's LIST calls (section `fresh`).
    Fresh(fresh::Args),
    /// The gRPC API against the in-process engine, and managed ingest (section `grpc`).
    Grpc(grpc::Args),
    /// Filtered search against an exact filtered scan at 50/10/1/0.1 % selectivity (section `filter`).
    Filter(filter::Args),
    /// Ingest, delete, compaction, backup, verify and restore of a managed collection (section `lifecycle`).
    Lifecycle(lifecycle::Args),
    /// Files, row groups and bytes a standing filter spares the lake, on partitioned Delta and Iceberg tables and Parquet (section `prune`).
    #[cfg(all(feature = "delta", feature = "iceberg"))]
    Prune(prune::Args),
    /// Placement (simulation) and the distributed query path (section `cluster`).
    Cluster(cluster::Args),
    /// A local 3-member catalog group: write latency and throughput (section `catalog`).
    Catalog(catalog::Args),
    /// Parquet, Delta and Iceberg sources side by side (section `formats`).
    #[cfg(all(feature = "delta", feature = "iceberg"))]
    Formats(formats::Args),
    /// Replace one named section of a Markdown report with standard input
    /// (used by the Python benchmark scripts).
    ReportSection {
        /// Section name.
        name: String,
        /// Report file.
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        file: std::path::PathBuf,
    },
    /// A cluster role for the benchmark's own child processes (boxed: the
    /// roles' flag sets dwarf the benchmarks').
    #[command(subcommand, hide = true)]
    Role(Box<Role>),
}

#[derive(Subcommand)]
enum Role {
    Meta(rulake_server::meta::RunArgs),
    Shard(rulake_server::shard::ShardArgs),
    Coordinator(Box<rulake_server::coordinator::CoordinatorArgs>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    rulake_telemetry::init(rulake_telemetry::LogFormat::Text)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Core(a) => core::run(a).await,
            Command::Embeddings(a) => embeddings::run(a).await,
            Command::Fresh(a) => fresh::run(a).await,
            Command::Grpc(a) => grpc::run(a).await,
            Command::Cluster(a) => cluster::run(a).await,
            Command::Filter(a) => filter::run(a).await,
            Command::Lifecycle(a) => lifecycle::run(a).await,
            #[cfg(all(feature = "delta", feature = "iceberg"))]
            Command::Prune(a) => prune::run(a).await,
            Command::Catalog(a) => catalog::run(a).await,
            #[cfg(all(feature = "delta", feature = "iceberg"))]
            Command::Formats(a) => formats::run(a).await,
            Command::ReportSection { name, file } => {
                let mut body = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut body)?;
                Ok(report::write_section(&file, &name, &body)?)
            }
            Command::Role(r) => {
                let shutdown = rulake_server::Shutdown::on_signal();
                match *r {
                    Role::Meta(a) => rulake_server::meta::run(a, shutdown).await,
                    Role::Shard(a) => rulake_server::shard::run(a, shutdown).await,
                    Role::Coordinator(a) => rulake_server::coordinator::run(*a, shutdown).await,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
