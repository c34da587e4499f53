//! `rulake-bench catalog`: the catalog's figures come from real member
//! processes on loopback (this same binary), so they include gRPC, JSON
//! encoding, fsync and forwarding, not just openraft in memory.

use anyhow::{bail, Context};
use clap::Args as ClapArgs;
use rulake_catalog::{CatalogClient, Command, ReadConsistency, SourceKind, SourceRecord};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// `rulake-bench catalog`.
#[derive(ClapArgs)]
pub struct Args {
    /// Catalog writes to time.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Writers in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Leader kills to time.
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    /// Markdown file whose "catalog" section is rewritten.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
}

struct Member {
    id: u64,
    addr: String,
    child: Option<Child>,
}

fn spawn(id: u64, addr: &str, peers: &str, dir: &std::path::Path) -> anyhow::Result<Child> {
    let dir = dir.join(format!("m{id}"));
    let dir = dir.to_str().context("data directory is not UTF-8")?;
    crate::process::spawn_role(
        &[
            "meta",
            "--id",
            &id.to_string(),
            "--listen",
            addr,
            "--peers",
            peers,
            "--data-dir",
            dir,
        ],
        std::path::Path::new("."),
    )
}

async fn leader(client: &CatalogClient, n: usize) -> Option<u64> {
    for i in 0..n {
        if let Ok(s) = client.status_of(i).await {
            if s.state == "Leader" {
                return Some(s.id);
            }
        }
    }
    None
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Run the benchmark.
pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.writes == 0 || a.concurrency == 0 {
        bail!("--writes and --concurrency must be positive");
    }
    let dir = tempfile::tempdir()?;
    let mut members = Vec::new();
    for id in 1..=3u64 {
        members.push(Member {
            id,
            addr: format!("127.0.0.1:{}", crate::process::free_port()?),
            child: None,
        });
    }
    let peers = members
        .iter()
        .map(|m| format!("{}={}", m.id, m.addr))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        m.child = Some(spawn(m.id, &m.addr, &peers, dir.path())?);
    }
    let addrs: Vec<String> = members.iter().map(|m| m.addr.clone()).collect();
    let client = CatalogClient::new(&addrs)?;
    let result = bench(&a, &client, &mut members, &peers, dir.path()).await;
    for m in &mut members {
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    result
}

async fn bench(
    a: &Args,
    client: &CatalogClient,
    members: &mut [Member],
    peers: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    eprintln!("catalog bench: starting a 3-member group");
    client
        .write(&Command::CreateSource(SourceRecord {
            name: "bench".into(),
            kind: SourceKind::Managed {
                prefix: "file:///bench/".into(),
            },
            options: Default::default(),
        }))
        .await
        .context("first write (is the group up?)")?;

    // Throughput and latency: `concurrency` writers, each a managed commit of one new file.
    eprintln!(
        "catalog bench: {} writes, {} in flight",
        a.writes, a.concurrency
    );
    let started = Instant::now();
    let per = a.writes.div_ceil(a.concurrency);
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let client = client.clone();
        let n = per.min(a.writes.saturating_sub(w * per));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let cmd = Command::CommitManaged {
                    source: "bench".into(),
                    expected_seq: None,
                    files: vec![format!("w{w}-{i}.parquet")],
                };
                let t = Instant::now();
                client.write_via(w, &cmd).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for (done, t) in tasks.into_iter().enumerate() {
        lat.extend(t.await??);
        eprintln!("catalog bench: writer {}/{} done", done + 1, a.concurrency);
    }
    let elapsed = started.elapsed();
    lat.sort();
    let throughput = lat.len() as f64 / elapsed.as_secs_f64();

    // Failover: kill -9 the leader, time until a write is acknowledged by the new one.
    let mut failovers = Vec::new();
    for round in 0..a.failovers {
        let Some(old) = leader(client, members.len()).await else {
            bail!("no leader before failover round {round}");
        };
        let victim = members.iter_mut().find(|m| m.id == old).expect("member");
        let mut child = victim.child.take().expect("running");
        let t = Instant::now();
        let killed = child.kill();
        child.wait()?;
        killed?;
        let others: Vec<String> = members
            .iter()
            .filter(|m| m.id != old)
            .map(|m| m.addr.clone())
            .collect();
        let mut survivors = CatalogClient::new(&others)?;
        survivors.call_timeout = Duration::from_secs(1);
        survivors.total_timeout = Duration::from_secs(30);
        let mut i = 0u64;
        loop {
            i += 1;
            let cmd = Command::CommitManaged {
                source: "bench".into(),
                expected_seq: None,
                files: vec![format!("failover-{round}-{i}.parquet")],
            };
            if survivors.write(&cmd).await.is_ok() {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("no write acknowledged 60 s after killing the leader");
            }
        }
        let took = t.elapsed();
        eprintln!(
            "catalog bench: failover {}/{}: leader {old} killed, first acknowledged write after {} ms",
            round + 1,
            a.failovers,
            ms(took)
        );
        failovers.push(took);
        let victim = members.iter_mut().find(|m| m.id == old).expect("member");
        victim.child = Some(spawn(victim.id, &victim.addr, peers, dir)?);
        // Let the restarted member catch up before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let check = client.read(ReadConsistency::Linearizable).await?;
    let commits = check.catalog.managed.get("bench").map_or(0, Vec::len);
    failovers.sort();

    let body = format!(
        "## Catalog (Raft meta group)\n\n\
Command: `cargo run -p rulake-bench -- catalog` (dev profile as configured in Cargo.toml; 3 member processes of this binary on loopback, \
default timeouts: heartbeat 100 ms, election timeout 500–1000 ms; every write is a managed-source \
commit, fsynced by a majority before it is acknowledged).\n\n\
| measure | value |\n| --- | --- |\n\
| writes | {} ({} writers in flight, sent round-robin to all members; followers forward) |\n\
| throughput | {:.0} writes/s |\n\
| latency p50 | {} ms |\n\
| latency p99 | {} ms |\n\
| latency max | {} ms |\n\
| failover: leader `kill -9` → first acknowledged write, median of {} | {} ms |\n\
| failover, worst | {} ms |\n\n\
All {} commits present in a linearizable read afterwards.\n",
        lat.len(),
        a.concurrency,
        throughput,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().expect("writes")),
        failovers.len(),
        failovers
            .get(failovers.len() / 2)
            .map_or("-".into(), |d| ms(*d)),
        failovers.last().map_or("-".into(), |d| ms(*d)),
        commits,
    );
    println!("{body}");
    crate::report::write_section(&a.out, "catalog", &body)?;
    eprintln!(
        "catalog bench: wrote the catalog section of {}",
        a.out.display()
    );
    Ok(())
}
