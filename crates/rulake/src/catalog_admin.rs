//! `rulake meta <subcommand>`: administer a running catalog group and edit
//! the catalog before the public API exists. Every subcommand is a client
//! that talks to any member (`--addrs`), which forwards to the leader;
//! running a member (`rulake meta` with no subcommand) is the server's.

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand};
use rulake_catalog::{
    CatalogClient, CollectionRecord, Command, ReadConsistency, SourceKind, SourceRecord,
};
use rulake_server::cluster_tls::ClusterTlsArgs;
use rulake_types::Metric;

/// `rulake meta`: a member's flags, or one administration subcommand.
#[derive(ClapArgs)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<CatalogCommand>,
    #[command(flatten)]
    run: rulake_server::meta::RunArgs,
}

/// The administration subcommands of `rulake meta`.
#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Members, leader, term, commit and applied index as each member sees them.
    Status(AddrArgs),
    /// Add a non-voting member; returns once it has caught up.
    AddLearner {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// The new member's id.
        #[arg(long)]
        id: u64,
        /// The new member's address.
        #[arg(long)]
        node_addr: String,
    },
    /// Set the voters; members left out are removed from the group.
    ChangeMembership {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// The complete list of voters.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
    },
    /// Sources.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Send any catalog command as JSON (see docs/catalog.md).
    Command {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// The command, e.g. `{"op":"delete_alias","alias":"live"}`.
        json: String,
    },
    /// Print the catalog as JSON.
    Show {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// Read from the member called without a quorum round (may be stale).
        #[arg(long)]
        local: bool,
    },
}

/// Which members a subcommand talks to, and how.
#[derive(ClapArgs)]
pub struct AddrArgs {
    /// Member addresses, comma-separated (any subset of the group).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7700")]
    pub addrs: Vec<String>,
    /// Mutual TLS towards the members.
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
}

impl AddrArgs {
    fn client(&self) -> anyhow::Result<CatalogClient> {
        let tls = self.tls.load()?;
        let transport = rulake_server::cluster_tls::transport(tls.as_ref());
        Ok(CatalogClient::with_transport(&self.addrs, &transport)?)
    }
}

/// `rulake meta source ...`.
#[derive(Subcommand)]
pub enum SourceCommand {
    /// Register a source.
    Create {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// Source name.
        name: String,
        /// parquet, delta, iceberg or managed.
        #[arg(long, default_value = "parquet")]
        kind: String,
        /// URL, prefix or glob (the managed source's prefix).
        #[arg(long)]
        url: String,
        /// Id column (parquet).
        #[arg(long, default_value = "id")]
        id_col: String,
        /// Vector column (parquet).
        #[arg(long, default_value = "embedding")]
        vector_col: String,
    },
    /// Remove a source no collection uses.
    Drop {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// Source name.
        name: String,
    },
}

/// `rulake meta collection ...`.
#[derive(Subcommand)]
pub enum CollectionCommand {
    /// Create a collection.
    Create {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// Collection name.
        name: String,
        /// Source name.
        #[arg(long)]
        source: String,
        /// Vector dimension.
        #[arg(long)]
        dim: u32,
        /// l2, cosine or inner_product.
        #[arg(long, default_value = "l2")]
        metric: Metric,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: u32,
    },
    /// Drop a collection.
    Drop {
        /// The members to ask.
        #[command(flatten)]
        addrs: AddrArgs,
        /// Collection name.
        name: String,
    },
    /// List collections (linearizable read).
    List(AddrArgs),
}

async fn write(addrs: &AddrArgs, cmd: Command) -> anyhow::Result<()> {
    let (index, applied) = addrs.client()?.write(&cmd).await?;
    println!(
        "{} committed at index {index}: {}",
        cmd.name(),
        serde_json::to_string(&applied)?
    );
    Ok(())
}

async fn status(addrs: &AddrArgs) -> anyhow::Result<()> {
    let client = addrs.client()?;
    println!(
        "{:<22} {:>4} {:>10} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6}  members",
        "address", "id", "state", "leader", "term", "last", "commit", "applied", "epoch"
    );
    let mut failed = 0;
    for (i, addr) in client.addrs().iter().enumerate() {
        match client.status_of(i).await {
            Ok(s) => {
                let members: Vec<String> = s
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "{}{}@{}",
                            m.id,
                            if m.voter { "" } else { "(learner)" },
                            m.addr
                        )
                    })
                    .collect();
                let leader = if s.leader == 0 {
                    "-".to_string()
                } else {
                    s.leader.to_string()
                };
                println!(
                    "{:<22} {:>4} {:>10} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6}  {}",
                    addr,
                    s.id,
                    s.state,
                    leader,
                    s.term,
                    s.last_log_index,
                    s.commit_index,
                    s.applied_index,
                    s.epoch,
                    members.join(" ")
                );
            }
            Err(e) => {
                failed += 1;
                println!("{addr:<22} unreachable: {e}");
            }
        }
    }
    if failed == client.addrs().len() {
        bail!("no member answered");
    }
    Ok(())
}

