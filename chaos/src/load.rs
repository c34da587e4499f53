//! The load a scenario keeps going while faults come, and the history it
//! records: every call with its start, end and result, on one clock.
//!
//! - Searchers query `ext` with exact parameters (so every complete answer
//!   is checkable) and now and then `m`, failing over between the
//!   coordinators as a client of a Service would.
//! - A writer ingests batches into `m`, deletes rows of earlier batches,
//!   and switches both aliases in one call.
//! - A reader reads the catalog linearizably through any meta member: the
//!   alias table, the managed commit sequence and the tombstones.
//!
//! A write whose call fails may still have happened (the coordinator may
//! have committed before the failure reached the client), so a failed
//! write is recorded with an unknown outcome, never as "did not happen".

use crate::system::{
    exhaustive, hit_ids, row, System, ALIASES, CALL_DEADLINE, EXT, K, MANAGED, SETUP_ROWS,
};
use rulake_catalog::{CatalogClient, ReadConsistency};
use rulake_client::{Client, Id};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows per ingested batch; batch `b` holds ids `b * BATCH_IDS ..`.
pub const BATCH_ROWS: u64 = 24;
/// Id space of one batch.
pub const BATCH_IDS: u64 = 1_000;
/// Rows of each batch the writer later deletes (its first ones).
pub const DELETED_PER_BATCH: u64 = 4;
/// Longer than a call's deadline by this much, a call counts as hung.
pub const HANG_SLACK: Duration = Duration::from_secs(1);

/// How a search ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Every partition answered, and the hits are the exact ones.
    Exact,
    /// Flagged partial by the coordinator.
    Partial,
    /// Every partition answered and the hits are wrong.
    Wrong(String),
    /// The call failed on every coordinator.
    Failed(String),
}

/// One search.
#[derive(Clone, Debug)]
pub struct Search {
    /// Microseconds since the run began, at the call and at the end.
    pub call: u64,
    /// End of the call.
    pub ret: u64,
    /// Longest single try, microseconds.
    pub longest_try: u64,
    /// How it ended.
    pub answer: Answer,
}

/// One write by the writer.
#[derive(Clone, Debug)]
pub enum Write {
    /// Ingest of a batch.
    Ingest {
        /// The batch (its ids start at `batch * BATCH_IDS`).
        batch: u64,
        /// The commit sequence acknowledged, if any.
        seq: Option<u64>,
    },
    /// Delete of rows.
    Delete {
        /// Their ids.
        ids: Vec<u64>,
    },
    /// Both aliases switched in one call.
    Switch {
        /// Alias → new target.
        to: BTreeMap<String, String>,
    },
}

/// A write with its times; `ret` is `None` when its outcome is unknown.
#[derive(Clone, Debug)]
pub struct WriteEvent {
    /// Invocation, microseconds since the run began.
    pub call: u64,
    /// Acknowledgement; `None`: failed, outcome unknown.
    pub ret: Option<u64>,
    /// What was written.
    pub write: Write,
}

/// One linearizable catalog read.
#[derive(Clone, Debug)]
pub struct CatalogRead {
    /// Invocation and completion.
    pub call: u64,
    /// Completion.
    pub ret: u64,
    /// The alias table.
    pub aliases: BTreeMap<String, String>,
    /// The managed commit sequence of `m`'s source.
    pub seq: u64,
    /// `m`'s tombstones, as numeric ids.
    pub tombstones: BTreeSet<u64>,
}

/// Everything the clients did.
#[derive(Debug, Default)]
pub struct Record {
    /// Searches.
    pub searches: Vec<Search>,
    /// Writes.
    pub writes: Vec<WriteEvent>,
    /// Catalog reads.
    pub reads: Vec<CatalogRead>,
}

