//! One member of the meta group. Clients may call any member: a follower
//! forwards writes, linearizable reads and membership changes to the leader
//! (once: a forwarded call that lands on a non-leader fails as UNAVAILABLE),
//! so callers need not track leadership.
//!
//! Error contract of the `MetaService` (the client relies on it):
//! - a rejected command → INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS or
//!   FAILED_PRECONDITION; nothing was written;
//! - UNAVAILABLE with the `x-rulake-retry-safe` header → the command was not
//!   proposed (no leader, not leader, leadership not confirmed): safe to retry
//!   anywhere;
//! - any other failure (DEADLINE_EXCEEDED after proposing, a forward that
//!   broke mid-call) → the outcome is unknown; a write may still commit.

use crate::error::{CatalogError, Rejection, RejectionKind};
use crate::model::Command;
use crate::network::{NetworkFactory, Transport, MAX_RAFT_MESSAGE};
use crate::placement::{Liveness, PlacementConfig};
use crate::store::{AppliedState, LogStore, Outcome, StateMachine};
use crate::CatalogRaft;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::meta_service_client::MetaServiceClient;
use rulake_proto::internal::v1::meta_service_server::{MetaService, MetaServiceServer};
use rulake_proto::internal::v1::raft_service_server::{RaftService, RaftServiceServer};
use std::collections::{BTreeMap, BTreeSet};
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
pub struct MetaConfig {
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

impl MetaConfig {
    /// Defaults for member `id` listening on `listen`.
    pub fn new(id: u64, listen: SocketAddr, data_dir: PathBuf) -> Self {
        MetaConfig {
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
            snapshot_max_chunk_size: 1 << 20,
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

/// A running meta member.
#[derive(Clone)]
pub struct MetaNode {
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

/// Whether a status reports that no connection was made at all.
pub(crate) fn connect_failure(s: &Status) -> bool {
    let text = format!("{s:?}").to_ascii_lowercase();
    text.contains("connection refused")
        || text.contains("tcp connect error")
        || text.contains("connect timeout")
        || text.contains("error trying to connect")
}

fn command_status(r: &Rejection) -> Status {
    let msg = r.message.clone();
    match r.kind {
        RejectionKind::Invalid => Status::invalid_argument(msg),
        RejectionKind::NotFound => Status::not_found(msg),
        RejectionKind::AlreadyExists => Status::already_exists(msg),
        RejectionKind::Precondition => Status::failed_precondition(msg),
    }
}

fn members_of(m: &openraft::Membership<u64, BasicNode>) -> Vec<pb::Member> {
    let voters: BTreeSet<u64> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, n)| pb::Member {
            id: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

impl MetaNode {
    /// Open the store, start Raft and serve the gRPC services until
    /// `shutdown` resolves; bootstraps the group on first start (see
    /// [`MetaNode::bootstrap`]).
    pub async fn run(
        cfg: MetaConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CatalogError> {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| CatalogError::Transport(format!("bind {}: {e}", cfg.listen)))?;
        let node = MetaNode::start(&cfg).await?;
        tokio::spawn(node.clone().run_placement());
        let serve = node.serve(listener, shutdown);
        let boot = node.clone();
        let peers = cfg.peers.clone();
        tokio::spawn(async move {
            if let Err(e) = boot.bootstrap(&peers).await {
                tracing::error!("bootstrap failed: {e}");
            }
        });
        let res = serve.await;
        let _ = node.inner.raft.shutdown().await;
        res
    }

    /// Open the store and start Raft (no listener yet).
    pub async fn start(cfg: &MetaConfig) -> Result<MetaNode, CatalogError> {
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
        Ok(MetaNode {
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
    /// handle shuts down. Spawned by [`MetaNode::run`]; an embedding that
    /// calls [`MetaNode::start`] itself spawns it too.
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
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let raft_svc = RaftServiceServer::new(RaftSvc {
            raft: self.inner.raft.clone(),
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
        let meta_svc = MetaServiceServer::new(MetaSvc {
            inner: self.inner.clone(),
        });
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
        m.current_leader == Some(self.inner.id) && m.state == ServerState::Leader
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

struct MetaSvc {
    inner: Arc<Inner>,
}

enum Role {
    Leader,
    Forward(String),
}

impl MetaSvc {
    fn role(&self, forwarded: bool) -> Result<Role, Status> {
        let m = self.inner.raft.metrics().borrow().clone();
        match m.current_leader {
            Some(l) if l == self.inner.id && m.state == ServerState::Leader => Ok(Role::Leader),
            _ if forwarded => Err(unavailable(format!(
                "member {} is not the leader (forwarded call)",
                self.inner.id
            ))),
            Some(l) => match m.membership_config.membership().get_node(&l) {
                Some(n) => Ok(Role::Forward(n.addr.clone())),
                None => Err(unavailable(format!("leader {l} has no known address"))),
            },
            None => Err(unavailable(format!(
                "member {} knows no leader (election in progress or no quorum)",
                self.inner.id
            ))),
        }
    }

    fn client(&self, addr: &str) -> Result<MetaServiceClient<tonic::transport::Channel>, Status> {
        let mut channels = self.inner.channels.lock();
        if let Some(ch) = channels.get(addr) {
            return Ok(MetaServiceClient::new(ch.clone()));
        }
        let ch = self.inner.transport.channel(addr).map_err(unavailable)?;
        channels.insert(addr.to_owned(), ch.clone());
        Ok(MetaServiceClient::new(ch))
    }

    /// Pass a forwarded call's failure on, keeping "retry-safe" only when it
    /// is certain the leader never proposed.
    fn forward_error(addr: &str, s: Status) -> Status {
        if retry_safe(&s) {
            return unavailable(format!("forward to leader {addr}: {}", s.message()));
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Status::unknown(format!(
                    "forward to leader {addr} broke; the outcome is unknown: {}",
                    s.message()
                ))
            }
            _ => s,
        }
    }

    /// Confirm leadership with a quorum and wait until the read index is
    /// applied (openraft's read-index), bounded by the quorum timeout.
    async fn read_index(&self) -> Result<(), Status> {
        match tokio::time::timeout(
            self.inner.quorum_timeout,
            self.inner.raft.ensure_linearizable(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(format!("leadership not confirmed: {e}"))),
            Err(_) => Err(unavailable(format!(
                "leadership not confirmed by a quorum within {:?}: the group may have lost its majority",
                self.inner.quorum_timeout
            ))),
        }
    }
}

#[tonic::async_trait]
impl MetaService for MetaSvc {
    async fn write(
        &self,
        req: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let req = req.into_inner();
        let cmd: Command = serde_json::from_slice(&req.command_json)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        let addr = match self.role(req.forwarded)? {
            Role::Leader => None,
            Role::Forward(a) => Some(a),
        };
        if let Some(addr) = addr {
            let mut fwd = req;
            fwd.forwarded = true;
            return self
                .client(&addr)?
                .write(fwd)
                .await
                .map_err(|s| Self::forward_error(&addr, s));
        }
        // Validate against an up-to-date state so an invalid command never
        // enters the log.
        self.read_index().await?;
        if let Err(e) = self.inner.state.read().catalog.validate(&cmd) {
            return Err(command_status(&Rejection::from(&e)));
        }
        let name = cmd.name();
        let res =
            tokio::time::timeout(self.inner.quorum_timeout, self.inner.raft.client_write(cmd))
                .await;
        match res {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{name} proposed but not committed within {:?} (no quorum?); it may still commit",
                self.inner.quorum_timeout
            ))),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(Status::unknown(format!(
                    "leadership moved to {:?} while proposing {name}; the outcome is unknown",
                    f.leader_id
                )))
            }
            Ok(Err(e)) => Err(Status::internal(format!("raft: {e}"))),
            Ok(Ok(r)) => match r.data {
                Outcome(Ok(applied)) => Ok(Response::new(pb::WriteReply {
                    log_index: r.log_id.index,
                    applied_json: serde_json::to_vec(&applied)
                        .map_err(|e| Status::internal(e.to_string()))?,
                })),
                Outcome(Err(e)) => Err(command_status(&e)),
            },
        }
    }

    async fn read(&self, req: Request<pb::ReadRequest>) -> Result<Response<pb::ReadReply>, Status> {
        let req = req.into_inner();
        if req.consistency() == pb::ReadConsistency::Linearizable {
            if let Role::Forward(addr) = self.role(req.forwarded)? {
                let mut fwd = req;
                fwd.forwarded = true;
                return self
                    .client(&addr)?
                    .read(fwd)
                    .await
                    .map_err(|s| Self::forward_error(&addr, s));
            }
            self.read_index().await?;
        }
        let s = self.inner.state.read();
        let applied = s.last_applied.map_or(0, |l| l.index);
        if req.if_newer_than > 0 && applied <= req.if_newer_than {
            return Ok(Response::new(pb::ReadReply {
                catalog_json: Vec::new(),
                applied_index: applied,
                epoch: s.catalog.assignment.epoch,
                served_by: self.inner.id,
                unchanged: true,
            }));
        }
        Ok(Response::new(pb::ReadReply {
            catalog_json: serde_json::to_vec(&s.catalog)
                .map_err(|e| Status::internal(e.to_string()))?,
            applied_index: s.last_applied.map_or(0, |l| l.index),
            epoch: s.catalog.assignment.epoch,
            served_by: self.inner.id,
            unchanged: false,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node ids start at 1"));
        }
        let warm = req
            .partitions
            .into_iter()
            .filter(|p| p.warm)
            .map(|p| p.key)
            .collect();
        self.inner.liveness.lock().beat(req.node_id, warm);
        let m = self.inner.raft.metrics().borrow().clone();
        Ok(Response::new(pb::HeartbeatReply {
            epoch: self.inner.state.read().catalog.assignment.epoch,
            leader: m.current_leader == Some(self.inner.id) && m.state == ServerState::Leader,
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let m = self.inner.raft.metrics().borrow().clone();
        let commit = self
            .inner
            .raft
            .with_raft_state(|st| st.committed.map_or(0, |c| c.index))
            .await
            .unwrap_or(0);
        let epoch = self.inner.state.read().catalog.assignment.epoch;
        Ok(Response::new(pb::StatusReply {
            id: self.inner.id,
            leader: m.current_leader.unwrap_or(0),
            term: m.current_term,
            state: format!("{:?}", m.state),
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: commit,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            members: members_of(m.membership_config.membership()),
            epoch,
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = req.into_inner();
        if req.id == 0 || req.addr.is_empty() {
            return Err(Status::invalid_argument(
                "learner needs an id ≥ 1 and an address",
            ));
        }
        if let Role::Forward(addr) = self.role(req.forwarded)? {
            let mut fwd = req;
            fwd.forwarded = true;
            return self
                .client(&addr)?
                .add_learner(fwd)
                .await
                .map_err(|s| Self::forward_error(&addr, s));
        }
        let r = self
            .inner
            .raft
            .add_learner(req.id, BasicNode { addr: req.addr }, true)
            .await
            .map_err(|e| Status::failed_precondition(format!("add learner: {e}")))?;
        Ok(Response::new(pb::MembershipReply {
            log_index: r.log_id.index,
            members: r.membership.as_ref().map(members_of).unwrap_or_default(),
        }))
    }

    async fn change_membership(
        &self,
        req: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = req.into_inner();
        if req.voters.is_empty() {
            return Err(Status::invalid_argument(
                "the group needs at least one voter",
            ));
        }
        if let Role::Forward(addr) = self.role(req.forwarded)? {
            let mut fwd = req;
            fwd.forwarded = true;
            return self
                .client(&addr)?
                .change_membership(fwd)
                .await
                .map_err(|s| Self::forward_error(&addr, s));
        }
        let voters: BTreeSet<u64> = req.voters.iter().copied().collect();
        let current = self.inner.raft.metrics().borrow().membership_config.clone();
        let known: BTreeSet<u64> = current.membership().nodes().map(|(id, _)| *id).collect();
        if let Some(id) = voters.iter().find(|id| !known.contains(id)) {
            return Err(Status::failed_precondition(format!(
                "member {id} is unknown: add it as a learner first"
            )));
        }
        // `retain = false`: voters left out are removed from the group, not kept as learners.
        let r = self
            .inner
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| Status::failed_precondition(format!("change membership: {e}")))?;
        Ok(Response::new(pb::MembershipReply {
            log_index: r.log_id.index,
            members: r.membership.as_ref().map(members_of).unwrap_or_default(),
        }))
    }
}
