//! What a scenario does to the cluster, and how it heals: [`Fault`] for a
//! meta group alone, [`Nemesis`] for a whole cluster under load. Faults
//! are aimed at the leader by default because that is where a consensus
//! system is most likely to lose or reorder a write; a fault on a follower
//! checks that catch-up after a gap does not rewrite history.

use crate::system::System;
use rulake_tests::process::signal;
use rulake_tests::Cluster;
use std::time::Duration;

/// One fault on one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then restart on the same data directory.
    Kill,
    /// SIGSTOP, then SIGCONT: the member comes back believing it leads.
    Pause,
    /// SIGTERM (it must exit cleanly), then restart.
    Restart,
}

impl Fault {
    /// The faults a scenario cycles through.
    pub const ALL: [Fault; 3] = [Fault::Kill, Fault::Pause, Fault::Restart];

    /// Inject on member `id`, wait `hold`, heal. The member is running
    /// again when this returns.
    pub async fn apply(self, cluster: &mut Cluster, id: u64, hold: Duration) {
        match self {
            Fault::Kill => {
                cluster.kill(id);
                tokio::time::sleep(hold).await;
                cluster.spawn(id, false);
            }
            Fault::Pause => {
                cluster.pause(id);
                tokio::time::sleep(hold).await;
                cluster.resume(id);
            }
            Fault::Restart => {
                cluster.stop(id, Duration::from_secs(20));
                tokio::time::sleep(hold).await;
                cluster.spawn(id, false);
            }
        }
    }
}

/// Which member of a whole cluster a process fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The meta group's current leader.
    MetaLeader,
    /// A meta member that is not the leader.
    MetaFollower,
    /// A shard node, picked by the round's seed.
    Shard,
    /// A coordinator, picked by the round's seed.
    Coordinator,
}

/// What one round of a whole-cluster scenario does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// kill -9 of one member of the role, started again after the hold.
    Kill(Role),
    /// SIGSTOP of one member of the role for the hold, then SIGCONT.
    Pause(Role),
    /// kill -9 of every process at once; all started again after the hold.
    RestartAll,
    /// SIGTERM (a clean exit) and restart of every process in turn.
    RollingRestart,
    /// A new shard node joins; after the hold it is drained and stopped.
    ScaleShards,
    /// A meta member restarted with its wall clock shifted (ahead on even
    /// rounds, behind on odd ones), restarted true after the hold.
    ClockSkew,
    /// A new meta member joins as a learner, is made a voter, and after
    /// the hold is voted out again and stopped.
    MetaMembership,
    /// The meta leader cut off from every other process, both ways.
    IsolateLeader,
    /// The meta leader's packets to every other process dropped; it still
    /// hears them.
    OneWayLeader,
    /// A minority (one meta member, one shard node, one coordinator) cut
    /// off from the rest, both ways.
    SplitHalves,
    /// One coordinator cut off from one shard node, both ways.
    CutCoordinatorShard,
    /// One shard node's link limited to 256 kbit/s each way.
    SlowShard,
    /// A meta follower's (even rounds) or a shard node's (odd rounds) data
    /// directory moved onto a small tmpfs and filled up for the hold.
    DiskFull,
    /// 30 % of one shard node's packets dropped each way.
    LossyShard,
    /// Every Raft log append of one meta member and every managed file's
    /// fsync on the coordinators take 250 ms longer for the hold.
    SlowDisk,
    /// A failed fsync: a meta member's log append fails (even rounds), and
    /// it must exit and be started again; or one coordinator's managed file
    /// fsyncs fail for the hold (odd rounds), failing its ingests.
    FsyncFail,
    /// The lake (`ext` on an S3-compatible server) refuses, stalls or cuts
    /// short its answers, or is down, while `ext` is refreshed and a shard
    /// node is killed and started again (so it reloads through the lake).
    LakeFaults,
}

