//! The system a scenario runs against: a whole cluster as processes on
//! loopback (three meta members, shard nodes, two coordinators) holding
//! two collections whose every answer can be checked.
//!
//! `ext` is a Parquet lake that never changes during a run, so the exact
//! answer to each probe query is known before the run starts and every
//! complete answer can be compared with it (searches ask for every list
//! and every candidate, which makes the partitions exact). `m` is managed:
//! the workload ingests and deletes into it, and each row's vector is a
//! function of its id, so whether an acknowledged row is there (or a
//! deleted one is gone) is one search away. Two coordinators let clients
//! fail over the way a client of a Kubernetes Service does.

use crate::net::Net;
use rulake_client::{proto, Client};
use rulake_datasets::ClusteredGaussian;
use rulake_lake::{IdsRef, ID_COLUMN, VECTOR_COLUMN};
use rulake_tests::{Distributed, Hosts, Loopback};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Vector width of both collections.
pub const DIM: usize = 16;
/// The static lake collection.
pub const EXT: &str = "ext";
/// The managed collection.
pub const MANAGED: &str = "m";
/// The aliases switched together, and what each starts at.
pub const ALIASES: [(&str, &str); 2] = [("front", EXT), ("back", MANAGED)];
/// Probe queries whose exact answers are known.
pub const PROBES: usize = 16;
/// Hits asked of each probe.
pub const K: usize = 10;
/// Shard nodes at the start.
pub const SHARDS: u64 = 3;
/// Rows of the managed collection's first batch (ids `0..SETUP_ROWS`),
/// which no delete names.
pub const SETUP_ROWS: u64 = 8;
/// Where `ext` is on the S3-compatible lake, when it is there.
pub const S3_EXT: &str = "s3://lake/ext/";
/// Cache budget of every node (bytes), the cap memory is checked against.
pub const CACHE_BYTES: u64 = 64 << 20;

const FILES: usize = 4;
const ROWS_PER_FILE: usize = 1_500;

/// The running cluster and what its answers are checked against.
pub struct System {
    /// The processes.
    pub cluster: Distributed,
    /// Coordinator addresses, in the order clients try them.
    pub coordinators: Vec<String>,
    /// Probe queries of `ext`, with their exact answers (ids, nearest first).
    pub probes: Vec<(Vec<f32>, Vec<u64>)>,
    /// Small disks mounted by a scenario; unmounted after the processes go.
    pub disks: Vec<crate::disk::SmallDisk>,
    /// The lake's files (and the policy naming the S3 lake), kept for the
    /// run.
    _lake: tempfile::TempDir,
    /// One failpoint file per process (`fp-<pid>`), watched by each.
    points: tempfile::TempDir,
    /// The S3-compatible server `ext` is read from, when the scenario
    /// faults the lake (`ext` is then `s3://lake/ext/` on it).
    pub s3: Option<crate::lake::FaultyLake>,
    /// The private network when every process has a host of its own;
    /// declared last, so it goes after the processes.
    net: Option<Arc<Net>>,
}

