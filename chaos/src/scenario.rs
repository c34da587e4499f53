//! Scenarios: one kind of fault, injected round after round into a whole
//! cluster under load for a set time, then every invariant checked.
//!
//! A run is reproducible from its seed: the seed picks which member each
//! round hits. Each round waits a calm period, injects, holds the fault,
//! heals; after the last round the cluster must converge (I5) before the
//! load stops and the history is checked ([`crate::check`]). The result is
//! one [`Row`] of `docs/RELIABILITY.md`.

use crate::check::{self, Verdict, MAX_CONVERGENCE, RSS_SLACK};
use crate::load::{Load, Record, Write, BATCH_IDS, DELETED_PER_BATCH};
use crate::nemesis::{Nemesis, Role};
use crate::system::{exhaustive, hit_ids, row, System, ALIASES, CACHE_BYTES, MANAGED};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A named scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// The fault, for the report.
    pub fault: &'static str,
    /// What is done each round.
    pub nemesis: Nemesis,
}

/// Every scenario, in the order `--all` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "meta-leader-kill",
        fault: "kill -9 of the meta leader, restarted after the hold",
        nemesis: Nemesis::Kill(Role::MetaLeader),
    },
    Scenario {
        name: "meta-leader-pause",
        fault: "SIGSTOP of the meta leader for the hold, then SIGCONT",
        nemesis: Nemesis::Pause(Role::MetaLeader),
    },
    Scenario {
        name: "meta-follower-kill",
        fault: "kill -9 of a meta follower, restarted after the hold",
        nemesis: Nemesis::Kill(Role::MetaFollower),
    },
    Scenario {
        name: "meta-follower-pause",
        fault: "SIGSTOP of a meta follower for the hold",
        nemesis: Nemesis::Pause(Role::MetaFollower),
    },
    Scenario {
        name: "shard-kill",
        fault: "kill -9 of one shard node (replication 2), restarted after the hold",
        nemesis: Nemesis::Kill(Role::Shard),
    },
    Scenario {
        name: "shard-pause",
        fault: "SIGSTOP of one shard node for the hold",
        nemesis: Nemesis::Pause(Role::Shard),
    },
    Scenario {
        name: "coordinator-kill",
        fault: "kill -9 of one of two coordinators, restarted after the hold",
        nemesis: Nemesis::Kill(Role::Coordinator),
    },
    Scenario {
        name: "coordinator-pause",
        fault: "SIGSTOP of one of two coordinators for the hold",
        nemesis: Nemesis::Pause(Role::Coordinator),
    },
    Scenario {
        name: "restart-all",
        fault: "kill -9 of every process at once, all started again",
        nemesis: Nemesis::RestartAll,
    },
    Scenario {
        name: "rolling-restart",
        fault: "SIGTERM and restart of every process in turn (shards, meta, coordinators)",
        nemesis: Nemesis::RollingRestart,
    },
    Scenario {
        name: "shard-scale",
        fault: "a fourth shard node joins, then is drained and stopped",
        nemesis: Nemesis::ScaleShards,
    },
    Scenario {
        name: "clock-skew",
        fault: "a meta member restarted with its wall clock 5 min ahead, then 5 min behind",
        nemesis: Nemesis::ClockSkew,
    },
    Scenario {
        name: "meta-membership",
        fault: "a fourth meta member joins as a voter, then is voted out and stopped",
        nemesis: Nemesis::MetaMembership,
    },
    Scenario {
        name: "slow-disk",
        fault: "a meta member's Raft log appends and the coordinators' managed-file fsyncs 250 ms slower (failpoints)",
        nemesis: Nemesis::SlowDisk,
    },
    Scenario {
        name: "fsync-fail",
        fault: "a meta member's log fsync fails (it must exit; restarted), or a coordinator's managed-file fsyncs fail for the hold",
        nemesis: Nemesis::FsyncFail,
    },
    Scenario {
        name: "lake-faults",
        fault: "the S3 lake answers 503s, stalls, cut bodies or nothing while ext is refreshed and a shard node restarts",
        nemesis: Nemesis::LakeFaults,
    },
    Scenario {
        name: "disk-full",
        fault: "a meta follower's or a shard node's data directory on a 64 MiB tmpfs, filled for the hold",
        nemesis: Nemesis::DiskFull,
    },
    Scenario {
        name: "partition-leader",
        fault: "the meta leader cut off from every other process, both ways",
        nemesis: Nemesis::IsolateLeader,
    },
    Scenario {
        name: "partition-one-way",
        fault: "the meta leader's packets to every other process dropped (it still hears them)",
        nemesis: Nemesis::OneWayLeader,
    },
    Scenario {
        name: "partition-halves",
        fault: "a meta member, a shard node and a coordinator cut off from the rest, both ways",
        nemesis: Nemesis::SplitHalves,
    },
    Scenario {
        name: "partition-coordinator-shard",
        fault: "one coordinator cut off from one shard node, both ways",
        nemesis: Nemesis::CutCoordinatorShard,
    },
    Scenario {
        name: "slow-link",
        fault: "one shard node's link at 256 kbit/s each way (tc tbf)",
        nemesis: Nemesis::SlowShard,
    },
    Scenario {
        name: "lossy-link",
        fault: "30 % of one shard node's packets dropped each way (iptables statistic)",
        nemesis: Nemesis::LossyShard,
    },
];

