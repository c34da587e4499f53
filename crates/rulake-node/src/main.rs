//! `rulake`: thin command-line front end over the RuLake libraries.
//!
//! # Layout
//! - `demo`: generate a clustered lake, build caches, print one comparison table.
//! - `query`: run a Parquet file of queries against a Parquet source.
//! - `bench`: the reproducible benchmark behind `docs/BENCHMARKS.md`.
//! - `bench-grpc`: the gRPC API's cost over the engine, and managed ingest.
//! - `serve`: the public gRPC API over the embedded engine.
//! - `bench-formats` (features `delta` + `iceberg`): lake → first answer and
//!   refresh after an append, for a Parquet prefix, a Delta and an Iceberg table.
//! - `meta`: run or administer a member of the catalog's Raft group.
//! - `collections`, `alias`, `ingest`, `search`, `stats`: a client of a
//!   running server (`cli`).

mod bench;
mod cli;
mod cluster_bench;
mod cluster_tls;
mod demo;
#[cfg(all(feature = "delta", feature = "iceberg"))]
mod formats_bench;
mod grpc_bench;
mod measure;
mod meta;
mod meta_bench;
// Wired into `serve` and `meta` by their merge (see docs/observability.md).
mod observe;
mod query;
mod report;
mod roles;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rulake",
    version,
    about = "RuLake: k-nearest-neighbour queries over vectors in your data lake"
)]
struct Cli {
    /// Log lines as human-readable text or one JSON object per line
    /// (level filter: RULAKE_LOG, default warn).
    #[arg(long, global = true, default_value = "text", env = "RULAKE_LOG_FORMAT")]
    log_format: rulake_metrics::telemetry::LogFormat,
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
    /// Measure the gRPC API against the in-process engine, and managed ingest (the `grpc` section of docs/BENCHMARKS.md).
    BenchGrpc(grpc_bench::Args),
    /// Serve the public gRPC API (rulake.v1): every role in one process over a data directory.
    Serve(serve::Args),
    /// Create, list, describe or drop collections on a running server.
    #[command(subcommand)]
    Collections(cli::Collections),
    /// Create, delete, switch or list aliases on a running server.
    #[command(subcommand)]
    Alias(cli::Alias),
    /// Ingest a Parquet, JSON Lines or CSV file into a managed collection.
    Ingest(cli::IngestArgs),
    /// Search a collection or alias on a running server.
    Search(cli::SearchArgs),
    /// Cache statistics and cluster status of a running server.
    Stats(cli::Conn),
    /// Replace one named section of a Markdown report with standard input
    /// (used by benchmark scripts outside this binary).
    #[command(hide = true)]
    ReportSection {
        /// Section name.
        name: String,
        /// Report file.
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        file: std::path::PathBuf,
    },
    /// Measure Parquet, Delta and Iceberg sources side by side (the `formats` section of docs/BENCHMARKS.md).
    #[cfg(all(feature = "delta", feature = "iceberg"))]
    BenchFormats(formats_bench::Args),
    /// Run a member of the catalog's Raft group (`--id`, `--peers`), or administer it.
    Meta(meta::Args),
    /// Run a shard node: the partitions the meta group assigns it, served to coordinators.
    Shard(roles::ShardArgs),
    /// Run a coordinator: the public API over the cluster's shard nodes.
    Coordinator(roles::CoordinatorArgs),
    /// Measure placement (simulation) and the distributed query path (the `cluster` section of docs/BENCHMARKS.md).
    BenchCluster(cluster_bench::Args),
    /// Start a local cluster on loopback: 3 meta members, N shard nodes, one coordinator.
    Dev(roles::DevArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    rulake_metrics::telemetry::init(cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Demo(a) => rt.block_on(demo::run(a)),
        Command::Query(a) => rt.block_on(query::run(a)),
        Command::Bench(a) => rt.block_on(bench::run(a)),
        Command::BenchGrpc(a) => rt.block_on(grpc_bench::run(a)),
        Command::Serve(a) => rt.block_on(serve::run(a)),
        Command::Collections(c) => rt.block_on(cli::collections(c)),
        Command::Alias(c) => rt.block_on(cli::alias(c)),
        Command::Ingest(a) => rt.block_on(cli::ingest(a)),
        Command::Search(a) => rt.block_on(cli::search(a)),
        Command::Stats(c) => rt.block_on(cli::stats(c)),
        Command::ReportSection { name, file } => {
            let mut body = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut body)?;
            Ok(report::write_section(&file, &name, &body)?)
        }
        #[cfg(all(feature = "delta", feature = "iceberg"))]
        Command::BenchFormats(a) => rt.block_on(formats_bench::run(a)),
        Command::Meta(a) => rt.block_on(meta::run(a)),
        Command::Shard(a) => rt.block_on(roles::shard(a)),
        Command::Coordinator(a) => rt.block_on(roles::coordinator(a)),
        Command::Dev(a) => rt.block_on(roles::dev(a)),
        Command::BenchCluster(a) => rt.block_on(cluster_bench::run(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over every subcommand (duplicate flag
    /// or group names from flattened option structs fail here, not at
    /// start-up).
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["rulake", "--log-format", "json", "demo"]).unwrap();
        assert_eq!(cli.log_format, rulake_metrics::telemetry::LogFormat::Json);
        assert!(Cli::try_parse_from(["rulake", "--log-format", "yaml", "demo"]).is_err());
    }
}
