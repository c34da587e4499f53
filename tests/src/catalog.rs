//! A catalog group of real `rulake meta` processes on loopback, each
//! killable, pausable and restartable on its own.

use crate::process::{rulake_in, Hosts, Loopback, Proc};
use rulake_catalog::CatalogClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One member process.
pub struct Member {
    /// Its address.
    pub addr: String,
    proc: Option<Proc>,
}

/// A meta group of member processes sharing one temporary directory.
pub struct Cluster {
    /// Members by id.
    pub members: BTreeMap<u64, Member>,
    peers: String,
    extra: Vec<String>,
    /// How clients of the group connect (plaintext unless set).
    pub transport: rulake_catalog::Transport,
    /// Extra environment of a member's process from its next start on
    /// (a fault scenario's shifted clock, say).
    pub env: BTreeMap<u64, Vec<(String, String)>>,
    hosts: Arc<dyn Hosts>,
    /// Data and logs; declared last so it outlives the processes
    /// (fields drop in order), whose logs are read when they go.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start members `1..=n` as one initial group, with `extra` flags.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Self::start_on(n, extra, Arc::new(Loopback))
    }

    /// As [`Cluster::start`], each member where `hosts` puts it.
    pub fn start_on(n: u64, extra: &[&str], hosts: Arc<dyn Hosts>) -> Cluster {
        let mut members = BTreeMap::new();
        for id in 1..=n {
            members.insert(
                id,
                Member {
                    addr: hosts.addr(&format!("meta-{id}")),
                    proc: None,
                },
            );
        }
        let peers = members
            .iter()
            .map(|(id, m)| format!("{id}={}", m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            members,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            transport: Default::default(),
            env: BTreeMap::new(),
            hosts,
        };
        for id in 1..=n {
            c.spawn(id, true);
        }
        c
    }

    /// (Re)start member `id`; `initial` passes the initial peer list.
    pub fn spawn(&mut self, id: u64, initial: bool) {
        let addr = self.members[&id].addr.clone();
        let mut cmd = rulake_in(self.hosts.netns(&addr).as_deref());
        cmd.args(["meta", "--id", &id.to_string(), "--listen", &addr])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{id}")))
            .args(&self.extra)
            .envs(self.env.get(&id).into_iter().flatten().cloned());
        if initial {
            cmd.args(["--peers", &self.peers]);
        }
        let log = self.dir.path().join(format!("meta-{id}.log"));
        let proc = Proc::spawn(&format!("meta-{id}"), cmd, &log);
        self.members.get_mut(&id).unwrap().proc = Some(proc);
    }

    /// Add a member slot `id` (not started).
    pub fn add_slot(&mut self, id: u64) -> String {
        let addr = self.hosts.addr(&format!("meta-{id}"));
        self.members.insert(
            id,
            Member {
                addr: addr.clone(),
                proc: None,
            },
        );
        addr
    }

    /// `kill -9` member `id` and reap it (its log must show no panic).
    pub fn kill(&mut self, id: u64) {
        if let Some(mut p) = self.members.get_mut(&id).unwrap().proc.take() {
            p.kill();
        }
    }

    /// SIGTERM member `id`; it must exit cleanly within `grace`.
    pub fn stop(&mut self, id: u64, grace: Duration) -> Duration {
        match self.members.get_mut(&id).unwrap().proc.take() {
            Some(mut p) => p.stop(grace),
            None => Duration::ZERO,
        }
    }

    /// Member `id`'s exit status if it exited on its own.
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        self.members.get_mut(&id)?.proc.as_mut()?.exited()
    }

    /// Pause member `id` (SIGSTOP).
    pub fn pause(&self, id: u64) {
        self.proc(id).pause();
    }

    /// Resume member `id` (SIGCONT).
    pub fn resume(&self, id: u64) {
        self.proc(id).resume();
    }

    fn proc(&self, id: u64) -> &Proc {
        self.members[&id].proc.as_ref().expect("running")
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The running process of member `id`.
    pub fn member_proc(&self, id: u64) -> Option<&Proc> {
        self.members.get(&id).and_then(|m| m.proc.as_ref())
    }

    /// Addresses of `ids`.
    pub fn addrs(&self, ids: &[u64]) -> Vec<String> {
        ids.iter().map(|id| self.members[id].addr.clone()).collect()
    }

    /// A client of `ids` with short deadlines.
    pub fn client(&self, ids: &[u64]) -> CatalogClient {
        let mut c = CatalogClient::with_transport(&self.addrs(ids), &self.transport).unwrap();
        c.call_timeout = Duration::from_secs(3);
        c.total_timeout = Duration::from_secs(20);
        c
    }

    /// A client of every member.
    pub fn client_all(&self) -> CatalogClient {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        self.client(&ids)
    }

    /// Wait until one of `ids` is leader with a term above `min_term`, as
    /// seen by itself; returns (leader, term).
    pub async fn wait_leader(&self, ids: &[u64], min_term: u64) -> (u64, u64) {
        let client = self.client(ids);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for i in 0..ids.len() {
                if let Ok(s) = client.status_of(i).await {
                    if s.state == "Leader" && s.term > min_term {
                        return (s.id, s.term);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {ids:?} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every one of `ids`, read locally, holds the catalog at `applied`, and
    /// the catalogs are equal: the members have not diverged.
    pub async fn assert_same_catalog(&self, ids: &[u64], applied: u64) {
        let mut catalogs = Vec::new();
        for id in ids {
            let r = self
                .client(&[*id])
                .read(rulake_catalog::ReadConsistency::Local)
                .await
                .expect("local read");
            assert_eq!(r.applied_index, applied, "member {id}");
            catalogs.push(r.catalog);
        }
        assert!(
            catalogs.windows(2).all(|w| w[0] == w[1]),
            "members diverged"
        );
    }

    /// Wait until `ids` all report the same applied index, at least `min`.
    pub async fn wait_converged(&self, ids: &[u64], min: u64) -> u64 {
        let client = self.client(ids);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut applied = Vec::new();
            for i in 0..ids.len() {
                if let Ok(s) = client.status_of(i).await {
                    applied.push(s.applied_index);
                }
            }
            if applied.len() == ids.len() && applied.iter().all(|a| *a == applied[0] && *a >= min) {
                return applied[0];
            }
            assert!(
                Instant::now() < deadline,
                "members {ids:?} did not converge: applied {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
