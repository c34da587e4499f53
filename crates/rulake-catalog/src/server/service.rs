//! The `CatalogService` of a meta member: writes, reads, heartbeats,
//! status and membership changes from clients and other processes.
//!
//! Kept apart from [`super`] (which starts the member and serves Raft
//! traffic) because this is where a call is either answered here or passed
//! on to the leader, and where the error contract in [`super`]'s docs is
//! kept: every path that may have proposed a command must not claim to be
//! retry-safe. Reading it in one place is how that promise is checked.

use super::{retry_safe, unavailable, Inner};
use crate::chunked::{self, ChunkStream, Header};
use crate::limits::{MAX_CATALOG_MESSAGE, MAX_COMMAND_BYTES};
use crate::model::Command;
use crate::store::Outcome;
use futures::StreamExt;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::catalog_service_client::CatalogServiceClient;
use rulake_proto::internal::v1::catalog_service_server::{CatalogService, CatalogServiceServer};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The gRPC service over `inner`, ready to add to a server, with its
/// message limit set explicitly (see [`crate::limits`]).
pub(super) fn catalog_service(inner: Arc<Inner>) -> CatalogServiceServer<CatalogSvc> {
    CatalogServiceServer::new(CatalogSvc { inner })
        .max_decoding_message_size(MAX_CATALOG_MESSAGE)
        .max_encoding_message_size(MAX_CATALOG_MESSAGE)
}

/// A client of the `CatalogService` on `ch`, with the service's limits.
pub(crate) fn catalog_client(
    ch: tonic::transport::Channel,
) -> CatalogServiceClient<tonic::transport::Channel> {
    CatalogServiceClient::new(ch)
        .max_decoding_message_size(MAX_CATALOG_MESSAGE)
        .max_encoding_message_size(MAX_CATALOG_MESSAGE)
}

/// The members of `m` as status and membership replies list them.
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

/// The `CatalogService` handlers of one member.
pub(super) struct CatalogSvc {
    inner: Arc<Inner>,
}

enum Role {
    Leader,
    Forward(String),
}

