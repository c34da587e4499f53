//! `rulake`: thin command-line front end over the RuLake libraries.
//!
//! # Layout
//! - `demo`: generate a clustered lake, build caches, print one comparison table.
//! - `query`: run a Parquet file of queries against a Parquet source.
//! - `bench`: the reproducible benchmark behind `docs/BENCHMARKS.md`.
//! - `meta`: run or administer a member of the catalog's Raft group.

mod bench;
mod demo;
mod measure;
mod meta;
mod meta_bench;
mod query;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rulake",
    version,
    about = "RuLake: k-nearest-neighbour queries over vectors in your data lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a clustered-Gaussian lake, load it and compare RuLake with a flat RaBitQ index.
    Demo(demo::Args),
    /// Answer every query of a Parquet file against a Parquet source.
    Query(query::Args),
    /// Run the benchmark and write docs/BENCHMARKS.md.
    Bench(bench::Args),
    /// Run a member of the catalog's Raft group (`--id`, `--peers`), or administer it.
    Meta(meta::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RULAKE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Demo(a) => rt.block_on(demo::run(a)),
        Command::Query(a) => rt.block_on(query::run(a)),
        Command::Bench(a) => rt.block_on(bench::run(a)),
        Command::Meta(a) => rt.block_on(meta::run(a)),
    }
}