/// The running load.
///
/// The clients run on a runtime of their own: a nemesis stops and starts
/// processes with blocking calls, and a client stuck behind one of them
/// would count the scenario's own pause as an outage.
pub struct Load {
    start: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Load {
    /// Start `searchers` searchers, one writer and one catalog reader.
    pub fn start(sys: &System, searchers: usize) -> anyhow::Result<Load> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("chaos-load")
            .enable_all()
            .build()?;
        let mut load = Load {
            start: Instant::now(),
            record: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
            runtime,
        };
        for w in 0..searchers {
            let ctx = load.ctx(sys);
            let task = load.runtime.spawn(async move { ctx.searcher(w).await });
            load.tasks.push(task);
        }
        let ctx = load.ctx(sys);
        let task = load.runtime.spawn(async move { ctx.writer().await });
        load.tasks.push(task);
        let ctx = load.ctx(sys);
        let ids: Vec<u64> = sys.cluster.meta.members.keys().copied().collect();
        let members = sys.cluster.meta.addrs(&ids);
        let source = managed_source(sys);
        let task = load.runtime.spawn(async move {
            // Made here, so its connections live on the clients' runtime.
            let mut catalog = CatalogClient::with_transport(&members, &Default::default())
                .expect("a catalog client of the meta group");
            catalog.call_timeout = CALL_DEADLINE;
            catalog.total_timeout = Duration::from_secs(5);
            ctx.reader(catalog, source).await
        });
        load.tasks.push(task);
        Ok(load)
    }

    fn ctx(&self, sys: &System) -> Ctx {
        Ctx {
            start: self.start,
            record: self.record.clone(),
            stop: self.stop.clone(),
            coordinators: sys.coordinators.clone(),
            probes: Arc::new(sys.probes.clone()),
        }
    }

    /// Stop every client and return what they did.
    pub async fn stop(self) -> Record {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            // A client that panicked has already lost its history; the
            // scenario reports the panic through the missing work.
            let _ = t.await;
        }
        self.runtime.shutdown_background();
        std::mem::take(&mut *self.record.lock().unwrap())
    }
}

/// The managed source's name in the catalog: a managed collection's
/// source is named after the collection.
fn managed_source(_sys: &System) -> String {
    MANAGED.to_owned()
}

/// The commit sequence of a managed generation (`m-<seq>`).
pub fn generation_seq(generation: &str) -> Option<u64> {
    generation.strip_prefix("m-")?.parse().ok()
}

#[derive(Clone)]
struct Ctx {
    start: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    coordinators: Vec<String>,
    probes: Arc<Vec<(Vec<f32>, Vec<u64>)>>,
}

impl Ctx {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// A client of coordinator `i`, connected now (a down coordinator
    /// refuses the connection at once).
    async fn client(&self, i: usize) -> Option<Client> {
        let addr = &self.coordinators[i % self.coordinators.len()];
        let url = format!("http://{addr}");
        match tokio::time::timeout(CALL_DEADLINE, Client::connect(&url)).await {
            Ok(Ok(c)) => Some(c.with_timeout(CALL_DEADLINE)),
            _ => None,
        }
    }

