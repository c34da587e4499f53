//! A whole cluster as processes: a 3-member meta group, `rulake shard`
//! nodes and `rulake coordinator`s, each killable on its own.

use crate::catalog::Cluster;
use crate::process::{rulake_in, wait_listening, Hosts, Loopback, Proc};
use rulake_catalog::{Assignment, ReadConsistency};
use rulake_client::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Grace period of the meta group in these tests, milliseconds.
pub const GRACE_MS: &str = "1500";

/// The cluster: meta group, shard nodes by id, coordinators by address.
pub struct Distributed {
    /// The meta group.
    pub meta: Cluster,
    shards: BTreeMap<u64, (String, Option<Proc>)>,
    coordinators: BTreeMap<String, Proc>,
    /// Flags every shard and coordinator gets (the meta members get them
    /// through `meta`).
    extra: Vec<String>,
    hosts: Arc<dyn Hosts>,
    /// Data and logs; declared last so it outlives the processes
    /// (fields drop in order), whose logs are read when they go.
    dir: tempfile::TempDir,
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
        Self::start_full(shards, extra, transport, GRACE_MS, Arc::new(Loopback))
    }

    /// As [`Distributed::start`], each process where `hosts` puts it.
    pub fn start_on(shards: u64, hosts: Arc<dyn Hosts>) -> Distributed {
        Self::start_full(shards, &[], Default::default(), GRACE_MS, hosts)
    }

    /// As [`Distributed::start`], with the meta group's shard grace period
    /// `grace_ms` instead of [`GRACE_MS`]: a restart that must move no
    /// partition needs one longer than the restart takes.
    pub fn start_with_grace(shards: u64, grace_ms: &str) -> Distributed {
        Self::start_full(
            shards,
            &[],
            Default::default(),
            grace_ms,
            Arc::new(Loopback),
        )
    }

    fn start_full(
        shards: u64,
        extra: &[String],
        transport: rulake_catalog::Transport,
        grace_ms: &str,
        hosts: Arc<dyn Hosts>,
    ) -> Distributed {
        let mut meta_flags = vec!["--shard-grace-ms", grace_ms];
        meta_flags.extend(extra.iter().map(String::as_str));
        let mut meta = Cluster::start_on(3, &meta_flags, hosts.clone());
        meta.transport = transport;
        let mut d = Distributed {
            dir: tempfile::tempdir().unwrap(),
            meta,
            shards: BTreeMap::new(),
            coordinators: BTreeMap::new(),
            extra: extra.to_vec(),
            hosts,
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
            None => self.hosts.addr(&format!("shard-{id}")),
        };
        let mut cmd = rulake_in(self.hosts.netns(&addr).as_deref());
        cmd.args(["shard", "--id", &id.to_string(), "--listen", &addr])
            .args(["--meta", &self.meta_addrs(), "--heartbeat-ms", "200"])
            .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir.path().join(format!("shard-{id}")))
            .args(flags);
        let log = self.dir.path().join(format!("shard-{id}.log"));
        let proc = Proc::spawn(&format!("shard-{id}"), cmd, &log);
        wait_listening(&addr, "rulake shard");
        self.shards.insert(id, (addr, Some(proc)));
    }

    /// SIGKILL shard node `id`.
    pub fn kill_shard(&mut self, id: u64) {
        if let Some(mut p) = self.shards.get_mut(&id).and_then(|s| s.1.take()) {
            p.kill();
        }
    }

    /// SIGTERM shard node `id`; it must exit cleanly (status 0, no panic)
    /// within 30 s. Returns how long it took.
    pub fn stop_shard(&mut self, id: u64) -> Duration {
        match self.shards.get_mut(&id).and_then(|s| s.1.take()) {
            Some(mut p) => p.stop(Duration::from_secs(30)),
            None => Duration::ZERO,
        }
    }

    /// Start a coordinator where the hosts put the next one; returns its
    /// address.
    pub fn coordinator(&mut self) -> String {
        self.coordinator_with(&[])
    }

    /// As [`Distributed::coordinator`], with `flags` of its own after the
    /// common ones (a restart through [`Distributed::restart_coordinator`]
    /// starts it without them).
    pub fn coordinator_with(&mut self, flags: &[String]) -> String {
        let addr = self
            .hosts
            .addr(&format!("coordinator-{}", self.coordinators.len() + 1));
        self.spawn_coordinator_with(&addr, flags);
        addr
    }

    /// Start a coordinator at `addr` (a new one, or again after a kill).
    pub fn spawn_coordinator(&mut self, addr: &str) {
        self.spawn_coordinator_with(addr, &[]);
    }

    fn spawn_coordinator_with(&mut self, addr: &str, flags: &[String]) {
        let mut cmd = rulake_in(self.hosts.netns(addr).as_deref());
        cmd.args([
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
        .args(flags);
        let log = self
            .dir
            .path()
            .join(format!("coordinator-{}.log", addr.replace(':', "-")));
        let proc = Proc::spawn(&format!("coordinator {addr}"), cmd, &log);
        wait_listening(addr, "rulake coordinator");
        self.coordinators.insert(addr.to_owned(), proc);
    }

    /// Kill -9 the coordinator at `addr` and start it again there.
    pub fn restart_coordinator(&mut self, addr: &str) {
        if let Some(mut p) = self.coordinators.remove(addr) {
            p.kill();
        }
        self.spawn_coordinator(addr);
    }

    /// SIGKILL the coordinator at `addr`.
    pub fn kill_coordinator(&mut self, addr: &str) {
        if let Some(mut p) = self.coordinators.remove(addr) {
            p.kill();
        }
    }

    /// SIGTERM the coordinator at `addr`; it must exit cleanly within 30 s.
    pub fn stop_coordinator(&mut self, addr: &str) -> Duration {
        match self.coordinators.remove(addr) {
            Some(mut p) => p.stop(Duration::from_secs(30)),
            None => Duration::ZERO,
        }
    }

    /// The running process of shard node `id`.
    pub fn shard_proc(&self, id: u64) -> Option<&Proc> {
        self.shards.get(&id).and_then(|s| s.1.as_ref())
    }

    /// The running coordinator at `addr`.
    pub fn coordinator_proc(&self, addr: &str) -> Option<&Proc> {
        self.coordinators.get(addr)
    }

    /// Ids of the shard nodes started so far (running or not).
    pub fn shard_ids(&self) -> Vec<u64> {
        self.shards.keys().copied().collect()
    }

    /// The directory holding every process's data and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
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
