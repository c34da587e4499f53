//! `chaos/cluster`: a RuLakeCluster manifest run as containers (see
//! `rulake_chaos::cluster`).
//!
//! ```sh
//! chaos/cluster up --manifest docs/examples/quickstart.yaml   # last line: the API address
//! chaos/cluster scale --cluster quickstart --shards 3          # as the operator scales
//! chaos/cluster roll --cluster quickstart --image rulake:dev2  # a rolling upgrade
//! chaos/cluster down --manifest docs/examples/quickstart.yaml
//! ```

use clap::{Parser, Subcommand};
use rulake_chaos::cluster::{kubelet, lifecycle, ops, Manifest};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Run a RuLakeCluster manifest as containers, as a kubelet would")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the manifest's cluster; prints the coordinator's address last.
    Up {
        /// Multi-document YAML: one RuLakeCluster, RuLakeCollections, Secrets.
        #[arg(long)]
        manifest: PathBuf,
        /// Image for every pod instead of `spec.image`.
        #[arg(long)]
        image: Option<String>,
        /// Host directory mounted read-only at /lake in shard and coordinator pods.
        #[arg(long)]
        lake: Option<PathBuf>,
        /// Seconds to wait for every pod to be ready.
        #[arg(long, default_value_t = 300)]
        ready_within: u64,
    },
    /// Change the shard count as the operator does: drain before
    /// shrinking, admit new shards once Ready. Prints the API address last.
    Scale {
        /// The cluster's name.
        #[arg(long)]
        cluster: String,
        /// Shard pods wanted.
        #[arg(long)]
        shards: i32,
        /// Seconds to wait for drains and admissions.
        #[arg(long, default_value_t = 300)]
        within: u64,
    },
    /// Replace every pod with one running IMAGE, one at a time in the
    /// operator's order. Prints the API address last (the coordinator is
    /// replaced, so it changes).
    Roll {
        /// The cluster's name.
        #[arg(long)]
        cluster: String,
        /// The new image.
        #[arg(long)]
        image: String,
        /// Seconds to wait for each replacement to be ready.
        #[arg(long, default_value_t = 300)]
        within: u64,
    },
    /// Remove everything `up` made for the manifest's (or the named) cluster.
    Down {
        /// The manifest `up` ran.
        #[arg(long, conflicts_with = "cluster")]
        manifest: Option<PathBuf>,
        /// The cluster's name.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// The kubelet loop for a state directory (started by `up`).
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        state: PathBuf,
    },
}

fn read(path: &Path) -> anyhow::Result<Manifest> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Manifest::parse(&text)
}

fn spawn_kubelet(state: &Path) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(state.join("kubelet.log"))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("kubelet")
        .arg("--state")
        .arg(state)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Up {
            manifest,
            image,
            lake,
            ready_within,
        } => {
            let manifest = read(&manifest)?;
            let opts = lifecycle::UpOptions {
                image,
                lake,
                ready_within: Duration::from_secs(ready_within),
            };
            let rt = tokio::runtime::Runtime::new()?;
            let up = rt.block_on(lifecycle::up(manifest, &opts, spawn_kubelet))?;
            eprintln!(
                "cluster {} ready after {:.1} s (state in {})",
                up.cluster,
                up.ready_after,
                up.state.display()
            );
            println!("{}", up.address);
        }
        Cmd::Scale {
            cluster,
            shards,
            within,
        } => {
            let mut up = lifecycle::Up::load(&cluster)?;
            let rt = tokio::runtime::Runtime::new()?;
            let within = Duration::from_secs(within);
            rt.block_on(ops::scale_shards(&mut up, shards, within))?;
            eprintln!("cluster {cluster}: {shards} shards");
            println!("{}", up.address);
        }
        Cmd::Roll {
            cluster,
            image,
            within,
        } => {
            let mut up = lifecycle::Up::load(&cluster)?;
            let rt = tokio::runtime::Runtime::new()?;
            let within = Duration::from_secs(within);
            let mut moved = |address: &str| eprintln!("  the API is now at {address}");
            for r in rt.block_on(ops::roll(&mut up, &image, within, &mut moved))? {
                eprintln!(
                    "  {}: stopped in {:.1} s (exit {}), replacement ready after {:.1} s",
                    r.pod,
                    r.stopped.took.as_secs_f64(),
                    r.stopped.exit_code,
                    r.seconds
                );
            }
            println!("{}", up.address);
        }
        Cmd::Down { manifest, cluster } => {
            let cluster = match (manifest, cluster) {
                (Some(m), _) => read(&m)?.names().cluster,
                (None, Some(c)) => c,
                (None, None) => anyhow::bail!("name the cluster: --manifest or --cluster"),
            };
            let n = lifecycle::down(&cluster)?;
            eprintln!("cluster {cluster}: removed {n} containers, networks and volumes");
        }
        Cmd::Kubelet { state } => {
            let network = std::fs::read_to_string(state.join("network"))?;
            // Stops when `down` removes the state directory.
            kubelet::watch(&state, network.trim(), || !state.exists());
        }
    }
    Ok(())
}
