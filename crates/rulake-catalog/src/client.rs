//! A catalog client for any set of members. It never needs to know the
//! leader (members forward), bounds every call with a deadline, and retries
//! a write on another member only when the failure proves the write was
//! never proposed, so a retried write cannot land twice. A failure with an
//! unknown outcome is reported as such ([`CatalogError::Indeterminate`]).
//!
//! Reads are streamed (`ReadChunks`) so the catalog may outgrow any one
//! message; a member of an earlier version that has no `ReadChunks` is
//! read with the one-message `Read`. A command larger than a member
//! accepts is refused here, before it is sent, so it is never reported as
//! a write of unknown outcome.

use crate::chunked::{self, Header};
use crate::error::{CatalogError, CommandError, Rejection};
use crate::limits::MAX_COMMAND_BYTES;
use crate::model::{Applied, Catalog, Command};
use crate::network::Transport;
use crate::server::{catalog_client, connect_failure, retry_safe};
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::catalog_service_client::CatalogServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Status;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Read-index through the leader: reflects every write acknowledged
    /// before the read started.
    Linearizable,
    /// Whatever the member called has applied: cheap, possibly stale.
    Local,
}

/// A catalog read.
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// The catalog.
    pub catalog: Catalog,
    /// Raft log index it reflects.
    pub applied_index: u64,
    /// Its placement epoch.
    pub epoch: u64,
    /// Member that answered.
    pub served_by: u64,
}

/// A client of the meta group.
#[derive(Clone, Debug)]
pub struct CatalogClient {
    members: Vec<(String, CatalogServiceClient<Channel>)>,
    /// Deadline of one call to one member.
    pub call_timeout: Duration,
    /// How long to keep trying other members on retry-safe failures.
    pub total_timeout: Duration,
}

impl CatalogClient {
    /// A client for the members at `addrs` (any subset of the group).
    pub fn new(addrs: &[String]) -> Result<Self, CatalogError> {
        Self::with_transport(addrs, &Transport::default())
    }

    /// A client whose channels are built by `transport`.
    pub fn with_transport(addrs: &[String], transport: &Transport) -> Result<Self, CatalogError> {
        if addrs.is_empty() {
            return Err(CatalogError::InvalidArgument(
                "no member address given".into(),
            ));
        }
        let members = addrs
            .iter()
            .map(|a| {
                transport
                    .channel(a)
                    .map(|ch| (a.clone(), catalog_client(ch)))
                    .map_err(CatalogError::InvalidArgument)
            })
            .collect::<Result<_, _>>()?;
        Ok(CatalogClient {
            members,
            call_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
        })
    }

