//! Connections to shard nodes and what each last said about itself.
//!
//! Why one long-lived handle per node, kept in step with the catalog's
//! node list rather than dialled per request: the handle is also where
//! routing keeps the node's in-flight count and last status report, and
//! those must survive from one query to the next. A node re-registered
//! at a new address gets a fresh handle (and no stale status); a node that
//! stops answering status polls is marked unreachable, which routing ranks
//! last rather than dropping, so it is still tried when nothing else is.

use super::Router;
use crate::{CoordinatorError, Result};
use futures::future::join_all;
use parking_lot::RwLock;
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::shard_service_client::ShardServiceClient;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// Largest message either way between coordinator and shard (a batch of
/// queries, or their top-k lists).
const MAX_MESSAGE: usize = 256 << 20;

/// One shard node, as this coordinator knows it.
pub(super) struct Shard {
    pub(super) addr: String,
    pub(super) client: ShardServiceClient<Channel>,
    pub(super) outstanding: AtomicUsize,
    /// Last status report. `None`: unreachable.
    pub(super) status: RwLock<Option<Report>>,
}

/// What a shard said of itself in its last status reply.
pub(super) struct Report {
    /// Partition key → state.
    pub(super) partitions: HashMap<String, pb::PartitionState>,
    /// Its cache and process memory.
    pub(super) cache: rulake_proto::v1::CacheStats,
}

impl Shard {
    fn new(addr: &str, channel: Channel) -> Shard {
        Shard {
            addr: addr.to_owned(),
            client: ShardServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            outstanding: AtomicUsize::new(0),
            status: RwLock::new(None),
        }
    }

    /// Whether the node has `key` warm; `None` when it does not answer.
    pub(super) fn warm(&self, key: &str) -> Option<bool> {
        let s = self.status.read();
        s.as_ref()
            .map(|r| r.partitions.get(key).is_some_and(|p| p.warm))
    }

    /// Count a request in flight until the returned guard drops.
    pub(super) fn in_flight(&self) -> Outstanding<'_> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(&self.outstanding)
    }
}

/// One shard node as the last status poll saw it.
#[derive(Clone, Debug)]
pub struct ShardState {
    /// Node id.
    pub id: u64,
    /// Address its `ShardService` is reached at.
    pub addr: String,
    /// Whether it answered the last status poll.
    pub live: bool,
    /// Partitions it reports warm.
    pub warm: u32,
    /// Its cache and process memory, as it reported them.
    pub cache: Option<rulake_proto::v1::CacheStats>,
}

/// A request in flight to one shard; dropping it (answered, failed or
/// abandoned for a faster hedge) takes it off the node's load.
pub(super) struct Outstanding<'a>(&'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `req` carrying the trace context of the call this task serves (W3C
/// `traceparent`, this coordinator's span as the parent), so the shard's
/// `grpc` span and log lines have the same `trace_id` as ours.
pub(super) fn traced<T>(mut req: tonic::Request<T>) -> tonic::Request<T> {
    let ctx = rulake_telemetry::outgoing();
    let value = ctx.to_string().parse().expect("traceparent is ASCII");
    req.metadata_mut()
        .insert(rulake_telemetry::TRACEPARENT, value);
    req
}

/// A shard's refusal as the coordinator's error: a bad argument or a
/// missing collection stays the caller's, as does a deadline the shard's
/// search ran past (the caller's deadline, passed on); anything else is
/// the node's.
pub(super) fn status_error(node: u64, addr: &str, s: tonic::Status) -> CoordinatorError {
    let msg = format!("shard {node} ({addr}): {}", s.message());
    match s.code() {
        tonic::Code::InvalidArgument => CoordinatorError::InvalidArgument(msg),
        tonic::Code::NotFound => CoordinatorError::NotFound {
            kind: "collection",
            name: msg,
        },
        tonic::Code::DeadlineExceeded => {
            CoordinatorError::Engine(rulake_engine::EngineError::DeadlineExceeded(msg))
        }
        _ => CoordinatorError::Unavailable(msg),
    }
}

impl Router {
    /// Keep one handle per registered node, re-created when its address changes.
    pub(super) fn shard_handles(&self) -> Vec<(u64, Arc<Shard>)> {
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
                    shards.insert(*id, Arc::new(Shard::new(addr, ch)));
                }
                Err(e) => tracing::warn!(node = id, error = %e, "no channel to shard"),
            }
        }
        shards.iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    /// Connect to the listed nodes if no handle exists yet (the first
    /// query may come before the first status poll).
    pub(super) fn ensure_handles(&self) {
        if self.inner.shards.read().is_empty() {
            self.shard_handles();
        }
    }

    pub(super) async fn poll_status(&self) {
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
                    let reply = reply.into_inner();
                    let partitions = reply
                        .partitions
                        .into_iter()
                        .map(|p| (p.key.clone(), p))
                        .collect();
                    *s.status.write() = Some(Report {
                        partitions,
                        cache: reply.cache.unwrap_or_default(),
                    });
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

    /// Poll every shard's status now (start-up, `CacheStats` and tests use
    /// it not to wait for the next round).
    pub async fn refresh_status(&self) {
        self.poll_status().await;
    }

    /// The handle of node `id`, if it is registered and reachable by channel.
    pub(super) fn shard(&self, id: u64) -> Option<Arc<Shard>> {
        self.inner.shards.read().get(&id).cloned()
    }

    /// The handle of node `id`, or `UNAVAILABLE` for the request about to
    /// be sent to it.
    pub(super) fn registered(&self, id: u64) -> Result<Arc<Shard>> {
        self.shard(id)
            .ok_or_else(|| CoordinatorError::Unavailable(format!("shard {id} is not registered")))
    }

    /// A unary request to a shard: traced, bounded by the request timeout.
    pub(super) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = traced(tonic::Request::new(msg));
        req.set_timeout(self.inner.cfg.request_timeout);
        req
    }

    /// Every registered node as its last status poll saw it, by id.
    pub fn shard_states(&self) -> Vec<ShardState> {
        let mut v: Vec<_> = self
            .inner
            .shards
            .read()
            .iter()
            .map(|(id, s)| {
                let st = s.status.read();
                ShardState {
                    id: *id,
                    addr: s.addr.clone(),
                    live: st.is_some(),
                    warm: st.as_ref().map_or(0, |r| {
                        r.partitions.values().filter(|p| p.warm).count() as u32
                    }),
                    cache: st.as_ref().map(|r| r.cache),
                }
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::status_error;
    use tonic::{Code, Status};

    #[test]
    fn a_shards_deadline_stays_the_callers_deadline() {
        let e = status_error(3, "h:1", Status::deadline_exceeded("stopped"));
        let s = Status::from(&e);
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert!(s.message().contains("shard 3 (h:1): stopped"), "{s:?}");
        let e = status_error(3, "h:1", Status::internal("x"));
        assert_eq!(Status::from(&e).code(), Code::Unavailable);
    }
}
