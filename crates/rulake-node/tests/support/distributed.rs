//! A whole cluster as processes: a 3-member meta group, `rulake shard`
//! nodes and `rulake coordinator`s, each killable on its own.

use super::{free_port, Cluster};
use rulake_catalog::{Assignment, ReadConsistency};
use rulake_client::Client;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Grace period of the meta group in these tests, milliseconds.
pub const GRACE_MS: &str = "1500";

pub struct Distributed {
    dir: tempfile::TempDir,
    pub meta: Cluster,
    shards: BTreeMap<u64, (String, Option<Child>)>,
    coordinators: BTreeMap<String, Child>,
    /// Flags every shard and coordinator gets (the meta members get them
    /// through `meta`).
    extra: Vec<String>,
}

fn wait_listening(addr: &str, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Distributed {
    /// Meta members 1..=3 and shard nodes 1..=`shards`.
    pub fn start(shards: u64) -> Distributed {
        Self::start_with(shards, &[], Default::default())
    }

    /// As [`Distributed::start`], with `extra` flags for every process and
    /// `transport` for the test's own catalog clients.
    pub fn start_with(
        shards: u64,
        extra: &[String],
        transport: rulake_catalog::Transport,
    ) -> Distributed {
        let mut meta_flags = vec!["--shard-grace-ms", GRACE_MS];
        meta_flags.extend(extra.iter().map(String::as_str));
        let mut meta = Cluster::start(3, &meta_flags);
        meta.transport = transport;
        let mut d = Distributed {
            dir: tempfile::tempdir().unwrap(),
            meta,
            shards: BTreeMap::new(),
            coordinators: BTreeMap::new(),
            extra: extra.to_vec(),
        };
        for id in 1..=shards {
            d.spawn_shard(id);
        }
        d
    }

    fn meta_addrs(&self) -> String {
        self.meta
            .members
            .values()
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Start shard node `id` (a new one, or again after a kill).
    pub fn spawn_shard(&mut self, id: u64) {
        let extra = self.extra.clone();
        self.spawn_shard_with(id, &extra);
    }

    /// Start shard node `id` with `flags` instead of the common extra flags.
    pub fn spawn_shard_with(&mut self, id: u64, flags: &[String]) {
        let addr = match self.shards.get(&id) {
            Some((a, _)) => a.clone(),
            None => format!("127.0.0.1:{}", free_port()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_rulake"))
            .args(["shard", "--id", &id.to_string(), "--listen", &addr])
            .args(["--meta", &self.meta_addrs(), "--heartbeat-ms", "200"])
            .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.path().join(format!("shard-{id}")))
            .args(flags)
            .env("RULAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rulake shard");
        wait_listening(&addr, "rulake shard");
        self.shards.insert(id, (addr, Some(child)));
    }

    /// SIGKILL shard node `id`.
    pub fn kill_shard(&mut self, id: u64) {
        if let Some((_, Some(mut c))) = self.shards.get_mut(&id).map(|s| (s.0.clone(), s.1.take()))
        {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM shard node `id` and wait for it to exit.
    pub fn stop_shard(&mut self, id: u64) {
        if let Some((_, Some(mut c))) = self.shards.get_mut(&id).map(|s| (s.0.clone(), s.1.take()))
        {
            super::signal(c.id(), "TERM");
            c.wait().unwrap();
        }
    }

    /// Start a coordinator on a free port; returns its address.
    pub fn coordinator(&mut self) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.spawn_coordinator(&addr);
        addr
    }

    fn spawn_coordinator(&mut self, addr: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_rulake"))
            .args([
                "coordinator",
                "--listen",
                addr,
                "--meta",
                &self.meta_addrs(),
            ])
            .args(["--hedge-ms", "50", "--poll-ms", "100"])
            .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.path().join("coordinator"))
            .args(&self.extra)
            .env("RULAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rulake coordinator");
        wait_listening(addr, "rulake coordinator");
        self.coordinators.insert(addr.to_owned(), child);
    }

    /// Kill -9 the coordinator at `addr` and start it again there.
    pub fn restart_coordinator(&mut self, addr: &str) {
        if let Some(mut c) = self.coordinators.remove(addr) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        self.spawn_coordinator(addr);
    }

    /// A client of the coordinator at `addr`.
    pub async fn client(&self, addr: &str) -> Client {
        Client::connect(&format!("http://{addr}")).await.unwrap()
    }

    /// The address of shard node `id`.
    pub fn shard_addr(&self, id: u64) -> String {
        self.shards[&id].0.clone()
    }

    /// The committed assignment.
    pub async fn assignment(&self) -> Assignment {
        self.meta
            .client_all()
            .read(ReadConsistency::Linearizable)
            .await
            .unwrap()
            .catalog
            .assignment
    }

    /// Whether every partition has `r` owners, all among `nodes`, and no
    /// hand-off is pending.
    pub async fn assignment_ok(&self, nodes: &[u64], r: usize) -> bool {
        let a = self.assignment().await;
        a.handoff.is_empty()
            && !a.partitions.is_empty()
            && a.partitions
                .values()
                .all(|ns| ns.len() == r && ns.iter().all(|n| nodes.contains(n)))
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        for (_, c) in self.shards.values_mut() {
            if let Some(c) = c.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for c in self.coordinators.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
