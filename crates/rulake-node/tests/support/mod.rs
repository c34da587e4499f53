//! Real `rulake meta` processes on loopback for the multi-process tests.

#![allow(dead_code)]

pub mod distributed;
pub mod linearizability;

use rulake_catalog::MetaClient;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member process.
pub struct Member {
    /// Its address.
    pub addr: String,
    child: Option<Child>,
}

/// A meta group of member processes sharing one temporary directory.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// Members by id.
    pub members: BTreeMap<u64, Member>,
    peers: String,
    extra: Vec<String>,
    /// How clients of the group connect (plaintext unless set).
    pub transport: rulake_catalog::Transport,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `rulake serve` process, killed when dropped.
pub struct Served {
    child: Child,
    /// Its gRPC address (`host:port`).
    pub addr: String,
}

impl Served {
    /// Start `rulake serve` on a free port over `data_dir` and wait until
    /// it accepts connections.
    pub fn start(data_dir: &std::path::Path) -> Served {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_rulake"))
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rulake serve");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rulake serve did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, addr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `sig` (e.g. `STOP`) with the shell's built-in `kill`, which every
/// POSIX `sh` has (a fresh Debian has no `/bin/kill` without procps).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -s {sig} {pid}")])
        .status()
        .expect("run sh")
        .success();
    assert!(ok, "kill -s {sig} {pid} failed");
}

impl Cluster {
    /// Start members `1..=n` as one initial group, with `extra` flags.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        let mut members = BTreeMap::new();
        for id in 1..=n {
            members.insert(
                id,
                Member {
                    addr: format!("127.0.0.1:{}", free_port()),
                    child: None,
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
        };
        for id in 1..=n {
            c.spawn(id, true);
        }
        c
    }

    /// (Re)start member `id`; `initial` passes the initial peer list.
    pub fn spawn(&mut self, id: u64, initial: bool) {
        let addr = self.members[&id].addr.clone();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulake"));
        cmd.args(["meta", "--id", &id.to_string(), "--listen", &addr])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{id}")))
            .args(&self.extra)
            .env("RULAKE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if initial {
            cmd.args(["--peers", &self.peers]);
        }
        let child = cmd.spawn().expect("spawn rulake meta");
        self.members.get_mut(&id).unwrap().child = Some(child);
    }

    /// Add a member slot `id` (not started).
    pub fn add_slot(&mut self, id: u64) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.members.insert(
            id,
            Member {
                addr: addr.clone(),
                child: None,
            },
        );
        addr
    }

    /// `kill -9` member `id` and reap it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.members.get_mut(&id).unwrap().child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Pause member `id` (SIGSTOP).
    pub fn pause(&self, id: u64) {
        signal(self.pid(id), "STOP");
    }

    /// Resume member `id` (SIGCONT).
    pub fn resume(&self, id: u64) {
        signal(self.pid(id), "CONT");
    }

    fn pid(&self, id: u64) -> u32 {
        self.members[&id].child.as_ref().expect("running").id()
    }

    /// Addresses of `ids`.
    pub fn addrs(&self, ids: &[u64]) -> Vec<String> {
        ids.iter().map(|id| self.members[id].addr.clone()).collect()
    }

    /// A client of `ids` with short deadlines.
    pub fn client(&self, ids: &[u64]) -> MetaClient {
        let mut c = MetaClient::with_transport(&self.addrs(ids), &self.transport).unwrap();
        c.call_timeout = Duration::from_secs(3);
        c.total_timeout = Duration::from_secs(20);
        c
    }

    /// A client of every member.
    pub fn client_all(&self) -> MetaClient {
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

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in self.members.values_mut() {
            if let Some(mut c) = m.child.take() {
                let _ = Command::new("sh")
                    .args(["-c", &format!("kill -s CONT {}", c.id())])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
