//! The distributed query path: a coordinator that holds no partitions
//! fans each query out to shard nodes and merges their exact answers.
//!
//! Routing reads two things: the committed assignment (who owns or hands
//! off each partition, the same for every coordinator at one epoch) and
//! each shard's own status, polled in the background (which partitions it
//! has warm). For every partition it picks one replica: warm before cold,
//! then the fewest requests in flight from this coordinator. Partitions
//! picked on the same node travel in one request, which the node answers
//! with its merged top-k.
//!
//! Each request carries the client's deadline, less a margin for the merge,
//! as its `grpc-timeout`: a shard serving a `fresh` collection whose newer
//! generation is still loading answers from the generation it has warm
//! instead of letting the deadline pass, and says which one is loading.
//!
//! A request that fails is retried on other replicas of its partitions; one
//! that is still running after the hedge delay gets a duplicate on other
//! replicas, and whichever completes first answers. A partition that no
//! replica answered is counted out of the answer (`partitions_answered`
//! below `partitions_total`), never dropped silently. Distances are exact
//! per partition, so the merge is exact.

use crate::{CoordinatorError, Result};
use futures::future::{join_all, select, Either};
use parking_lot::RwLock;
use rulake_catalog::store::AppliedState;
use rulake_catalog::{Assignment, CollectionRecord};
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::shard_service_client::ShardServiceClient;
use rulake_types::{merge_topk, Generation, Hit, SearchParams, VectorId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How the coordinator talks to shards.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// A request still running after this long is duplicated on another replica.
    pub hedge_delay: Duration,
    /// Deadline of one request to one shard.
    pub request_timeout: Duration,
    /// How often each shard's status is polled.
    pub status_interval: Duration,
    /// Builds channels to shards (TLS goes here).
    pub transport: rulake_catalog::Transport,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            hedge_delay: Duration::from_millis(50),
            request_timeout: Duration::from_secs(10),
            status_interval: Duration::from_millis(250),
            transport: rulake_catalog::Transport::default(),
        }
    }
}

/// Counters of the fan-out, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Queries answered (each query of a batch counts).
    pub queries: u64,
    /// Requests sent to shards (first tries, retries and hedges).
    pub requests: u64,
    /// Requests re-sent after a failure.
    pub retries: u64,
    /// Duplicates sent because a request was slow.
    pub hedges: u64,
    /// Answers that missed at least one partition.
    pub partial: u64,
    /// Partitions asked, summed over queries.
    pub fanout_partitions: u64,
}

#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    hedges: AtomicU64,
    partial: AtomicU64,
    fanout: AtomicU64,
}

struct Shard {
    addr: String,
    client: ShardServiceClient<Channel>,
    outstanding: AtomicUsize,
    /// Last status: when, and partition key → state. `None`: unreachable.
    status: RwLock<Option<(Instant, HashMap<String, pb::PartitionState>)>>,
}

impl Shard {
    /// Whether the node has `key` warm; `None` when it does not answer.
    fn warm(&self, key: &str) -> Option<bool> {
        let s = self.status.read();
        s.as_ref()
            .map(|(_, parts)| parts.get(key).is_some_and(|p| p.warm))
    }
}

/// The fan-out to shard nodes. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RouterConfig,
    view: Arc<RwLock<AppliedState>>,
    shards: RwLock<HashMap<u64, Arc<Shard>>>,
    counters: Counters,
}

/// What the shards answered for one collection.
#[derive(Debug)]
pub struct Fanned {
    /// Per query, the merged hits.
    pub hits: Vec<Vec<Hit>>,
    /// Generation most partitions were served from.
    pub generation: Generation,
    /// A newer generation some partitions are still loading (a `fresh`
    /// collection's shards answered from the one they had warm).
    pub loading: Option<Generation>,
    /// Partitions that answered.
    pub answered: u32,
    /// Partitions of the collection.
    pub total: u32,
}

/// One partition's serving state across its replicas, as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRoute {
    /// Partition number.
    pub partition: u32,
    /// The replicas (owners and hand-off nodes of the assignment) this
    /// coordinator would try, in order, with no request in flight: warm,
    /// then cold, then not answering; the assignment's order within each.
    pub replicas: Vec<u64>,
    /// Those that report it warm.
    pub warm: Vec<u64>,
}

