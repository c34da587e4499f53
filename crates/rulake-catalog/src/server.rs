//! One member of the meta group. Clients may call any member: a follower
//! forwards writes, linearizable reads and membership changes to the leader
//! (once: a forwarded call that lands on a non-leader fails as UNAVAILABLE),
//! so callers need not track leadership.
//!
//! Error contract of the `CatalogService` (the client relies on it):
//! - a rejected command → INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS or
//!   FAILED_PRECONDITION; nothing was written;
//! - UNAVAILABLE with the `x-rulake-retry-safe` header → the command was not
//!   proposed (no leader, not leader, leadership not confirmed): safe to retry
//!   anywhere;
//! - any other failure (DEADLINE_EXCEEDED after proposing, a forward that
//!   broke mid-call) → the outcome is unknown; a write may still commit.
//!
//! This file starts the member (store, Raft, placement loop, bootstrap) and
//! serves Raft traffic between members; the `CatalogService` that keeps the
//! contract above is in `server/service.rs`.

mod service;

pub(crate) use service::catalog_client;

use crate::error::CatalogError;
use crate::limits::SNAPSHOT_CHUNK_BYTES;
use crate::model::Command;
use crate::network::{NetworkFactory, Transport, MAX_RAFT_MESSAGE};
use crate::placement::{Liveness, PlacementConfig};
use crate::store::{AppliedState, LogStore, Outcome, StateMachine};
use crate::CatalogRaft;
use openraft::error::RaftError;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::raft_service_server::{RaftService, RaftServiceServer};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Header set on UNAVAILABLE replies for calls that were never proposed.
pub const RETRY_SAFE_HEADER: &str = "x-rulake-retry-safe";

/// How a meta member runs. The defaults are the documented production
/// timeouts (see `docs/catalog.md`).
#[derive(Clone, Debug)]
pub struct CatalogConfig {
    /// This member's id (≥ 1).
    pub id: u64,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address other members and clients use to reach this one.
    pub advertise: String,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Initial members (id → address), identical on every initial member;
    /// empty for a member that will be added later as a learner.
    pub peers: BTreeMap<u64, String>,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout, lower bound (randomised up to `election_max`).
    pub election_min: Duration,
    /// Election timeout, upper bound.
    pub election_max: Duration,
    /// Build a snapshot after this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (0 purges everything the snapshot covers).
    pub keep_logs: u64,
    /// How long a write or linearizable read may wait for a quorum.
    pub quorum_timeout: Duration,
    /// Transport for every outgoing channel (TLS goes here).
    pub transport: Transport,
    /// Placement of partitions on shard nodes (run by the leader).
    pub placement: PlacementConfig,
}

impl CatalogConfig {
    /// Defaults for member `id` listening on `listen`.
    pub fn new(id: u64, listen: SocketAddr, data_dir: PathBuf) -> Self {
        CatalogConfig {
            id,
            listen,
            advertise: listen.to_string(),
            data_dir,
            peers: BTreeMap::new(),
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(1000),
            snapshot_every: 1000,
            keep_logs: 1000,
            quorum_timeout: Duration::from_secs(3),
            transport: Transport::default(),
            placement: PlacementConfig::default(),
        }
    }

    fn raft_config(&self) -> Result<Config, CatalogError> {
        let c = Config {
            cluster_name: "rulake-meta".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.keep_logs,
            purge_batch_size: 1,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            // openraft bounds each AppendEntries by the heartbeat interval,
            // but a snapshot chunk gets this much time.
            install_snapshot_timeout: 3000,
            ..Default::default()
        };
        c.validate()
            .map_err(|e| CatalogError::InvalidArgument(format!("raft config: {e}")))
    }
}

struct Inner {
    id: u64,
    raft: CatalogRaft,
    state: Arc<RwLock<AppliedState>>,
    transport: Transport,
    quorum_timeout: Duration,
    /// Channels to other members for forwarding, reused across calls.
    channels: parking_lot::Mutex<BTreeMap<String, tonic::transport::Channel>>,
    /// Shard heartbeats as this member heard them.
    liveness: parking_lot::Mutex<Liveness>,
    placement: PlacementConfig,
}

impl Inner {
    /// Whether `m`, this member's Raft metrics, say it leads now.
    fn leads(&self, m: &openraft::RaftMetrics<u64, BasicNode>) -> bool {
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }
}

/// A running meta member.
#[derive(Clone)]
pub struct CatalogNode {
    inner: Arc<Inner>,
}

fn unavailable(msg: impl Into<String>) -> Status {
    let mut s = Status::unavailable(msg.into());
    s.metadata_mut()
        .insert(RETRY_SAFE_HEADER, "1".parse().expect("ascii"));
    s
}