impl System {
    /// Start the cluster (every process on a host of its own when
    /// `isolated`, else on loopback), write the lake (served over S3 by a
    /// [`crate::lake::FaultyLake`] when `s3`, else read as local files),
    /// create the collections and aliases, and wait until both collections
    /// answer from every partition.
    pub async fn start(isolated: bool, s3: bool) -> anyhow::Result<System> {
        // Every role reads its cache budget from the environment it inherits.
        std::env::set_var("RULAKE_CACHE_BYTES", CACHE_BYTES.to_string());
        let lake = tempfile::tempdir()?;
        let (rows, s3, url) = if s3 {
            // s3s-fs serves each directory under its root as a bucket.
            let files = lake.path().join("lake").join("ext");
            std::fs::create_dir_all(&files)?;
            let rows = write_lake(&files)?;
            let server = crate::lake::FaultyLake::start(lake.path(), 0x1a4e);
            let policy = lake.path().join("policy.json");
            std::fs::write(&policy, server.policy_json(S3_EXT))?;
            std::env::set_var("RULAKE_SOURCE_POLICY", &policy);
            (rows, Some(server), S3_EXT.to_owned())
        } else {
            // A scenario before this one may have named its S3 lake.
            std::env::remove_var("RULAKE_SOURCE_POLICY");
            let rows = write_lake(lake.path())?;
            let p = lake.path();
            let dir = p.canonicalize().unwrap_or_else(|_| p.to_owned());
            (rows, None, format!("file://{}/", dir.display()))
        };
        // Each process watches a failpoint file of its own (rulake-server's
        // `failpoints`), through which disk faults are switched.
        let points = tempfile::tempdir()?;
        std::env::set_var(
            "RULAKE_FAILPOINTS",
            points.path().join("fp-{pid}").display().to_string(),
        );
        let net = if isolated {
            // Coordinators on a host of their own listen on a private
            // address, which they refuse to serve anonymously unless told.
            std::env::set_var("RULAKE_ALLOW_ANONYMOUS", "true");
            Some(Net::create()?)
        } else {
            None
        };
        let hosts: Arc<dyn Hosts> = match &net {
            Some(n) => n.clone(),
            None => Arc::new(Loopback),
        };
        let mut cluster = Distributed::start_on(SHARDS, hosts);
        let coordinators = vec![cluster.coordinator(), cluster.coordinator()];
        let probes = probes(&rows);
        let sys = System {
            cluster,
            coordinators,
            probes,
            disks: Vec::new(),
            _lake: lake,
            points,
            s3,
            net,
        };
        let c = sys.client(0).await?;
        c.create_collection(spec(EXT, proto::source::Kind::Parquet(parquet(&url)), 4))
            .await?;
        let managed = proto::source::Kind::Managed(proto::ManagedSource {});
        c.create_collection(spec(MANAGED, managed, 2)).await?;
        // A first batch, so the managed collection has rows to place; the
        // new partitions need owners before it can commit.
        let start = Instant::now();
        while let Err(e) = c
            .ingest(
                MANAGED,
                (0..SETUP_ROWS).map(|i| (rulake_client::Id::Num(i), row(i))),
                SETUP_ROWS as usize,
                |_| {},
            )
            .await
        {
            if start.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the first ingest into {MANAGED}: {e}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (alias, target) in ALIASES {
            c.create_alias(alias, target).await?;
        }
        sys.wait_complete(Duration::from_secs(90)).await?;
        Ok(sys)
    }

    /// The private network (the scenario asked for hosts of their own).
    pub fn net(&self) -> &Net {
        self.net
            .as_deref()
            .expect("a network fault needs System::start(true)")
    }

    /// A client of coordinator `i` with a 2 s deadline per call.
    pub async fn client(&self, i: usize) -> anyhow::Result<Client> {
        let addr = &self.coordinators[i % self.coordinators.len()];
        Ok(Client::connect(&format!("http://{addr}"))
            .await?
            .with_timeout(CALL_DEADLINE))
    }

    /// Until both collections answer from every partition through every
    /// coordinator, and `ext` answers exactly; returns how long it took.
    pub async fn wait_complete(&self, within: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        'wait: loop {
            if start.elapsed() > within {
                anyhow::bail!("the collections did not answer completely within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for i in 0..self.coordinators.len() {
                let Ok(c) = self.client(i).await else {
                    continue 'wait;
                };
                for (name, q) in [(EXT, &self.probes[0].0), (MANAGED, &row(0))] {
                    match c.search_with(name, q, exhaustive(K as u32)).await {
                        Ok(r) if !r.partial && r.partitions_answered == r.partitions_total => {
                            if name == EXT && hit_ids(&r) != self.probes[0].1 {
                                continue 'wait;
                            }
                        }
                        _ => continue 'wait,
                    }
                }
            }
            return Ok(start.elapsed());
        }
    }

    /// Peak resident memory (VmHWM) of each running shard node and
    /// coordinator, in bytes, by process name.
    pub fn peak_rss(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for id in self.cluster.shard_ids() {
            if let Some(p) = self.cluster.shard_proc(id) {
                out.push((format!("shard-{id}"), vm_hwm(p.pid())));
            }
        }
        for addr in &self.coordinators {
            if let Some(p) = self.cluster.coordinator_proc(addr) {
                out.push((format!("coordinator {addr}"), vm_hwm(p.pid())));
            }
        }
        out
    }

    /// Switch process `pid`'s failpoints to `lines` (`name=actions` each;
    /// empty switches them all off). Each process reads its file every
    /// 100 ms, so this waits 300 ms for the change to take.
    pub async fn failpoints(&self, pid: u32, lines: &str) -> anyhow::Result<()> {
        std::fs::write(self.points.path().join(format!("fp-{pid}")), lines)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// Log files of every process that ran.
    pub fn logs(&self) -> Vec<PathBuf> {
        let mut logs = Vec::new();
        for dir in [self.cluster.dir(), self.cluster.meta.dir()] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                logs.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "log")),
                );
            }
        }
        logs
    }
}