impl CatalogSvc {
    fn role(&self, forwarded: bool) -> Result<Role, Status> {
        let m = self.inner.raft.metrics().borrow().clone();
        match m.current_leader {
            _ if self.inner.leads(&m) => Ok(Role::Leader),
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

    fn client(
        &self,
        addr: &str,
    ) -> Result<CatalogServiceClient<tonic::transport::Channel>, Status> {
        let mut channels = self.inner.channels.lock();
        if let Some(ch) = channels.get(addr) {
            return Ok(catalog_client(ch.clone()));
        }
        let ch = self.inner.transport.channel(addr).map_err(unavailable)?;
        channels.insert(addr.to_owned(), ch.clone());
        Ok(catalog_client(ch))
    }

    /// Pass a call on to the leader at `addr` (the request must be marked
    /// `forwarded`, so the leader does not pass it on again).
    async fn forward<T, Fut>(
        &self,
        addr: &str,
        call: impl FnOnce(CatalogServiceClient<tonic::transport::Channel>) -> Fut,
    ) -> Result<Response<T>, Status>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        call(self.client(addr)?)
            .await
            .map_err(|s| Self::forward_error(addr, s))
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

    /// What this member has applied, as a read answers it: the header and
    /// the catalog's JSON (empty when nothing was applied past
    /// `if_newer_than`). Serialised under the state lock, so a read is one
    /// applied state however it is sent.
    fn applied_json(&self, if_newer_than: u64) -> Result<(Header, Vec<u8>), Status> {
        let s = self.inner.state.read();
        let applied = s.last_applied.map_or(0, |l| l.index);
        let unchanged = if_newer_than > 0 && applied <= if_newer_than;
        let header = Header {
            applied_index: applied,
            epoch: s.catalog.assignment.epoch,
            served_by: self.inner.id,
            unchanged,
        };
        if unchanged {
            return Ok((header, Vec::new()));
        }
        let json = serde_json::to_vec(&s.catalog).map_err(|e| Status::internal(e.to_string()))?;
        Ok((header, json))
    }

    /// Forward a linearizable read to the leader, or confirm this member
    /// leads and has applied what a quorum committed. `Some` is the
    /// forwarded call's answer.
    async fn linearizable<T, Fut>(
        &self,
        req: &pb::ReadRequest,
        call: impl FnOnce(CatalogServiceClient<tonic::transport::Channel>, pb::ReadRequest) -> Fut,
    ) -> Result<Option<(String, Response<T>)>, Status>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        if req.consistency() != pb::ReadConsistency::Linearizable {
            return Ok(None);
        }
        if let Role::Forward(addr) = self.role(req.forwarded)? {
            let fwd = pb::ReadRequest {
                forwarded: true,
                ..*req
            };
            let r = self.forward(&addr, |c| call(c, fwd)).await?;
            return Ok(Some((addr, r)));
        }
        self.read_index().await?;
        Ok(None)
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
impl CatalogService for CatalogSvc {
    async fn write(
        &self,
        req: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let req = req.into_inner();
        if req.command_json.len() > MAX_COMMAND_BYTES {
            return Err(Status::invalid_argument(format!(
                "command of {} bytes; a catalog command is at most {MAX_COMMAND_BYTES} bytes",
                req.command_json.len()
            )));
        }
        let cmd: Command = serde_json::from_slice(&req.command_json)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        if let Role::Forward(addr) = self.role(req.forwarded)? {
            let fwd = pb::WriteRequest {
                forwarded: true,
                ..req
            };
            return self
                .forward(&addr, |mut c| async move { c.write(fwd).await })
                .await;
        }
        // Validate against an up-to-date state so an invalid command never
        // enters the log.
        self.read_index().await?;
        if let Err(e) = self.inner.state.read().catalog.validate(&cmd) {
            return Err(Status::from(&e));
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
                Outcome(Err(e)) => Err(Status::from(&e)),
            },
        }
    }

    type ReadChunksStream = ChunkStream;

    async fn read_chunks(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = req.into_inner();
        let forwarded = self
            .linearizable(&req, |mut c, fwd| async move { c.read_chunks(fwd).await })
            .await?;
        if let Some((addr, r)) = forwarded {
            let pieces = r
                .into_inner()
                .map(move |p| p.map_err(|s| Self::forward_error(&addr, s)));
            return Ok(Response::new(Box::pin(pieces)));
        }
        let (header, json) = self.applied_json(req.if_newer_than)?;
        Ok(Response::new(chunked::split(header, json)))
    }

    async fn read(&self, req: Request<pb::ReadRequest>) -> Result<Response<pb::ReadReply>, Status> {
        let req = req.into_inner();
        let forwarded = self
            .linearizable(&req, |mut c, fwd| async move { c.read(fwd).await })
            .await?;
        if let Some((_, r)) = forwarded {
            return Ok(r);
        }
        let (h, json) = self.applied_json(req.if_newer_than)?;
        if json.len() + 1024 > MAX_CATALOG_MESSAGE {
            return Err(Status::resource_exhausted(format!(
                "the catalog is {} bytes, more than one message carries ({MAX_CATALOG_MESSAGE}); read it with ReadChunks",
                json.len()
            )));
        }
        Ok(Response::new(pb::ReadReply {
            catalog_json: json,
            applied_index: h.applied_index,
            epoch: h.epoch,
            served_by: h.served_by,
            unchanged: h.unchanged,
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
            leader: self.inner.leads(&m),
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
            let fwd = pb::AddLearnerRequest {
                forwarded: true,
                ..req
            };
            return self
                .forward(&addr, |mut c| async move { c.add_learner(fwd).await })
                .await;
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
            let fwd = pb::ChangeMembershipRequest {
                forwarded: true,
                ..req
            };
            return self
                .forward(&addr, |mut c| async move { c.change_membership(fwd).await })
                .await;
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