/// Run `rulake meta`: a member until `shutdown` fires, or one subcommand.
pub async fn run(args: Args, shutdown: rulake_server::Shutdown) -> anyhow::Result<()> {
    let Some(cmd) = args.command else {
        return rulake_server::meta::run(args.run, shutdown).await;
    };
    match cmd {
        CatalogCommand::Status(a) => status(&a).await,
        CatalogCommand::AddLearner {
            addrs,
            id,
            node_addr,
        } => add_learner(&addrs, id, &node_addr).await,
        CatalogCommand::ChangeMembership { addrs, voters } => {
            change_membership(&addrs, &voters).await
        }
        CatalogCommand::Source(c) => source(c).await,
        CatalogCommand::Collection(c) => collection(c).await,
        CatalogCommand::Command { addrs, json } => command(&addrs, &json).await,
        CatalogCommand::Show { addrs, local } => show(&addrs, local).await,
    }
}

async fn add_learner(addrs: &AddrArgs, id: u64, node_addr: &str) -> anyhow::Result<()> {
    let r = addrs.client()?.add_learner(id, node_addr).await?;
    println!("learner {id} added at index {}", r.log_index);
    Ok(())
}

async fn change_membership(addrs: &AddrArgs, voters: &[u64]) -> anyhow::Result<()> {
    let r = addrs.client()?.change_membership(voters).await?;
    println!("voters set to {voters:?} at index {}", r.log_index);
    Ok(())
}

async fn source(cmd: SourceCommand) -> anyhow::Result<()> {
    match cmd {
        SourceCommand::Create {
            addrs,
            name,
            kind,
            url,
            id_col,
            vector_col,
        } => {
            let kind = source_kind(&kind, url, id_col, vector_col)?;
            let record = SourceRecord {
                name,
                kind,
                options: Default::default(),
            };
            write(&addrs, Command::CreateSource(record)).await
        }
        SourceCommand::Drop { addrs, name } => write(&addrs, Command::DropSource { name }).await,
    }
}

/// The `--kind` flag with the location and columns it takes.
fn source_kind(
    kind: &str,
    url: String,
    id_col: String,
    vector_col: String,
) -> anyhow::Result<SourceKind> {
    Ok(match kind {
        "parquet" => SourceKind::Parquet {
            url,
            id_column: id_col,
            vector_column: vector_col,
        },
        "delta" => SourceKind::Delta {
            url,
            id_column: id_col,
            vector_column: vector_col,
            version: None,
        },
        "iceberg" => SourceKind::Iceberg {
            url,
            id_column: id_col,
            vector_column: vector_col,
            snapshot_id: None,
            sql_catalog: None,
        },
        "managed" => SourceKind::Managed { prefix: url },
        other => bail!("unknown source kind {other:?}: parquet, delta, iceberg or managed"),
    })
}

async fn collection(cmd: CollectionCommand) -> anyhow::Result<()> {
    match cmd {
        CollectionCommand::Create {
            addrs,
            name,
            source,
            dim,
            metric,
            partitions,
            replication,
        } => {
            let mut rec = CollectionRecord::new(&name, &source, dim);
            rec.metric = metric;
            rec.partitions = partitions;
            rec.replication = replication;
            write(&addrs, Command::CreateCollection(rec)).await
        }
        CollectionCommand::Drop { addrs, name } => {
            write(&addrs, Command::DropCollection { name }).await
        }
        CollectionCommand::List(addrs) => list_collections(&addrs).await,
    }
}

async fn list_collections(addrs: &AddrArgs) -> anyhow::Result<()> {
    let r = addrs.client()?.read(ReadConsistency::Linearizable).await?;
    println!(
        "{:<24} {:<16} {:>6} {:<14} {:>5} {:>3}",
        "name", "source", "dim", "metric", "P", "R"
    );
    for c in r.catalog.collections.values() {
        println!(
            "{:<24} {:<16} {:>6} {:<14} {:>5} {:>3}",
            c.name,
            c.source,
            c.dim,
            c.metric.as_str(),
            c.partitions,
            c.replication
        );
    }
    for (alias, target) in &r.catalog.aliases {
        println!("alias {alias} -> {target}");
    }
    Ok(())
}

async fn command(addrs: &AddrArgs, json: &str) -> anyhow::Result<()> {
    let cmd: Command = serde_json::from_str(json).context("parse the command")?;
    write(addrs, cmd).await
}

async fn show(addrs: &AddrArgs, local: bool) -> anyhow::Result<()> {
    let c = if local {
        ReadConsistency::Local
    } else {
        ReadConsistency::Linearizable
    };
    let r = addrs.client()?.read(c).await?;
    eprintln!(
        "served by member {} at applied index {} (epoch {})",
        r.served_by, r.applied_index, r.epoch
    );
    println!("{}", serde_json::to_string_pretty(&r.catalog)?);
    Ok(())
}