/// Whether a status says the call was never proposed.
pub fn retry_safe(s: &Status) -> bool {
    s.code() == tonic::Code::Unavailable
        && (s.metadata().contains_key(RETRY_SAFE_HEADER) || connect_failure(s))
}

/// Whether a status reports that no connection was made at all, so no
/// request left this process. Decided from the error that caused the
/// status (only a status made locally has one; a status received from a
/// member has none and relies on [`RETRY_SAFE_HEADER`]): tonic wraps every
/// failure of a channel's connector in [`tonic::ConnectError`], and a
/// refused TCP connection is an `io::Error` of kind `ConnectionRefused`.
pub(crate) fn connect_failure(s: &Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(s);
    while let Some(e) = cause {
        let refused = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        if refused || e.is::<tonic::ConnectError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A connection the member's services can be served on: plain TCP, or
/// TLS accepted by whoever set up the listener.
pub trait Connection:
    tokio::io::AsyncRead
    + tokio::io::AsyncWrite
    + tonic::transport::server::Connected
    + Unpin
    + Send
    + 'static
{
}

impl<T> Connection for T where
    T: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static
{
}

/// How long a stopping member waits for its open connections to finish.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

impl CatalogNode {
    /// Run this member until `shutdown` resolves: the placement loop, the
    /// group's bootstrap on first start (see [`CatalogNode::bootstrap`]),
    /// and the Raft and catalog services on the connections `incoming`
    /// yields; then shut Raft down and wait for the placement loop. The one
    /// way a member runs: `rulake meta` and the operator's meta pods both
    /// come here, after [`CatalogNode::start`] (so the caller can attach
    /// metrics to the node first).
    pub async fn run<IO, E>(
        self,
        peers: &BTreeMap<u64, String>,
        incoming: impl futures::Stream<Item = Result<IO, E>> + Send + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CatalogError>
    where
        IO: Connection,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let placement = tokio::spawn(self.clone().run_placement());
        let boot = self.clone();
        let peers = peers.clone();
        let bootstrap = tokio::spawn(async move {
            if let Err(e) = boot.bootstrap(&peers).await {
                tracing::error!("bootstrap failed: {e}");
            }
        });
        // Open connections get a grace period to finish after the signal;
        // a peer or client that keeps one open (or a call that never ends)
        // must not keep the member from stopping, so past it they are
        // dropped. The Raft state is durable, so this is no worse for the
        // group than a crash.
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let drained = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.await;
                tokio::time::sleep(DRAIN_GRACE).await;
            }
        };
        let served = tokio::select! {
            served = self.serve_incoming(incoming, shutdown) => served,
            () = drained => {
                tracing::warn!("connections still open {DRAIN_GRACE:?} after the shutdown signal; dropping them");
                Ok(())
            }
            e = self.fatal() => Err(e),
        };
        bootstrap.abort();
        let _ = self.inner.raft.shutdown().await;
        // The loop returns once Raft has stopped.
        let _ = placement.await;
        served
    }

    /// Resolves once Raft has stopped on its own: a storage error (a
    /// failed fsync, a full disk) is fatal to a member. The member must not
    /// go on as if the write had happened, nor retry an fsync whose failure
    /// may have dropped the pages; it exits, and its supervisor starts it
    /// again from what is durable, as a crash would.
    async fn fatal(&self) -> CatalogError {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return CatalogError::Raft(format!("raft stopped: {e}"));
            }
            if metrics.changed().await.is_err() {
                return CatalogError::Raft("raft stopped".into());
            }
        }
    }

    /// Open the store and start Raft (no listener yet).
    pub async fn start(cfg: &CatalogConfig) -> Result<CatalogNode, CatalogError> {
        if cfg.id == 0 {
            return Err(CatalogError::InvalidArgument(
                "member ids start at 1".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| CatalogError::Storage(format!("{}: {e}", cfg.data_dir.display())))?;
        let log = LogStore::open(&cfg.data_dir.join("raft.redb"))?;
        let sm = StateMachine::open(&cfg.data_dir.join("snapshots"))?;
        let state = sm.shared();
        let raft = openraft::Raft::new(
            cfg.id,
            Arc::new(cfg.raft_config()?),
            NetworkFactory::new(cfg.transport.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| CatalogError::Raft(e.to_string()))?;
        Ok(CatalogNode {
            inner: Arc::new(Inner {
                id: cfg.id,
                raft,
                state,
                transport: cfg.transport.clone(),
                quorum_timeout: cfg.quorum_timeout,
                channels: Default::default(),
                liveness: Default::default(),
                placement: cfg.placement.clone(),
            }),
        })
    }

    /// Recompute placement whenever this member leads, until the Raft
    /// handle shuts down. Spawned by [`CatalogNode::run`]; an embedding that
    /// calls [`CatalogNode::start`] itself spawns it too.
    pub async fn run_placement(self) {
        let interval = self.inner.placement.interval;
        loop {
            tokio::time::sleep(interval).await;
            if self.inner.raft.metrics().borrow().running_state.is_err() {
                return;
            }
            if !self.is_leader() {
                continue;
            }
            let next = {
                let cat = &self.inner.state.read().catalog;
                let live = self.inner.liveness.lock();
                crate::placement::plan(cat, &live, &self.inner.placement)
            };
            let Some(next) = next else { continue };
            let epoch = next.epoch;
            let write = self.inner.raft.client_write(Command::SetAssignment(next));
            match tokio::time::timeout(self.inner.quorum_timeout, write).await {
                Ok(Ok(r)) => match r.data {
                    Outcome(Ok(_)) => tracing::info!(epoch, "assignment committed"),
                    Outcome(Err(e)) => {
                        tracing::debug!(epoch, error = %e.message, "assignment refused")
                    }
                },
                Ok(Err(e)) => tracing::debug!(epoch, error = %e, "assignment not proposed"),
                Err(_) => tracing::warn!(epoch, "assignment not committed in time"),
            }
        }
    }

    /// Serve the Raft and meta services on `listener` until `shutdown`.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CatalogError> {
        self.serve_incoming(tokio_stream_listener(listener), shutdown)
            .await
    }

    /// Serve the Raft and meta services on the connections `incoming`
    /// yields (mutual TLS between members is set up by whoever accepts
    /// them) until `shutdown`.
    pub async fn serve_incoming<IO, E>(
        &self,
        incoming: impl futures::Stream<Item = Result<IO, E>> + Send + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CatalogError>
    where
        IO: Connection,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let raft_svc = RaftServiceServer::new(RaftSvc {
            raft: self.inner.raft.clone(),
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
        let meta_svc = service::catalog_service(self.inner.clone());
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(raft_svc)
            .add_service(meta_svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| CatalogError::Transport(e.to_string()))
    }

    /// Initialise the group with `peers` if this member is the lowest id
    /// among them and has no Raft state yet. Restarting with the same
    /// peers is a no-op, as is calling it on any other member.
    pub async fn bootstrap(&self, peers: &BTreeMap<u64, String>) -> Result<bool, CatalogError> {
        if peers.is_empty() || peers.keys().next() != Some(&self.inner.id) {
            return Ok(false);
        }
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| CatalogError::Raft(e.to_string()))?
        {
            return Ok(false);
        }
        let members: BTreeMap<u64, BasicNode> = peers
            .iter()
            .map(|(id, a)| (*id, BasicNode { addr: a.clone() }))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(CatalogError::Raft(e.to_string())),
        }
    }

    /// What this member has applied: the catalog it serves local reads
    /// from. Processes that run a member read it directly instead of over
    /// gRPC (it may trail the leader by what is committed but not applied).
    pub fn state(&self) -> Arc<RwLock<AppliedState>> {
        self.inner.state.clone()
    }

    /// Whether this member leads the group now.
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        self.inner.leads(&m)
    }

    /// The Raft handle.
    pub fn raft(&self) -> &CatalogRaft {
        &self.inner.raft
    }
}

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

struct RaftSvc {
    raft: CatalogRaft,
}

fn decode<T: serde::de::DeserializeOwned>(m: &pb::RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&m.json).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<pb::RaftMessage>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(pb::RaftMessage { json }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for RaftSvc {
    async fn append_entries(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let r = self.raft.append_entries(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let r = self.raft.vote(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let r = self.raft.install_snapshot(decode(req.get_ref())?).await;
        encode(&r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulake_proto::internal::v1::catalog_service_client::CatalogServiceClient;

    #[tokio::test]
    async fn a_refused_connection_is_retry_safe() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let ch = Transport::default()
            .channel(&addr.to_string())
            .expect("channel");
        let s = CatalogServiceClient::new(ch)
            .status(pb::StatusRequest {})
            .await
            .expect_err("nothing listens");
        assert!(connect_failure(&s), "{s:?}");
        assert!(retry_safe(&s), "{s:?}");
        // Words in a message prove nothing: only the cause or the header does.
        assert!(!retry_safe(&Status::unavailable("connection refused")));
        assert!(retry_safe(&unavailable("no leader")));
    }
}