    async fn searcher(&self, w: usize) {
        let mut clients: Vec<Option<Client>> = vec![None; self.coordinators.len()];
        let mut n = w;
        while self.running() {
            n += 1;
            let call = self.now();
            let mut longest = 0;
            let mut answer = Answer::Failed("no coordinator reachable".into());
            // Try each coordinator once, starting from this client's own.
            for t in 0..self.coordinators.len() {
                let i = (w + t) % self.coordinators.len();
                if clients[i].is_none() {
                    clients[i] = self.client(i).await;
                }
                let Some(c) = clients[i].clone() else {
                    continue;
                };
                let began = self.now();
                let result = self.search_once(&c, n).await;
                longest = longest.max(self.now() - began);
                match result {
                    Ok(a) => {
                        answer = a;
                        break;
                    }
                    Err(e) => {
                        answer = Answer::Failed(e);
                        clients[i] = None;
                    }
                }
            }
            let ret = self.now();
            let failed = matches!(answer, Answer::Failed(_));
            self.record.lock().unwrap().searches.push(Search {
                call,
                ret,
                longest_try: longest,
                answer,
            });
            if failed {
                // Every coordinator refused at once: try again shortly, as
                // a client with a backoff would, rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// One search on coordinator `c`: of `ext` three times in four, of `m`
    /// otherwise. Hung calls (past the deadline plus slack) are failures.
    async fn search_once(&self, c: &Client, n: usize) -> Result<Answer, String> {
        let (collection, query, want) = if n % 4 == 3 {
            // A row of the first batch, which no delete names: in every
            // generation it is there, and its own vector finds it first.
            let id = n as u64 % SETUP_ROWS;
            (MANAGED, row(id), vec![id])
        } else {
            let (q, want) = &self.probes[n % self.probes.len()];
            (EXT, q.clone(), want.clone())
        };
        let call = c.search_with(collection, &query, exhaustive(K as u32));
        let r = match tokio::time::timeout(CALL_DEADLINE + HANG_SLACK * 2, call).await {
            Err(_) => return Err("hung past its deadline".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(r)) => r,
        };
        if r.partial || r.partitions_answered < r.partitions_total {
            return Ok(Answer::Partial);
        }
        let got = hit_ids(&r);
        Ok(if got[..want.len().min(got.len())] == want[..] {
            Answer::Exact
        } else {
            Answer::Wrong(format!("{collection}: got {got:?}, want {want:?} first"))
        })
    }

    async fn writer(&self) {
        let mut acked: Vec<u64> = Vec::new();
        let mut batch = 1u64;
        let mut n = 0usize;
        while self.running() {
            n += 1;
            let Some(c) = self.client(n).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let call = self.now();
            let (write, ok) = match n % 3 {
                0 if !acked.is_empty() => {
                    let b = acked[n / 3 % acked.len()];
                    let ids: Vec<u64> = (0..DELETED_PER_BATCH).map(|i| b * BATCH_IDS + i).collect();
                    let r = c
                        .delete(MANAGED, ids.iter().map(|i| Id::Num(*i)).collect())
                        .await;
                    (Write::Delete { ids }, r.is_ok())
                }
                1 => {
                    let to: BTreeMap<String, String> = ALIASES
                        .iter()
                        .enumerate()
                        .map(|(i, (alias, _))| {
                            let flip = (n / 3 + i) % 2 == 0;
                            (
                                alias.to_string(),
                                if flip { EXT } else { MANAGED }.to_owned(),
                            )
                        })
                        .collect();
                    let pairs: Vec<(&str, &str)> =
                        to.iter().map(|(a, t)| (a.as_str(), t.as_str())).collect();
                    let r = c.switch_aliases(&pairs).await;
                    (Write::Switch { to }, r.is_ok())
                }
                _ => {
                    let b = batch;
                    batch += 1;
                    let rows = (0..BATCH_ROWS).map(move |i| {
                        let id = b * BATCH_IDS + i;
                        (Id::Num(id), row(id))
                    });
                    let r = c.ingest(MANAGED, rows, BATCH_ROWS as usize, |_| {}).await;
                    let seq = r.as_ref().ok().and_then(|r| generation_seq(&r.generation));
                    if r.is_ok() {
                        acked.push(b);
                    }
                    (Write::Ingest { batch: b, seq }, r.is_ok())
                }
            };
            let ret = ok.then(|| self.now());
            self.record
                .lock()
                .unwrap()
                .writes
                .push(WriteEvent { call, ret, write });
            if !ok {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn reader(&self, catalog: CatalogClient, source: String) {
        let mut n = 0usize;
        while self.running() {
            n += 1;
            let call = self.now();
            if let Ok(r) = catalog.read_via(n, ReadConsistency::Linearizable).await {
                let ret = self.now();
                let c = r.catalog;
                let tombstones = c
                    .tombstones
                    .get(MANAGED)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.strip_prefix("n:").and_then(|n| n.parse().ok()))
                    .collect();
                self.record.lock().unwrap().reads.push(CatalogRead {
                    call,
                    ret,
                    aliases: c.aliases.clone(),
                    seq: c.managed_seq(&source),
                    tombstones,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
