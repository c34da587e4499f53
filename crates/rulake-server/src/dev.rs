//! `rulake dev`: a whole cluster on loopback (three meta members, N shard
//! nodes, one coordinator) as child processes of this one, for trying the
//! distributed path on one machine. A child that dies is reported, not
//! replaced: the cluster is there to show what happens when a node fails.

use crate::cluster_tls::ClusterTlsArgs;
use crate::shutdown::Shutdown;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// `rulake dev` options.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Shard nodes to start.
    #[arg(long, default_value_t = 3)]
    pub shards: u32,
    /// Where the coordinator's public API listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Every process's data lives under here (meta-N, shard-N, managed).
    #[arg(long, default_value = "rulake-dev")]
    pub data_dir: PathBuf,
    /// Cache budget of each shard node, bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub cache_bytes: usize,
    /// A shard node silent this long (milliseconds) loses its partitions.
    #[arg(long, default_value_t = 3000)]
    pub shard_grace_ms: u64,
    /// Passed to every process: mutual TLS between them. The certificate
    /// must name 127.0.0.1.
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    /// Passed to the coordinator and the shard nodes. Without a prefix,
    /// any local path (`file:///`) but the cluster's own files: this is a
    /// development cluster on one machine.
    #[command(flatten)]
    pub sources: crate::sources::SourceArgs,
}

/// The cluster TLS flags of every child: the user's certificates, or
/// plaintext on loopback (this is the one place `--cluster-insecure` is
/// implied).
fn dev_tls(tls: &ClusterTlsArgs) -> Vec<String> {
    let mut tls = tls.clone();
    if tls.cluster_ca.is_none() {
        eprintln!("rulake dev: internal ports without TLS on loopback (give --cluster-ca/--cluster-cert/--cluster-key for mutual TLS)");
        tls.cluster_insecure = true;
    }
    tls.to_args()
}

impl DevArgs {
    /// The source flags every child that opens sources gets.
    fn source_args(&self) -> Vec<String> {
        let mut v = vec!["--source-allow".to_owned()];
        if self.sources.source_allow.is_empty() {
            v.push("file:///".into());
        } else {
            v.push(self.sources.source_allow.join(","));
        }
        if let Some(p) = &self.sources.source_policy {
            v.push("--source-policy".into());
            v.push(p.display().to_string());
        }
        v
    }
}

/// A loopback port nobody listens on right now (another process may take
/// it before the caller binds it; good enough for local clusters).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How long a shard node of the dev cluster drains when it stops (see
/// [`crate::drain`]): short, since a dev cluster usually stops as a whole.
const DRAIN_MS: u64 = 3_000;

/// The children; dropping it stops them (SIGTERM, then SIGKILL after 10 s).
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // The shell's `kill`: a slim image may have no /bin/kill.
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -s TERM {}", c.id())])
                .status();
        }
        for (name, c) in &mut self.0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if std::time::Instant::now() > deadline => {
                        eprintln!("rulake dev: {name} did not stop; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// Start a loopback cluster and watch it until `shutdown` fires.
pub async fn run(a: DevArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    if a.shards == 0 {
        anyhow::bail!("--shards must be at least 1");
    }
    std::fs::create_dir_all(&a.data_dir)?;
    let root = std::fs::canonicalize(&a.data_dir)?;
    let mut cluster = Cluster {
        children: Children(Vec::new()),
        tls: dev_tls(&a.tls),
        root,
    };
    let metas = cluster.start_metas(&a)?;
    cluster.start_shards(&a, &metas)?;
    cluster.start_coordinator(&a, &metas)?;
    eprintln!(
        "rulake dev: 3 meta members ({}), {} shard nodes, coordinator on {}; logs and data in {}",
        metas.join(", "),
        a.shards,
        a.listen,
        cluster.root.display()
    );
    eprintln!(
        "rulake dev: try `rulake collections list --addr http://{}`; Ctrl-C stops everything",
        a.listen
    );
    tokio::select! {
        () = shutdown.signalled() => eprintln!("rulake dev: stopping"),
        _ = watch(&mut cluster.children) => {}
    }
    drop(cluster);
    Ok(())
}

/// The children started so far, and what each new one is started with.
struct Cluster {
    children: Children,
    /// Cluster TLS flags, passed to every child.
    tls: Vec<String>,
    /// The data directory: each child's data and log live under it.
    root: PathBuf,
}

impl Cluster {
    /// Start child `name`: this executable with `args` and the TLS flags,
    /// stdout and stderr to `<root>/<name>.log`.
    fn spawn(&mut self, name: &str, args: &[String]) -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let out = std::fs::File::create(self.root.join(format!("{name}.log")))?;
        let child = Command::new(exe)
            .args(args)
            .args(&self.tls)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.children.0.push((name.to_owned(), child));
        Ok(())
    }

    /// `<root>/<name>` as a flag value.
    fn dir(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    /// Start the three meta members on free ports; returns their addresses.
    fn start_metas(&mut self, a: &DevArgs) -> anyhow::Result<Vec<String>> {
        let metas: Vec<String> = (0..3)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<anyhow::Result<_>>()?;
        let peers: Vec<String> = metas
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{}={m}", i + 1))
            .collect();
        for (i, m) in metas.iter().enumerate() {
            let id = i + 1;
            let name = format!("meta-{id}");
            let args = [
                "meta".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                m.clone(),
                "--peers".into(),
                peers.join(","),
                "--data-dir".into(),
                self.dir(&name),
                "--shard-grace-ms".into(),
                a.shard_grace_ms.to_string(),
            ];
            self.spawn(&name, &args)?;
        }
        Ok(metas)
    }

    /// Start `a.shards` shard nodes on free ports, pointed at `metas`.
    fn start_shards(&mut self, a: &DevArgs, metas: &[String]) -> anyhow::Result<()> {
        for id in 1..=a.shards {
            let port = free_port()?;
            let name = format!("shard-{id}");
            let args = [
                "shard".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--meta".into(),
                metas.join(","),
                "--data-dir".into(),
                self.dir(&name),
                "--cache-bytes".into(),
                a.cache_bytes.to_string(),
                "--metrics-listen".into(),
                "127.0.0.1:0".into(),
                // Well inside the 10 s each child gets to stop (`Children`).
                "--drain-ms".into(),
                DRAIN_MS.to_string(),
            ];
            let args: Vec<String> = args.into_iter().chain(a.source_args()).collect();
            self.spawn(&name, &args)?;
        }
        Ok(())
    }

    /// Start the coordinator on `a.listen`, its managed collections under
    /// `<root>/managed`.
    fn start_coordinator(&mut self, a: &DevArgs, metas: &[String]) -> anyhow::Result<()> {
        let managed = self.root.join("managed");
        std::fs::create_dir_all(&managed)?;
        let args = [
            "coordinator".into(),
            "--listen".into(),
            a.listen.to_string(),
            "--meta".into(),
            metas.join(","),
            "--data-dir".into(),
            self.dir("coordinator"),
            "--managed-url".into(),
            format!("file://{}", managed.display()),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ];
        let args: Vec<String> = args.into_iter().chain(a.source_args()).collect();
        self.spawn("coordinator", &args)
    }
}

/// Report each child that exits, once; never returns. A process that dies
/// is reported, not replaced, and the rest go on: the cluster is here to
/// show what it does when a node fails.
async fn watch(children: &mut Children) {
    let mut reported = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (name, c) in &mut children.0 {
            if let Ok(Some(status)) = c.try_wait() {
                if reported.insert(name.clone()) {
                    eprintln!("rulake dev: {name} exited ({status}); see its log");
                }
            }
        }
    }
}