/// Time kept from a client's deadline to merge the shards' answers.
fn merge_margin(left: Duration) -> Duration {
    (left / 20).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

struct Reply {
    generation: String,
    loading: String,
    hits: Vec<Vec<Hit>>,
}

/// `req` carrying the trace context of the call this task serves (W3C
/// `traceparent`, this coordinator's span as the parent), so the shard's
/// `grpc` span and log lines have the same `trace_id` as ours.
fn traced<T>(mut req: tonic::Request<T>) -> tonic::Request<T> {
    let ctx = rulake_metrics::telemetry::outgoing();
    let value = ctx.to_string().parse().expect("traceparent is ASCII");
    req.metadata_mut()
        .insert(rulake_metrics::telemetry::TRACEPARENT, value);
    req
}

fn status_error(node: u64, addr: &str, s: tonic::Status) -> CoordinatorError {
    let msg = format!("shard {node} ({addr}): {}", s.message());
    match s.code() {
        tonic::Code::InvalidArgument => CoordinatorError::InvalidArgument(msg),
        tonic::Code::NotFound => CoordinatorError::NotFound {
            kind: "collection",
            name: msg,
        },
        _ => CoordinatorError::Unavailable(msg),
    }
}

impl Router {
    /// A router over the shards the catalog `view` lists; starts polling
    /// their status.
    pub fn start(view: Arc<RwLock<AppliedState>>, cfg: RouterConfig) -> Router {
        let r = Router {
            inner: Arc::new(Inner {
                cfg,
                view,
                shards: RwLock::new(HashMap::new()),
                counters: Counters::default(),
            }),
        };
        let weak = Arc::downgrade(&r.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let router = Router { inner };
                router.poll_status().await;
                let pause = router.inner.cfg.status_interval;
                drop(router);
                tokio::time::sleep(pause).await;
            }
        });
        r
    }

    /// Fan-out counters.
    pub fn stats(&self) -> RouterStats {
        let c = &self.inner.counters;
        RouterStats {
            queries: c.queries.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            hedges: c.hedges.load(Ordering::Relaxed),
            partial: c.partial.load(Ordering::Relaxed),
            fanout_partitions: c.fanout.load(Ordering::Relaxed),
        }
    }

    /// Keep one handle per registered node, re-created when its address changes.
    fn shard_handles(&self) -> Vec<(u64, Arc<Shard>)> {
        let nodes: Vec<(u64, String)> = {
            let v = self.inner.view.read();
            v.catalog
                .nodes
                .values()
                .map(|n| (n.id, n.addr.clone()))
                .collect()
        };
        let mut shards = self.inner.shards.write();
        shards.retain(|id, s| nodes.iter().any(|(n, a)| n == id && *a == s.addr));
        for (id, addr) in &nodes {
            if shards.contains_key(id) {
                continue;
            }
            match self.inner.cfg.transport.channel(addr) {
                Ok(ch) => {
                    shards.insert(
                        *id,
                        Arc::new(Shard {
                            addr: addr.clone(),
                            client: ShardServiceClient::new(ch)
                                .max_decoding_message_size(256 << 20)
                                .max_encoding_message_size(256 << 20),
                            outstanding: AtomicUsize::new(0),
                            status: RwLock::new(None),
                        }),
                    );
                }
                Err(e) => tracing::warn!(node = id, error = %e, "no channel to shard"),
            }
        }
        shards.iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    async fn poll_status(&self) {
        let timeout = self
            .inner
            .cfg
            .status_interval
            .max(Duration::from_millis(500))
            * 2;
        let calls = self.shard_handles().into_iter().map(|(id, s)| async move {
            let mut c = s.client.clone();
            let mut req = tonic::Request::new(pb::ShardStatusRequest {});
            req.set_timeout(timeout);
            let r = tokio::time::timeout(timeout, c.status(req)).await;
            match r {
                Ok(Ok(reply)) => {
                    let parts = reply
                        .into_inner()
                        .partitions
                        .into_iter()
                        .map(|p| (p.key.clone(), p))
                        .collect();
                    *s.status.write() = Some((Instant::now(), parts));
                }
                _ => {
                    if s.status.write().take().is_some() {
                        tracing::warn!(node = id, addr = %s.addr, "shard stopped answering status");
                    }
                }
            }
        });
        join_all(calls).await;
    }

    /// Poll every shard's status now (tests and start-up use it to skip
    /// the wait for the next round).
    pub async fn refresh_status(&self) {
        self.poll_status().await;
    }

    fn catalog_index(&self) -> u64 {
        self.inner.view.read().last_applied.map_or(0, |l| l.index)
    }

    fn shard(&self, id: u64) -> Option<Arc<Shard>> {
        self.inner.shards.read().get(&id).cloned()
    }

    /// Replicas serving `key` with a handle here, as (class, assignment
    /// rank, node): class 0 reports `key` warm, 1 cold, 2 does not answer.
    fn ranked(&self, a: &Assignment, key: &str) -> Vec<(u8, usize, u64)> {
        a.serving(key)
            .into_iter()
            .enumerate()
            .filter_map(|(rank, n)| {
                let class = match self.shard(n)?.warm(key) {
                    Some(true) => 0,
                    Some(false) => 1,
                    None => 2,
                };
                Some((class, rank, n))
            })
            .collect()
    }

    /// Replicas of each partition of `rec`, best first for this coordinator:
    /// the order of [`Router::routes`], then the fewest requests in flight.
    fn candidates(&self, rec: &CollectionRecord) -> Vec<Vec<u64>> {
        if self.inner.shards.read().is_empty() {
            self.shard_handles();
        }
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        (0..rec.partitions)
            .map(|p| {
                let mut reps: Vec<(u8, usize, usize, u64)> = self
                    .ranked(a, &format!("{}/{p}", rec.name))
                    .into_iter()
                    .filter_map(|(class, rank, n)| {
                        let load = self.shard(n)?.outstanding.load(Ordering::Relaxed);
                        Some((class, load, rank, n))
                    })
                    .collect();
                reps.sort();
                reps.into_iter().map(|(_, _, _, n)| n).collect()
            })
            .collect()
    }

    /// How each partition of `rec` is served now.
    pub fn routes(&self, rec: &CollectionRecord) -> Vec<PartitionRoute> {
        if self.inner.shards.read().is_empty() {
            self.shard_handles();
        }
        let view = self.inner.view.read();
        self.routes_in(&view.catalog.assignment, rec)
    }

    fn routes_in(&self, a: &Assignment, rec: &CollectionRecord) -> Vec<PartitionRoute> {
        (0..rec.partitions)
            .map(|p| {
                let mut reps = self.ranked(a, &format!("{}/{p}", rec.name));
                reps.sort();
                PartitionRoute {
                    partition: p,
                    replicas: reps.iter().map(|r| r.2).collect(),
                    warm: reps.iter().filter(|r| r.0 == 0).map(|r| r.2).collect(),
                }
            })
            .collect()
    }

    /// The assignment epoch of this coordinator's catalog view and, under
    /// the same view, the routes of every collection by name: what two
    /// coordinators compare to check they route alike.
    pub fn route_table(&self) -> (u64, Vec<(String, Vec<PartitionRoute>)>) {
        if self.inner.shards.read().is_empty() {
            self.shard_handles();
        }
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        let table = view
            .catalog
            .collections
            .values()
            .map(|rec| (rec.name.clone(), self.routes_in(a, rec)))
            .collect();
        (a.epoch, table)
    }

    /// Per partition of `rec`, the report of one replica that has it warm.
    fn warm_reports(&self, rec: &CollectionRecord) -> Vec<Option<pb::PartitionState>> {
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        (0..rec.partitions)
            .map(|p| {
                let key = format!("{}/{p}", rec.name);
                a.serving(&key).into_iter().find_map(|n| {
                    let s = self.shard(n)?;
                    let st = s.status.read();
                    st.as_ref()?.1.get(&key).filter(|p| p.warm).cloned()
                })
            })
            .collect()
    }

    /// Vectors in the collection, from the shards' reports; 0 when some
    /// partition has no warm report (the shards then plan on their own).
    pub fn collection_vectors(&self, rec: &CollectionRecord) -> u64 {
        self.warm_reports(rec)
            .into_iter()
            .try_fold(0, |total, r| r.map(|r| total + r.vectors))
            .unwrap_or(0)
    }

    /// The generation most warm partitions of `rec` report.
    pub fn generation(&self, rec: &CollectionRecord) -> Option<Generation> {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for r in self.warm_reports(rec).into_iter().flatten() {
            *seen.entry(r.generation).or_default() += 1;
        }
        seen.into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(g, _)| Generation(g))
    }

    /// Search `rec` with `queries` on the shards, answering by `deadline`.
    pub async fn scan(
        &self,
        rec: &CollectionRecord,
        queries: &[Vec<f32>],
        params: SearchParams,
        deadline: Instant,
    ) -> Result<Fanned> {
        let cands = self.candidates(rec);
        let total = rec.partitions;
        let base = pb::ScanRequest {
            collection: rec.name.clone(),
            partitions: Vec::new(),
            queries: queries
                .iter()
                .map(|q| pb::ScanQuery { values: q.clone() })
                .collect(),
            k: params.k as u32,
            nprobe: params.nprobe.map(|n| n as u32),
            rerank: params.rerank.map(|n| n as u32),
            collection_vectors: self.collection_vectors(rec),
            catalog_index: self.catalog_index(),
        };
        // First choice per partition, grouped by node.
        // A partition with no replica at all is simply not asked: it
        // counts out of `answered`.
        let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (p, c) in cands.iter().enumerate() {
            if let Some(n) = c.first() {
                groups.entry(*n).or_default().push(p as u32);
            }
        }
        let nq = queries.len() as u64;
        let c = &self.inner.counters;
        c.queries.fetch_add(nq, Ordering::Relaxed);
        c.fanout.fetch_add(u64::from(total) * nq, Ordering::Relaxed);
        let runs = groups
            .into_iter()
            .map(|(node, parts)| self.run_group(node, parts, &cands, &base, deadline));
        let results = join_all(runs).await;
        let mut lists: Vec<Vec<Vec<Hit>>> = vec![Vec::new(); queries.len()];
        let mut generations: BTreeMap<String, u32> = BTreeMap::new();
        let mut loading: BTreeMap<String, u32> = BTreeMap::new();
        let mut answered = 0u32;
        let mut first_error = None;
        for r in results {
            match r {
                Ok((n, replies)) => {
                    answered += n;
                    for reply in replies {
                        *generations.entry(reply.generation).or_default() += n;
                        if !reply.loading.is_empty() {
                            *loading.entry(reply.loading).or_default() += n;
                        }
                        for (i, hits) in reply.hits.into_iter().enumerate() {
                            if let Some(l) = lists.get_mut(i) {
                                l.push(hits);
                            }
                        }
                    }
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            // A query the shards refuse (bad argument) is the caller's
            // error, not a partial answer.
            if matches!(e, CoordinatorError::InvalidArgument(_)) || answered == 0 && total > 0 {
                return Err(e);
            }
        }
        if answered < total {
            self.inner.counters.partial.fetch_add(nq, Ordering::Relaxed);
        }
        let generation = generations
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(g, _)| Generation(g))
            .unwrap_or_default();
        let loading = loading
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(g, _)| Generation(g));
        Ok(Fanned {
            hits: lists.into_iter().map(|l| merge_topk(l, params.k)).collect(),
            generation,
            loading,
            answered,
            total,
        })
    }

    /// Send one request to one node, to be answered by `deadline` less the
    /// merge margin (and within the configured request timeout).
    async fn call(
        &self,
        node: u64,
        parts: Vec<u32>,
        base: &pb::ScanRequest,
        deadline: Instant,
    ) -> Result<Reply> {
        let shard = self.shard(node).ok_or_else(|| {
            CoordinatorError::Unavailable(format!("shard {node} is not registered"))
        })?;
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        shard.outstanding.fetch_add(1, Ordering::Relaxed);
        let _done = Outstanding(&shard.outstanding);
        let mut req = traced(tonic::Request::new(pb::ScanRequest {
            partitions: parts,
            ..base.clone()
        }));
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self
            .inner
            .cfg
            .request_timeout
            .min(left.saturating_sub(merge_margin(left)));
        req.set_timeout(timeout);
        let mut c = shard.client.clone();
        let reply =
            match tokio::time::timeout(timeout + Duration::from_millis(200), c.scan(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => return Err(status_error(node, &shard.addr, s)),
                Err(_) => {
                    return Err(CoordinatorError::Unavailable(format!(
                        "shard {node} ({}) did not answer within {timeout:?}",
                        shard.addr
                    )))
                }
            };
        let hits = reply
            .results
            .into_iter()
            .map(|l| {
                l.hits
                    .into_iter()
                    .filter_map(|h| {
                        Some(Hit {
                            id: VectorId::from_key(&h.id)?,
                            distance: h.distance,
                        })
                    })
                    .collect()
            })
            .collect();
        Ok(Reply {
            generation: reply.generation,
            loading: reply.loading_generation,
            hits,
        })
    }

    /// Partitions `parts` first on `node`; on failure, or when slower than
    /// the hedge delay, on their other replicas too. Returns how many
    /// partitions answered and the replies that cover them.
    async fn run_group(
        &self,
        node: u64,
        parts: Vec<u32>,
        cands: &[Vec<u64>],
        base: &pb::ScanRequest,
        deadline: Instant,
    ) -> Result<(u32, Vec<Reply>)> {
        let n = parts.len() as u32;
        let primary = Box::pin(self.call(node, parts.clone(), base, deadline));
        let hedge = Box::pin(tokio::time::sleep(self.inner.cfg.hedge_delay));
        let (primary, hedged) = match select(primary, hedge).await {
            Either::Left((Ok(r), _)) => return Ok((n, vec![r])),
            Either::Left((Err(e), _)) => {
                if matches!(e, CoordinatorError::InvalidArgument(_)) {
                    return Err(e);
                }
                tracing::debug!(node, error = %e, "shard request failed; retrying on other replicas");
                (None, false)
            }
            Either::Right(((), primary)) => (Some(primary), true),
        };
        // Other replicas of each partition, grouped by node.
        let mut alt: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut uncovered = 0u32;
        for p in &parts {
            match cands[*p as usize].iter().find(|c| **c != node) {
                Some(c) => alt.entry(*c).or_default().push(*p),
                None => uncovered += 1,
            }
        }
        let counter = if hedged {
            &self.inner.counters.hedges
        } else {
            &self.inner.counters.retries
        };
        if !alt.is_empty() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let alternates = async {
            let calls = alt.iter().map(|(node, ps)| async move {
                (
                    ps.len() as u32,
                    self.call(*node, ps.clone(), base, deadline).await,
                )
            });
            join_all(calls).await
        };
        let collect = |rs: Vec<(u32, Result<Reply>)>| {
            let mut got = 0;
            let mut replies = Vec::new();
            let mut err = None;
            for (k, r) in rs {
                match r {
                    Ok(r) => {
                        got += k;
                        replies.push(r);
                    }
                    Err(e) => err = Some(e),
                }
            }
            (got, replies, err)
        };
        match primary {
            None => {
                let (got, replies, err) = collect(alternates.await);
                if got == 0 {
                    return Err(err.unwrap_or_else(|| {
                        CoordinatorError::Unavailable(format!(
                            "no replica answered for {uncovered} partition(s) after shard {node} failed"
                        ))
                    }));
                }
                Ok((got, replies))
            }
            Some(primary) => {
                if alt.is_empty() {
                    return primary.await.map(|r| (n, vec![r]));
                }
                let alternates = Box::pin(alternates);
                match select(primary, alternates).await {
                    Either::Left((Ok(r), _)) => Ok((n, vec![r])),
                    Either::Left((Err(_), alternates)) => {
                        let (got, replies, err) = collect(alternates.await);
                        if got == 0 {
                            return Err(err.unwrap_or_else(|| {
                                CoordinatorError::Unavailable("no replica answered".into())
                            }));
                        }
                        Ok((got, replies))
                    }
                    Either::Right((rs, primary)) => {
                        let (got, replies, _) = collect(rs);
                        if got == n {
                            return Ok((got, replies));
                        }
                        // Some alternates failed: the primary may still answer all.
                        match primary.await {
                            Ok(r) => Ok((n, vec![r])),
                            Err(e) if got == 0 => Err(e),
                            Err(_) => Ok((got, replies)),
                        }
                    }
                }
            }
        }
    }

    /// Which of `ids` the collection holds, asking one replica per partition.
    pub async fn lookup(
        &self,
        rec: &CollectionRecord,
        ids: &HashSet<VectorId>,
    ) -> Result<Vec<VectorId>> {
        let cands = self.candidates(rec);
        let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (p, c) in cands.iter().enumerate() {
            let n = c.first().ok_or_else(|| {
                CoordinatorError::Unavailable(format!(
                    "partition {p} of {:?} has no replica to ask",
                    rec.name
                ))
            })?;
            groups.entry(*n).or_default().push(p as u32);
        }
        let keys: Vec<String> = ids.iter().map(VectorId::to_key).collect();
        let calls = groups.into_iter().map(|(node, parts)| {
            let keys = keys.clone();
            async move {
                let shard = self.shard(node).ok_or_else(|| {
                    CoordinatorError::Unavailable(format!("shard {node} is not registered"))
                })?;
                let mut req = traced(tonic::Request::new(pb::LookupRequest {
                    collection: rec.name.clone(),
                    partitions: parts,
                    ids: keys,
                    catalog_index: self.catalog_index(),
                }));
                req.set_timeout(self.inner.cfg.request_timeout);
                let mut c = shard.client.clone();
                c.lookup(req)
                    .await
                    .map(|r| r.into_inner().present)
                    .map_err(|s| status_error(node, &shard.addr, s))
            }
        });
        let mut found: Vec<VectorId> = Vec::new();
        for r in join_all(calls).await {
            found.extend(r?.iter().filter_map(|k| VectorId::from_key(k)));
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Ask every node serving part of `rec` to check its source now.
    pub async fn refresh(&self, rec: &CollectionRecord) -> Result<Generation> {
        let nodes: Vec<u64> = {
            let view = self.inner.view.read();
            let a = &view.catalog.assignment;
            let mut v: Vec<u64> = (0..rec.partitions)
                .flat_map(|p| a.serving(&format!("{}/{p}", rec.name)))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if nodes.is_empty() {
            return Err(CoordinatorError::Unavailable(format!(
                "collection {:?} has no shard node yet",
                rec.name
            )));
        }
        let calls = nodes.into_iter().map(|node| async move {
            let shard = self.shard(node).ok_or_else(|| {
                CoordinatorError::Unavailable(format!("shard {node} is not registered"))
            })?;
            let mut req = traced(tonic::Request::new(pb::ShardRefreshRequest {
                collection: rec.name.clone(),
                catalog_index: self.catalog_index(),
            }));
            req.set_timeout(self.inner.cfg.request_timeout);
            let mut c = shard.client.clone();
            c.refresh(req)
                .await
                .map(|r| Generation(r.into_inner().generation))
                .map_err(|s| status_error(node, &shard.addr, s))
        });
        let mut last = Err(CoordinatorError::Unavailable("no shard answered".into()));
        for r in join_all(calls).await {
            match r {
                Ok(g) => last = Ok(g),
                Err(e) if last.is_err() => last = Err(e),
                Err(_) => {}
            }
        }
        last
    }

    /// Per node: address, whether it answers, partitions warm, and the
    /// last status time.
    pub fn shard_states(&self) -> Vec<(u64, String, bool, u32)> {
        let mut v: Vec<_> = self
            .inner
            .shards
            .read()
            .iter()
            .map(|(id, s)| {
                let st = s.status.read();
                let warm = st
                    .as_ref()
                    .map_or(0, |(_, p)| p.values().filter(|p| p.warm).count() as u32);
                (*id, s.addr.clone(), st.is_some(), warm)
            })
            .collect();
        v.sort();
        v
    }
}

struct Outstanding<'a>(&'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