/// Scenarios that have found a violation not fixed yet, and what it is
/// (docs/RELIABILITY.md says more). `chaos/run --all` leaves them out, so
/// CI keeps guarding everything else, unless given `--with-open`; by name
/// they always run.
pub const OPEN: &[(&str, &str)] = &[];

/// Why `name` is left out of `--all`, if it is.
pub fn open_violation(name: &str) -> Option<&'static str> {
    OPEN.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// What a scenario run found.
#[derive(Clone, Debug)]
pub struct Row {
    /// Scenario name.
    pub name: &'static str,
    /// Fault rounds injected.
    pub rounds: usize,
    /// The history's figures and broken invariants.
    pub verdict: Verdict,
    /// From the last healing to full, exact answers everywhere (I5).
    pub convergence: Duration,
    /// Largest peak resident memory of a node, bytes.
    pub peak_rss: u64,
    /// Wall time of the whole scenario, setup included.
    pub took: Duration,
}

impl Row {
    /// An empty row, for a run that ends before it has figures.
    pub fn failed(name: &'static str) -> Row {
        Row {
            name,
            rounds: 0,
            verdict: Verdict::default(),
            convergence: Duration::ZERO,
            peak_rss: 0,
            took: Duration::ZERO,
        }
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    /// The row as a Markdown table line (see [`Row::HEADER`]).
    pub fn markdown(&self) -> String {
        let v = &self.verdict;
        let total = v.answered + v.partial + v.failed + v.wrong;
        format!(
            "| {} | {} | {} | {}/{}/{} | {} | {:.1} s | {}/{} | {:.1} s | {:.2} s | {} MiB | {} |",
            self.name,
            self.rounds,
            total,
            v.answered,
            v.partial,
            v.failed,
            v.wrong,
            v.outage.as_secs_f64(),
            v.acked,
            v.unknown,
            v.longest_call.as_secs_f64(),
            self.convergence.as_secs_f64(),
            self.peak_rss >> 20,
            if self.ok() {
                "ok".to_owned()
            } else {
                v.violations.join("; ")
            }
        )
    }

    /// The table header for [`Row::markdown`].
    pub const HEADER: &'static str = "| scenario | rounds | searches | answered/partial/failed | wrong (I3) | longest outage (I2) | writes acked/unknown | slowest call (I4) | converged (I5) | peak RSS (I4) | invariants |\n|---|---:|---:|---|---:|---:|---|---:|---:|---:|---|";
}

/// Run `scenario` for `seconds` of faults with `seed`, holding each fault
/// for `hold` and waiting `calm` between faults.
pub async fn run(
    scenario: &Scenario,
    seconds: u64,
    seed: u64,
    hold: Duration,
    calm: Duration,
) -> (Row, Option<System>) {
    let began = Instant::now();
    let mut row = Row::failed(scenario.name);
    let mut sys =
        match System::start(scenario.nemesis.needs_hosts(), scenario.nemesis.needs_s3()).await {
            Ok(s) => s,
            Err(e) => {
                row.verdict
                    .violations
                    .push(format!("setup: the cluster did not come up: {e:#}"));
                return (row, None);
            }
        };
    let aliases: BTreeMap<String, String> = ALIASES
        .iter()
        .map(|(a, t)| (a.to_string(), t.to_string()))
        .collect();
    let load = match Load::start(&sys, 2) {
        Ok(l) => l,
        Err(e) => {
            row.verdict
                .violations
                .push(format!("setup: the clients: {e:#}"));
            return (row, Some(sys));
        }
    };
    let mut rng = seed ^ 0x5851_f42d_4c95_7f2d;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(calm).await;
        if let Err(e) = scenario.nemesis.round(&mut sys, next(&mut rng), hold).await {
            row.verdict.violations.push(format!(
                "round {}: the fault was not carried out: {e}",
                row.rounds
            ));
        }
        row.rounds += 1;
    }
    // I5: from the last healing to exact answers through every
    // coordinator, and (below) every acknowledged write visible there.
    let healed = Instant::now();
    if let Err(e) = sys.wait_complete(Duration::from_secs(60)).await {
        row.verdict.violations.push(format!("I5: {e:#}"));
    }
    let record = load.stop().await;
    let outage_bound = scenario.nemesis.keeps_a_replica();
    let mut verdict = check::verdict(&record, &aliases, outage_bound);
    verdict.violations.append(&mut row.verdict.violations);
    // I1: no acknowledged write lost, through any coordinator. One that
    // was cut off serves its last catalog view until it catches up, so
    // the check is repeated until the convergence bound has passed.
    let lost = loop {
        let lost = writes_survive(&sys, &record).await;
        if lost.is_empty() || healed.elapsed() > MAX_CONVERGENCE {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    row.convergence = healed.elapsed();
    if row.convergence > MAX_CONVERGENCE {
        verdict.violations.push(format!(
            "I5: not converged {:.1} s after the last healing (bound {} s)",
            row.convergence.as_secs_f64(),
            MAX_CONVERGENCE.as_secs()
        ));
    }
    verdict.violations.extend(lost);
    verdict.violations.extend(no_panics(&sys));
    row.peak_rss = sys.peak_rss().iter().map(|(_, b)| *b).max().unwrap_or(0);
    if let Some((name, b)) = sys
        .peak_rss()
        .into_iter()
        .find(|(_, b)| *b > CACHE_BYTES + RSS_SLACK)
    {
        verdict.violations.push(format!(
            "I4: {name} peaked at {} MiB resident, over the {} MiB cache budget + {} MiB",
            b >> 20,
            CACHE_BYTES >> 20,
            RSS_SLACK >> 20
        ));
    }
    row.verdict = verdict;
    row.took = began.elapsed();
    (row, Some(sys))
}

/// I1 at the end: every acknowledged ingest's rows are found (those not
/// deleted since) and every acknowledged delete's rows are gone, through
/// the user's own path: a search with the row's vector.
async fn writes_survive(sys: &System, record: &Record) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..sys.coordinators.len() {
        match sys.client(i).await {
            Ok(c) => out.extend(writes_seen(&c, record, &sys.coordinators[i]).await),
            Err(e) => out.push(format!(
                "I1: no coordinator {i} to check the writes through: {e}"
            )),
        }
    }
    out
}

/// [`writes_survive`] through the coordinator at `addr`.
async fn writes_seen(c: &rulake_client::Client, record: &Record, addr: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Deleted for sure, and perhaps deleted (the outcome is unknown).
    let (mut deleted, mut maybe) = (BTreeSet::new(), BTreeSet::new());
    for w in &record.writes {
        if let Write::Delete { ids } = &w.write {
            let set = if w.ret.is_some() {
                &mut deleted
            } else {
                &mut maybe
            };
            set.extend(ids.iter().copied());
        }
    }
    for w in &record.writes {
        let (Some(_), Write::Ingest { batch, .. }) = (w.ret, &w.write) else {
            continue;
        };
        // A row no delete ever named, and the first row, which may be deleted.
        for id in [batch * BATCH_IDS + DELETED_PER_BATCH, batch * BATCH_IDS] {
            if maybe.contains(&id) && !deleted.contains(&id) {
                continue;
            }
            let r = c.search_with(MANAGED, &row(id), exhaustive(1)).await;
            let found = match &r {
                Ok(r) => hit_ids(r).first() == Some(&id),
                Err(e) => {
                    out.push(format!("I1: checking row {id}: {e}"));
                    break;
                }
            };
            if found == deleted.contains(&id) {
                out.push(format!(
                    "I1: row {id} of an acknowledged ingest is {} after the run (through {addr})",
                    if found {
                        "still served after its acknowledged delete"
                    } else {
                        "missing"
                    }
                ));
            }
        }
        if out.len() >= 5 {
            break;
        }
    }
    out
}

/// I4: no process's log holds a panic.
fn no_panics(sys: &System) -> Vec<String> {
    sys.logs()
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let line = text.lines().find(|l| l.contains("panicked at"))?;
            Some(format!(
                "I4: {} panicked: {line}",
                p.file_name()?.to_string_lossy()
            ))
        })
        .collect()
}

/// splitmix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
