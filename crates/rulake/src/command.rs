//! The `rulake` command line: parse, then dispatch to a server role
//! (`rulake-server`), a client command or the demo. In the library so the
//! binary is one call and the multi-process tests run this same command
//! line (tests/). Benchmarks are a separate binary (`rulake-bench`) and
//! never ship in the image.

use crate::{audit, catalog_admin, cli, demo, lifecycle, query};
use clap::{Parser, Subcommand};
use rulake_server::{coordinator, dev, serve, shard, Shutdown};

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
    log_format: rulake_telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a clustered-Gaussian lake, load it and compare RuLake with a flat RaBitQ index.
    Demo(demo::Args),
    /// Answer every query of a Parquet file against a Parquet source.
    Query(query::Args),
    /// Serve the public gRPC API (rulake.v1): every role in one process over a data directory.
    Serve(serve::Args),
    /// Run a member of the catalog's Raft group (`--id`, `--peers`), or administer it.
    Meta(catalog_admin::Args),
    /// Run a shard node: the partitions the meta group assigns it, served to coordinators.
    Shard(shard::ShardArgs),
    /// Run a coordinator: the public API over the cluster's shard nodes.
    Coordinator(coordinator::CoordinatorArgs),
    /// Start a local cluster on loopback: 3 meta members, N shard nodes, one coordinator.
    Dev(dev::DevArgs),
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
    /// Delete ids from a collection on a running server (tombstones).
    Delete(lifecycle::DeleteArgs),
    /// Rewrite a managed collection's files without its deleted rows.
    Compact(lifecycle::CompactArgs),
    /// Show what the generation a collection serves is made of: its lake files.
    Lineage(lifecycle::LineageArgs),
    /// Back up a server's catalog and managed files; list, verify or restore backups.
    #[command(subcommand)]
    Backup(lifecycle::Backup),
    /// Cache statistics and cluster status of a running server.
    Stats(cli::Conn),
    /// Check an audit log's hash chain (no server needed).
    #[command(subcommand)]
    Audit(audit::Audit),
}

/// Parse the process arguments and run the command they name.
pub fn main() -> anyhow::Result<()> {
    crate::allocator::install();
    let cli = Cli::parse();
    rulake_telemetry::init(cli.log_format)?;
    #[cfg(feature = "failpoints")]
    rulake_server::failpoints::watch();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Demo(a) => demo::run(a).await,
            Command::Query(a) => query::run(a).await,
            Command::Serve(a) => serve::run(a, Shutdown::on_signal()).await,
            Command::Meta(a) => catalog_admin::run(a, Shutdown::on_signal()).await,
            Command::Shard(a) => shard::run(a, Shutdown::on_signal()).await,
            Command::Coordinator(a) => coordinator::run(a, Shutdown::on_signal()).await,
            Command::Dev(a) => dev::run(a, Shutdown::on_signal()).await,
            Command::Collections(c) => cli::collections(c).await,
            Command::Alias(c) => cli::alias(c).await,
            Command::Ingest(a) => cli::ingest(a).await,
            Command::Search(a) => cli::search(a).await,
            Command::Delete(a) => lifecycle::delete(a).await,
            Command::Compact(a) => lifecycle::compact(a).await,
            Command::Lineage(a) => lifecycle::lineage(a).await,
            Command::Backup(b) => lifecycle::backup(b).await,
            Command::Stats(c) => cli::stats(c).await,
            Command::Audit(c) => audit::run(c),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over every subcommand (duplicate flag
    /// or group names from flattened option structs fail here, not at
    /// start-up), and no benchmark command in the product.
    #[test]
    fn command_line_is_consistent_and_carries_no_benchmarks() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["rulake", "--log-format", "json", "demo"]).unwrap();
        assert_eq!(cli.log_format, rulake_telemetry::LogFormat::Json);
        assert!(Cli::try_parse_from(["rulake", "--log-format", "yaml", "demo"]).is_err());
        for c in Cli::command().get_subcommands() {
            assert!(!c.get_name().contains("bench"), "{}", c.get_name());
        }
        assert!(Cli::try_parse_from(["rulake", "report-section", "x"]).is_err());
    }
}