/// The deadline each call carries.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// Search parameters under which every partition answers exactly.
pub fn exhaustive(k: u32) -> proto::SearchParams {
    proto::SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
        ..Default::default()
    }
}

/// The numeric ids of a response's hits, nearest first.
pub fn hit_ids(r: &proto::SearchResponse) -> Vec<u64> {
    r.hits
        .iter()
        .filter_map(|h| match rulake_client::Id::of(&h.id) {
            Some(rulake_client::Id::Num(n)) => Some(n),
            _ => None,
        })
        .collect()
}

/// The vector of managed row `id`: a function of the id alone, spread so
/// that a row's own vector finds it first.
pub fn row(id: u64) -> Vec<f32> {
    let mut s = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 1000.0
        })
        .collect()
}

fn write_lake(dir: &Path) -> anyhow::Result<Vec<f32>> {
    let gen = ClusteredGaussian::new(DIM, 24, 0.5, 7);
    let mut all = Vec::with_capacity(FILES * ROWS_PER_FILE * DIM);
    for f in 0..FILES {
        let ids: Vec<u64> = (0..ROWS_PER_FILE)
            .map(|i| (f * ROWS_PER_FILE + i) as u64)
            .collect();
        let vectors = gen.sample(ROWS_PER_FILE, f as u64);
        rulake_lake::write_parquet_file(
            &dir.join(format!("part-{f}.parquet")),
            IdsRef::U64(&ids),
            &vectors,
            DIM,
            ROWS_PER_FILE / 2,
        )?;
        all.extend(vectors);
    }
    Ok(all)
}

/// `PROBES` queries drawn from the lake's distribution, with their exact
/// `K` nearest ids (ties by id).
fn probes(rows: &[f32]) -> Vec<(Vec<f32>, Vec<u64>)> {
    let gen = ClusteredGaussian::new(DIM, 24, 0.5, 7);
    let qs = gen.sample(PROBES, 1_000);
    qs.chunks(DIM)
        .map(|q| {
            let mut d: Vec<(f32, u64)> = rows
                .chunks(DIM)
                .enumerate()
                .map(|(i, v)| {
                    let d = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                    (d, i as u64)
                })
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            (q.to_vec(), d.iter().take(K).map(|x| x.1).collect())
        })
        .collect()
}

fn parquet(url: &str) -> proto::ParquetSource {
    proto::ParquetSource {
        url: url.into(),
        id_column: ID_COLUMN.into(),
        vector_column: VECTOR_COLUMN.into(),
        options: Default::default(),
    }
}

fn spec(name: &str, kind: proto::source::Kind, partitions: u32) -> proto::CollectionSpec {
    let level = if name == MANAGED {
        // Acknowledged writes are visible to the next query.
        proto::consistency::Level::Fresh(proto::consistency::Fresh {})
    } else {
        proto::consistency::Level::Eventual(proto::consistency::Eventual {
            max_staleness_ms: 600_000,
        })
    };
    proto::CollectionSpec {
        name: name.into(),
        source: Some(proto::Source { kind: Some(kind) }),
        dimension: DIM as u32,
        metric: proto::Metric::L2 as i32,
        partitions,
        replication_factor: 2,
        consistency: Some(proto::Consistency { level: Some(level) }),
        rerank: None,
        nprobe: None,
        target_recall: None,
        ..Default::default()
    }
}

/// Peak resident set of `pid` in bytes (0 when it cannot be read).
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