    /// Member addresses this client knows.
    pub fn addrs(&self) -> Vec<String> {
        self.members.iter().map(|(a, _)| a.clone()).collect()
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.call_timeout);
        r
    }

    /// Try members in turn, starting with `first`, while failures are retry-safe.
    async fn each<T, F, Fut>(
        &self,
        first: usize,
        safe_to_retry_all: bool,
        per_call: Duration,
        mut f: F,
    ) -> Result<T, CatalogError>
    where
        F: FnMut(CatalogServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let start = Instant::now();
        let mut i = first;
        loop {
            let (addr, client) = &self.members[i % self.members.len()];
            let res =
                tokio::time::timeout(per_call + Duration::from_millis(500), f(client.clone()))
                    .await;
            let status = match res {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("client-side deadline"),
            };
            if let Some(r) = Rejection::from_status(&status) {
                return Err(CatalogError::Refused(r));
            }
            let retry = retry_safe(&status) || connect_failure(&status) || safe_to_retry_all;
            if !retry {
                return Err(CatalogError::Indeterminate(format!(
                    "{addr}: {:?}: {}",
                    status.code(),
                    status.message()
                )));
            }
            let last = format!("{addr}: {}", status.message());
            i += 1;
            if start.elapsed() >= self.total_timeout {
                return Err(CatalogError::Unavailable(format!(
                    "no member could serve the call within {:?} (no leader or no quorum); last error: {last}",
                    self.total_timeout
                )));
            }
            if i % self.members.len() == first % self.members.len() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Validate and commit `cmd`; returns its log index and outcome.
    pub async fn write(&self, cmd: &Command) -> Result<(u64, Applied), CatalogError> {
        self.write_via(0, cmd).await
    }

    /// Like [`CatalogClient::write`], trying member `first` first.
    pub async fn write_via(
        &self,
        first: usize,
        cmd: &Command,
    ) -> Result<(u64, Applied), CatalogError> {
        let json = serde_json::to_vec(cmd)?;
        if json.len() > MAX_COMMAND_BYTES {
            return Err(CatalogError::Rejected(CommandError::InvalidField {
                field: "command",
                reason: format!(
                    "{} bytes encoded; a catalog command is at most {MAX_COMMAND_BYTES} bytes",
                    json.len()
                ),
            }));
        }
        let reply = self
            .each(first, false, self.call_timeout, |mut c| {
                let req = self.request(pb::WriteRequest {
                    command_json: json.clone(),
                    forwarded: false,
                });
                async move { c.write(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let applied = serde_json::from_slice(&reply.applied_json)?;
        Ok((reply.log_index, applied))
    }

    /// Read the catalog.
    pub async fn read(&self, consistency: ReadConsistency) -> Result<ReadResult, CatalogError> {
        self.read_via(0, consistency).await
    }

    /// Read the catalog, asking member `first` first.
    pub async fn read_via(
        &self,
        first: usize,
        consistency: ReadConsistency,
    ) -> Result<ReadResult, CatalogError> {
        self.read_newer(first, consistency, 0)
            .await?
            .ok_or_else(|| {
                CatalogError::Transport("a member answered a full read with \"unchanged\"".into())
            })
    }

    /// Read the catalog only if the member answering has applied past
    /// `if_newer_than` (`None`: nothing new). Followers poll with this.
    pub async fn read_newer(
        &self,
        first: usize,
        consistency: ReadConsistency,
        if_newer_than: u64,
    ) -> Result<Option<ReadResult>, CatalogError> {
        let c = match consistency {
            ReadConsistency::Linearizable => pb::ReadConsistency::Linearizable,
            ReadConsistency::Local => pb::ReadConsistency::Local,
        };
        let (header, json) = self
            .each(first, true, self.call_timeout, |cl| {
                let req = self.request(pb::ReadRequest {
                    consistency: c as i32,
                    forwarded: false,
                    if_newer_than,
                });
                read_one(cl, req)
            })
            .await?;
        let Some(json) = json else {
            return Ok(None);
        };
        Ok(Some(ReadResult {
            catalog: serde_json::from_slice(&json)?,
            applied_index: header.applied_index,
            epoch: header.epoch,
            served_by: header.served_by,
        }))
    }

    /// Send a shard heartbeat to every member (each keeps its own view of
    /// liveness, so a new leader needs no warm-up). Succeeds when at least
    /// one member took it.
    pub async fn heartbeat(&self, beat: pb::HeartbeatRequest) -> Result<(), CatalogError> {
        let calls = self.members.iter().map(|(addr, c)| {
            let mut c = c.clone();
            let req = self.request(beat.clone());
            async move {
                c.heartbeat(req)
                    .await
                    .map_err(|s| format!("{addr}: {}", s.message()))
            }
        });
        let results = futures::future::join_all(calls).await;
        if results.iter().any(|r| r.is_ok()) {
            return Ok(());
        }
        let errs: Vec<String> = results.into_iter().filter_map(|r| r.err()).collect();
        Err(CatalogError::Transport(format!(
            "no meta member took the heartbeat: {}",
            errs.join("; ")
        )))
    }

    /// The status of member `i` (no retries on other members).
    /// The group's status as the first member that answers sees it,
    /// trying every member in turn: a member that is down must not hide
    /// the status of the rest (the admin API's `ClusterStatus` used to ask
    /// member 1 only).
    pub async fn status(&self) -> Result<pb::StatusReply, CatalogError> {
        self.each(0, true, self.call_timeout, |mut c| {
            let req = self.request(pb::StatusRequest {});
            async move { c.status(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// The status of member `i` alone.
    pub async fn status_of(&self, i: usize) -> Result<pb::StatusReply, CatalogError> {
        let (addr, c) = &self.members[i];
        let mut c = c.clone();
        c.status(self.request(pb::StatusRequest {}))
            .await
            .map(|r| r.into_inner())
            .map_err(|s| CatalogError::Transport(format!("{addr}: {}", s.message())))
    }

    /// Add a learner (through the leader).
    pub async fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> Result<pb::MembershipReply, CatalogError> {
        // Catching up may take a while: allow longer than a normal call.
        let per_call = self.call_timeout * 6;
        self.each(0, false, per_call, |mut c| {
            let mut req = tonic::Request::new(pb::AddLearnerRequest {
                id,
                addr: addr.to_owned(),
                forwarded: false,
            });
            req.set_timeout(per_call);
            async move { c.add_learner(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Set the voters (through the leader); voters left out are removed.
    pub async fn change_membership(
        &self,
        voters: &[u64],
    ) -> Result<pb::MembershipReply, CatalogError> {
        self.each(0, false, self.call_timeout, |mut c| {
            let req = self.request(pb::ChangeMembershipRequest {
                voters: voters.to_vec(),
                forwarded: false,
            });
            async move { c.change_membership(req).await.map(|r| r.into_inner()) }
        })
        .await
    }
}

/// One read from one member: streamed, or in one message from a member
/// that predates `ReadChunks`.
async fn read_one(
    mut cl: CatalogServiceClient<Channel>,
    req: tonic::Request<pb::ReadRequest>,
) -> Result<(Header, Option<Vec<u8>>), Status> {
    let timeout = req.metadata().clone();
    let msg = *req.get_ref();
    match cl.read_chunks(req).await {
        Ok(r) => chunked::join(r.into_inner()).await,
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            let mut req = tonic::Request::new(msg);
            *req.metadata_mut() = timeout;
            let r = cl.read(req).await?.into_inner();
            let header = Header {
                applied_index: r.applied_index,
                epoch: r.epoch,
                served_by: r.served_by,
                unchanged: r.unchanged,
            };
            Ok((header, (!r.unchanged).then_some(r.catalog_json)))
        }
        Err(s) => Err(s),
    }
}