/// The lake faults a `LakeFaults` round picks from.
const LAKE_FAULTS: [crate::lake::LakeFault; 4] = [
    crate::lake::LakeFault::Unavailable { p: 0.5 },
    crate::lake::LakeFault::Stall {
        p: 0.5,
        pause: Duration::from_millis(1500),
    },
    crate::lake::LakeFault::Truncate { p: 0.5 },
    crate::lake::LakeFault::Unavailable { p: 1.0 },
];

/// How long a member whose fsync failed may take to exit.
const FATAL_EXIT_WITHIN: Duration = Duration::from_secs(15);

/// The shared library that shifts a process's clocks (Debian's `faketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The id a scaled-in shard node takes.
const EXTRA_SHARD: u64 = crate::system::SHARDS + 1;

impl Nemesis {
    /// Whether a replica of every partition stays up through the fault, so
    /// searches must keep answering (I2 is a bound, not only a figure).
    pub fn keeps_a_replica(self) -> bool {
        !matches!(self, Nemesis::RestartAll)
    }

    /// Whether `ext` must be read over S3 from a lake the scenario faults.
    pub fn needs_s3(self) -> bool {
        self == Nemesis::LakeFaults
    }

    /// Whether every process needs a host of its own (a network fault).
    pub fn needs_hosts(self) -> bool {
        matches!(
            self,
            Nemesis::IsolateLeader
                | Nemesis::OneWayLeader
                | Nemesis::SplitHalves
                | Nemesis::CutCoordinatorShard
                | Nemesis::SlowShard
                | Nemesis::LossyShard
        )
    }

