//! `rulake meta`: run a member of the catalog's Raft group, administer the
//! group, and edit the catalog before the public API exists. With no
//! subcommand it runs a member; every other subcommand is a client that
//! talks to any member (`--addrs`), which forwards to the leader.

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand};
use rulake_catalog::{
    CollectionRecord, Command, MetaClient, MetaConfig, ReadConsistency, SourceKind, SourceRecord,
};
use rulake_types::Metric;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `rulake meta`.
#[derive(ClapArgs)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<MetaCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of a running member.
#[derive(ClapArgs, Clone)]
pub struct RunArgs {
    /// Address of the HTTP port serving /metrics, /healthz and /readyz (off when unset).
    #[arg(long, env = "RULAKE_META_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// This member's id (≥ 1).
    #[arg(long)]
    id: Option<u64>,
    /// Address to listen on (Raft and catalog services).
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Address others reach this member at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Initial members, `id=host:port,...`, the same on every initial member
    /// (include this one). Omit for a member that joins later as a learner.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Data directory (log, vote, snapshots).
    #[arg(long, default_value = "rulake-meta")]
    data_dir: PathBuf,
    /// Leader heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Election timeout lower bound, milliseconds.
    #[arg(long, default_value_t = 500)]
    election_min_ms: u64,
    /// Election timeout upper bound, milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_max_ms: u64,
    /// Build a snapshot every this many log entries.
    #[arg(long, default_value_t = 1000)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = 1000)]
    keep_logs: u64,
    /// A shard node silent this long (milliseconds) is taken out of
    /// placement until it beats again.
    #[arg(long, default_value_t = 5000)]
    shard_grace_ms: u64,
    #[command(flatten)]
    tls: crate::cluster_tls::ClusterTlsArgs,
}

#[derive(Subcommand)]
enum MetaCommand {
    /// Members, leader, term, commit and applied index as each member sees them.
    Status(AddrArgs),
    /// Add a non-voting member; returns once it has caught up.
    AddLearner {
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
        #[command(flatten)]
        addrs: AddrArgs,
        /// The command, e.g. `{"op":"delete_alias","alias":"live"}`.
        json: String,
    },
    /// Print the catalog as JSON.
    Show {
        #[command(flatten)]
        addrs: AddrArgs,
        /// Read from the member called without a quorum round (may be stale).
        #[arg(long)]
        local: bool,
    },
    /// Benchmark a local 3-member group and write docs/BENCHMARKS.md's catalog section.
    Bench(crate::meta_bench::Args),
}

#[derive(ClapArgs)]
struct AddrArgs {
    /// Member addresses, comma-separated (any subset of the group).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7700")]
    addrs: Vec<String>,
    #[command(flatten)]
    tls: crate::cluster_tls::ClusterTlsArgs,
}

impl AddrArgs {
    fn client(&self) -> anyhow::Result<MetaClient> {
        let tls = self.tls.load()?;
        let transport = crate::cluster_tls::transport(tls.as_ref());
        Ok(MetaClient::with_transport(&self.addrs, &transport)?)
    }
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Register a source.
    Create {
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
        #[command(flatten)]
        addrs: AddrArgs,
        /// Source name.
        name: String,
    },
}

#[derive(Subcommand)]
enum CollectionCommand {
    /// Create a collection.
    Create {
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
        #[command(flatten)]
        addrs: AddrArgs,
        /// Collection name.
        name: String,
    },
    /// List collections (linearizable read).
    List(AddrArgs),
}

fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for p in peers.iter().filter(|p| !p.is_empty()) {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("peer {p:?} is not id=host:port"))?;
        let id: u64 = id.parse().with_context(|| format!("peer id in {p:?}"))?;
        if id == 0 || addr.is_empty() || out.insert(id, addr.to_owned()).is_some() {
            bail!("peer {p:?}: ids start at 1, appear once, and need an address");
        }
    }
    Ok(out)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async move {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run_member(a: RunArgs) -> anyhow::Result<()> {
    let Some(id) = a.id else {
        bail!("`rulake meta` runs a member and needs --id (or use a subcommand, see --help)");
    };
    let peers = parse_peers(&a.peers)?;
    if !peers.is_empty() && !peers.contains_key(&id) {
        bail!("--peers must include this member ({id})");
    }
    let mut cfg = MetaConfig::new(id, a.listen, a.data_dir);
    cfg.advertise = a.advertise.unwrap_or_else(|| a.listen.to_string());
    cfg.peers = peers;
    cfg.heartbeat = Duration::from_millis(a.heartbeat_ms);
    cfg.election_min = Duration::from_millis(a.election_min_ms);
    cfg.election_max = Duration::from_millis(a.election_max_ms);
    cfg.snapshot_every = a.snapshot_every;
    cfg.keep_logs = a.keep_logs;
    cfg.placement.grace = Duration::from_millis(a.shard_grace_ms);
    let tls = a.tls.load()?;
    cfg.transport = crate::cluster_tls::transport(tls.as_ref());
    eprintln!(
        "rulake meta: member {id} listening on {} (data in {})",
        cfg.listen,
        cfg.data_dir.display()
    );
    crate::observe::run_meta(cfg, a.metrics_listen, tls, shutdown_signal()).await?;
    Ok(())
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

/// Run `rulake meta`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Some(cmd) = args.command else {
        return run_member(args.run).await;
    };
    match cmd {
        MetaCommand::Status(a) => status(&a).await,
        MetaCommand::AddLearner {
            addrs,
            id,
            node_addr,
        } => {
            let r = addrs.client()?.add_learner(id, &node_addr).await?;
            println!("learner {id} added at index {}", r.log_index);
            Ok(())
        }
        MetaCommand::ChangeMembership { addrs, voters } => {
            let r = addrs.client()?.change_membership(&voters).await?;
            println!("voters set to {voters:?} at index {}", r.log_index);
            Ok(())
        }
        MetaCommand::Source(SourceCommand::Create {
            addrs,
            name,
            kind,
            url,
            id_col,
            vector_col,
        }) => {
            let kind = match kind.as_str() {
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
            };
            write(
                &addrs,
                Command::CreateSource(SourceRecord {
                    name,
                    kind,
                    options: Default::default(),
                }),
            )
            .await
        }
        MetaCommand::Source(SourceCommand::Drop { addrs, name }) => {
            write(&addrs, Command::DropSource { name }).await
        }
        MetaCommand::Collection(CollectionCommand::Create {
            addrs,
            name,
            source,
            dim,
            metric,
            partitions,
            replication,
        }) => {
            let mut rec = CollectionRecord::new(&name, &source, dim);
            rec.metric = metric;
            rec.partitions = partitions;
            rec.replication = replication;
            write(&addrs, Command::CreateCollection(rec)).await
        }
        MetaCommand::Collection(CollectionCommand::Drop { addrs, name }) => {
            write(&addrs, Command::DropCollection { name }).await
        }
        MetaCommand::Collection(CollectionCommand::List(addrs)) => {
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
        MetaCommand::Command { addrs, json } => {
            let cmd: Command = serde_json::from_str(&json).context("parse the command")?;
            write(&addrs, cmd).await
        }
        MetaCommand::Show { addrs, local } => {
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
        MetaCommand::Bench(a) => crate::meta_bench::run(a).await,
    }
}
