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
//!
//! The stages live apart, each with the decision it holds:
//! - `shards` — one connection and one status report per shard node.
//! - `routes` — which replica serves each partition, best first.
//! - `fanout` — one scan: group partitions by node, send, count.
//! - `hedge` — one node's request: retries and hedges on other replicas.
//! - `merge` — replies into one exact answer, generation by majority.
//! - `control` — id lookups and refreshes, which must reach every
//!   partition and so are neither hedged nor answered in part.

mod control;
mod fanout;
mod hedge;
mod merge;
mod routes;
mod shards;

pub use merge::Fanned;
pub(crate) use routes::partition_key;
pub use routes::PartitionRoute;
pub use shards::ShardState;

use parking_lot::RwLock;
use rulake_catalog::store::AppliedState;
use shards::Shard;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

    /// Last catalog log index of the view routing reads, sent with every
    /// request so a shard can catch up to it first.
    fn catalog_index(&self) -> u64 {
        self.inner.view.read().last_applied.map_or(0, |l| l.index)
    }
}