    /// One round: inject, hold, heal. `pick` chooses the member. An error
    /// says the fault itself could not be carried out (a join or a drain
    /// the cluster refused), which a scenario reports as a violation: a
    /// round that silently did nothing would prove nothing.
    pub async fn round(self, sys: &mut System, pick: u64, hold: Duration) -> Result<(), String> {
        match self {
            Nemesis::Kill(role) => {
                let target = Target::pick(sys, role, pick).await;
                target.kill(sys);
                tokio::time::sleep(hold).await;
                target.start(sys);
            }
            Nemesis::Pause(role) => {
                let target = Target::pick(sys, role, pick).await;
                let pid = target.pid(sys);
                signal(pid, "STOP");
                tokio::time::sleep(hold).await;
                signal(pid, "CONT");
            }
            Nemesis::RestartAll => {
                let all = Target::all(sys);
                for t in &all {
                    t.kill(sys);
                }
                tokio::time::sleep(hold).await;
                for t in &all {
                    t.start(sys);
                }
            }
            Nemesis::RollingRestart => {
                for t in Target::all(sys) {
                    t.stop(sys);
                    t.start(sys);
                    // The next member goes only once this one serves again,
                    // as a StatefulSet waits for readiness.
                    let _ = sys.wait_complete(Duration::from_secs(30)).await;
                    if matches!(t, Target::Meta(_)) {
                        sys.cluster.meta.wait_leader(&[1, 2, 3], 0).await;
                    }
                }
            }
            Nemesis::ScaleShards => {
                let id = EXTRA_SHARD.to_string();
                sys.cluster.spawn_shard(EXTRA_SHARD);
                let c = sys
                    .client(pick as usize)
                    .await
                    .map_err(|e| format!("no coordinator for the scale-down: {e}"))?;
                // A node drained in an earlier round keeps its drain flag
                // when it registers again: admit it, as the operator does
                // on a scale-up.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = c.admit_shard(&id).await;
                tokio::time::sleep(hold).await;
                // A drain returns once the node's partitions are warm
                // elsewhere; a failed drain leaves the node serving, as the
                // operator's scale-down does.
                match c.drain_shard(&id).await {
                    Ok(_) => {
                        sys.cluster.stop_shard(EXTRA_SHARD);
                    }
                    Err(e) => return Err(format!("draining shard {id}: {e}")),
                }
            }
            Nemesis::ClockSkew => {
                let (leader, _) = sys.cluster.meta.wait_leader(&[1, 2, 3], 0).await;
                let id = if pick % 2 == 0 {
                    leader
                } else {
                    leader % 3 + 1
                };
                let shift = if pick % 4 < 2 { "+5m" } else { "-5m" };
                let env = vec![
                    ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
                    ("FAKETIME".to_owned(), shift.to_owned()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
                ];
                sys.cluster.meta.env.insert(id, env);
                sys.cluster.meta.stop(id, Duration::from_secs(20));
                sys.cluster.meta.spawn(id, false);
                tokio::time::sleep(hold).await;
                sys.cluster.meta.env.remove(&id);
                sys.cluster.meta.stop(id, Duration::from_secs(20));
                sys.cluster.meta.spawn(id, false);
            }
            Nemesis::DiskFull => {
                let target = if pick % 2 == 0 {
                    Target::pick(sys, Role::MetaFollower, pick / 2).await
                } else {
                    Target::pick(sys, Role::Shard, pick / 2).await
                };
                // Restarted onto a tmpfs of its own (kept until the end of
                // the scenario; a member hit again reuses it), then the
                // tmpfs filled to the last byte.
                let dir = target.data_dir(sys);
                let disk = match sys.disks.iter().position(|d| d.dir() == dir) {
                    Some(i) => sys.disks.remove(i),
                    None => {
                        target.kill(sys);
                        let disk = crate::disk::SmallDisk::mount_over(&dir, 64 << 20);
                        target.start(sys);
                        let disk = disk
                            .map_err(|e| format!("a small disk under {}: {e:#}", dir.display()))?;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        disk
                    }
                };
                disk.fill();
                tokio::time::sleep(hold).await;
                disk.unfill();
                // A member that stopped on the full disk is started again,
                // as a kubelet restarts a container that exited.
                if !target.listening(sys) {
                    target.start(sys);
                }
                sys.disks.push(disk);
            }
            Nemesis::MetaMembership => {
                let id = sys.cluster.meta.members.keys().max().copied().unwrap_or(3) + 1;
                let addr = sys.cluster.meta.add_slot(id);
                sys.cluster.meta.spawn(id, false);
                let group = sys.cluster.meta.client(&[1, 2, 3]);
                let joined = async {
                    group.add_learner(id, &addr).await?;
                    group.change_membership(&[1, 2, 3, id]).await?;
                    tokio::time::sleep(hold).await;
                    group.change_membership(&[1, 2, 3]).await
                }
                .await;
                sys.cluster.meta.stop(id, Duration::from_secs(20));
                joined.map_err(|e| format!("member {id} joining and leaving: {e}"))?;
            }
            Nemesis::SlowDisk => {
                let meta = if pick % 2 == 0 {
                    Role::MetaLeader
                } else {
                    Role::MetaFollower
                };
                let mut slowed = vec![Target::pick(sys, meta, pick / 2).await.pid(sys)];
                let slow_meta = "catalog-log-append=sleep(250)\n";
                sys.failpoints(slowed[0], slow_meta)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                for i in 0..sys.coordinators.len() as u64 {
                    let pid = Target::pick(sys, Role::Coordinator, i).await.pid(sys);
                    sys.failpoints(pid, "managed-fsync=sleep(250)\n")
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    slowed.push(pid);
                }
                tokio::time::sleep(hold).await;
                for pid in slowed {
                    sys.failpoints(pid, "")
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                }
            }
            Nemesis::FsyncFail if pick % 2 == 0 => {
                let role = if pick % 4 == 0 {
                    Role::MetaLeader
                } else {
                    Role::MetaFollower
                };
                let Target::Meta(id) = Target::pick(sys, role, pick / 4).await else {
                    unreachable!("a meta role picks a meta member")
                };
                let pid = Target::Meta(id).pid(sys);
                sys.failpoints(pid, "catalog-log-append=return\n")
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let start = std::time::Instant::now();
                let status = loop {
                    if let Some(s) = sys.cluster.meta.exited(id) {
                        break Some(s);
                    }
                    if start.elapsed() > FATAL_EXIT_WITHIN {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                sys.failpoints(pid, "")
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                match status {
                    Some(s) if !s.success() => {
                        tokio::time::sleep(hold).await;
                        // As a kubelet restarts a container that exited.
                        sys.cluster.meta.spawn(id, false);
                    }
                    Some(s) => return Err(format!("meta-{id} exited {s} on a failed fsync")),
                    None => {
                        let within = FATAL_EXIT_WITHIN;
                        return Err(format!(
                            "meta-{id} still ran {within:?} after a failed append"
                        ));
                    }
                }
            }
            Nemesis::FsyncFail => {
                let pid = Target::pick(sys, Role::Coordinator, pick / 2)
                    .await
                    .pid(sys);
                sys.failpoints(pid, "managed-fsync=return\n")
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                tokio::time::sleep(hold).await;
                sys.failpoints(pid, "")
                    .await
                    .map_err(|e| format!("{e:#}"))?;
            }
            Nemesis::LakeFaults => {
                let Some(lake) = &sys.s3 else {
                    return Err("no S3 lake in this system".into());
                };
                let fault = LAKE_FAULTS[pick as usize % LAKE_FAULTS.len()];
                let before = lake.counts();
                lake.set(fault);
                // A refresh checks the lake's generation on every owner:
                // it may fail, but the warm generation keeps serving.
                if let Ok(c) = sys.client(pick as usize).await {
                    let _ = c.refresh(crate::system::EXT).await;
                }
                let shard = Target::pick(sys, Role::Shard, pick / 4).await;
                shard.kill(sys);
                tokio::time::sleep(hold / 2).await;
                shard.start(sys);
                tokio::time::sleep(hold / 2).await;
                let lake = sys.s3.as_ref().expect("checked above");
                lake.set(crate::lake::LakeFault::Healthy);
                let after = lake.counts();
                let injected = (after.unavailable + after.stalled + after.truncated)
                    - (before.unavailable + before.stalled + before.truncated);
                if injected == 0 {
                    return Err(format!(
                        "{fault:?}: {} requests reached the lake, none was faulted",
                        after.requests - before.requests
                    ));
                }
            }
            network => {
                let cut = network.cut_links(sys, pick).await;
                if cut.is_ok() {
                    tokio::time::sleep(hold).await;
                }
                sys.net().heal();
                cut.map_err(|e| format!("{e:#}"))?;
            }
        }
        Ok(())
    }

    /// Inject a network fault (see the variants); healed by `Net::heal`.
    async fn cut_links(self, sys: &System, pick: u64) -> anyhow::Result<()> {
        let net = sys.net();
        let names = net.names();
        let shard = format!("shard-{}", pick % crate::system::SHARDS + 1);
        match self {
            Nemesis::IsolateLeader | Nemesis::OneWayLeader => {
                let (leader, _) = sys.cluster.meta.wait_leader(&[1, 2, 3], 0).await;
                let leader = format!("meta-{leader}");
                for other in names.iter().filter(|n| **n != leader) {
                    net.cut(&leader, other)?;
                    if self == Nemesis::IsolateLeader {
                        net.cut(other, &leader)?;
                    }
                }
                Ok(())
            }
            Nemesis::SplitHalves => {
                let minority = [
                    format!("meta-{}", pick % 3 + 1),
                    shard,
                    "coordinator-1".to_owned(),
                ];
                let majority: Vec<String> = names
                    .into_iter()
                    .filter(|n| !minority.contains(n))
                    .collect();
                net.split(&minority, &majority)
            }
            Nemesis::CutCoordinatorShard => {
                let coordinator = format!("coordinator-{}", pick % 2 + 1);
                net.split(&[coordinator], &[shard])
            }
            Nemesis::SlowShard => net.slow(&shard, 256),
            Nemesis::LossyShard => net.lossy(&shard, 30),
            _ => unreachable!("not a network fault: {self:?}"),
        }
    }
}

/// One process of the cluster.
#[derive(Clone, Debug)]
enum Target {
    Meta(u64),
    Shard(u64),
    Coordinator(String),
}

impl Target {
    async fn pick(sys: &System, role: Role, pick: u64) -> Target {
        match role {
            Role::MetaLeader | Role::MetaFollower => {
                let (leader, _) = sys.cluster.meta.wait_leader(&[1, 2, 3], 0).await;
                if role == Role::MetaLeader {
                    Target::Meta(leader)
                } else {
                    Target::Meta((leader + pick % 2) % 3 + 1)
                }
            }
            Role::Shard => {
                let ids: Vec<u64> = sys
                    .cluster
                    .shard_ids()
                    .into_iter()
                    .filter(|id| sys.cluster.shard_proc(*id).is_some())
                    .collect();
                Target::Shard(ids[pick as usize % ids.len()])
            }
            Role::Coordinator => {
                let n = sys.coordinators.len();
                Target::Coordinator(sys.coordinators[pick as usize % n].clone())
            }
        }
    }

    /// Meta members, then shard nodes, then coordinators: the order a
    /// whole cluster is started in.
    fn all(sys: &System) -> Vec<Target> {
        let meta = sys.cluster.meta.members.keys().map(|id| Target::Meta(*id));
        let shards = sys
            .cluster
            .shard_ids()
            .into_iter()
            .filter(|id| sys.cluster.shard_proc(*id).is_some())
            .map(Target::Shard);
        let coordinators = sys.coordinators.iter().cloned().map(Target::Coordinator);
        meta.chain(shards).chain(coordinators).collect()
    }

    fn pid(&self, sys: &System) -> u32 {
        let proc = match self {
            Target::Meta(id) => sys.cluster.meta.member_proc(*id),
            Target::Shard(id) => sys.cluster.shard_proc(*id),
            Target::Coordinator(addr) => sys.cluster.coordinator_proc(addr),
        };
        proc.expect("the target is running").pid()
    }

    fn kill(&self, sys: &mut System) {
        match self {
            Target::Meta(id) => sys.cluster.meta.kill(*id),
            Target::Shard(id) => sys.cluster.kill_shard(*id),
            Target::Coordinator(addr) => sys.cluster.kill_coordinator(addr),
        }
    }

    fn stop(&self, sys: &mut System) {
        match self {
            Target::Meta(id) => {
                sys.cluster.meta.stop(*id, Duration::from_secs(20));
            }
            Target::Shard(id) => {
                sys.cluster.stop_shard(*id);
            }
            Target::Coordinator(addr) => {
                sys.cluster.stop_coordinator(addr);
            }
        }
    }

    /// Its data directory.
    fn data_dir(&self, sys: &System) -> std::path::PathBuf {
        match self {
            Target::Meta(id) => sys.cluster.meta.dir().join(format!("m{id}")),
            Target::Shard(id) => sys.cluster.dir().join(format!("shard-{id}")),
            Target::Coordinator(_) => sys.cluster.dir().join("coordinator"),
        }
    }

    /// Whether it accepts connections on its address.
    fn listening(&self, sys: &System) -> bool {
        let addr = match self {
            Target::Meta(id) => sys.cluster.meta.members[id].addr.clone(),
            Target::Shard(id) => sys.cluster.shard_addr(*id),
            Target::Coordinator(addr) => addr.clone(),
        };
        std::net::TcpStream::connect(addr).is_ok()
    }

    fn start(&self, sys: &mut System) {
        match self {
            Target::Meta(id) => sys.cluster.meta.spawn(*id, false),
            Target::Shard(id) => sys.cluster.spawn_shard(*id),
            Target::Coordinator(addr) => sys.cluster.spawn_coordinator(addr),
        }
    }
}
