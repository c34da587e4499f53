//! Raft RPCs between members over tonic. openraft's messages travel as JSON
//! inside a protobuf envelope (see `proto/rulake/internal/v1/catalog.proto` for
//! why). All channels are built by a [`Transport`], so adding TLS (or any
//! other channel setting) changes the transport only, never the Raft code.

use crate::TypeConfig;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use rulake_proto::internal::v1::raft_service_client::RaftServiceClient;
use rulake_proto::internal::v1::RaftMessage;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest message the Raft service and its clients accept (see
/// [`crate::limits`] for what fits in it and why).
pub use crate::limits::MAX_RAFT_MESSAGE;

type EndpointFn = dyn Fn(&str) -> Result<Endpoint, String> + Send + Sync;
type ConnectFn = dyn Fn(Endpoint) -> Channel + Send + Sync;

/// Builds the gRPC channel for a peer's address. The default is plaintext
/// HTTP/2 with a connect timeout, `TCP_NODELAY` and HTTP/2 keepalive (so a
/// dead peer is noticed even on an idle connection); a mutual-TLS
/// transport keeps those settings and dials through a TLS connector
/// ([`Transport::with_connect`]).
#[derive(Clone)]
pub struct Transport {
    build: Arc<EndpointFn>,
    connect: Option<Arc<ConnectFn>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Default for Transport {
    fn default() -> Self {
        Transport::new(|addr| {
            let uri = if addr.contains("://") {
                addr.to_owned()
            } else {
                format!("http://{addr}")
            };
            Endpoint::from_shared(uri)
                .map(|e| {
                    e.connect_timeout(Duration::from_millis(500))
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(1))
                        .keep_alive_timeout(Duration::from_secs(1))
                        .keep_alive_while_idle(true)
                })
                .map_err(|e| format!("bad address {addr:?}: {e}"))
        })
    }
}

impl Transport {
    /// A transport from an endpoint builder.
    pub fn new(f: impl Fn(&str) -> Result<Endpoint, String> + Send + Sync + 'static) -> Self {
        Transport {
            build: Arc::new(f),
            connect: None,
        }
    }

    /// The same endpoints, turned into channels by `connect` (for example
    /// `Endpoint::connect_with_connector_lazy` with a TLS connector).
    pub fn with_connect(
        self,
        connect: impl Fn(Endpoint) -> Channel + Send + Sync + 'static,
    ) -> Self {
        Transport {
            connect: Some(Arc::new(connect)),
            ..self
        }
    }

    /// The endpoint for `addr`.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        (self.build)(addr)
    }

    /// A lazily connecting channel to `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let ep = self.endpoint(addr)?;
        Ok(match &self.connect {
            Some(connect) => connect(ep),
            None => ep.connect_lazy(),
        })
    }
}

/// Creates a [`PeerClient`] per target member.
#[derive(Clone, Debug, Default)]
pub struct NetworkFactory {
    transport: Transport,
}

impl NetworkFactory {
    /// A factory that connects through `transport`.
    pub fn new(transport: Transport) -> Self {
        NetworkFactory { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = self.transport.channel(&node.addr).map(|ch| {
            RaftServiceClient::new(ch)
                .max_decoding_message_size(MAX_RAFT_MESSAGE)
                .max_encoding_message_size(MAX_RAFT_MESSAGE)
        });
        PeerClient {
            target,
            addr: node.addr.clone(),
            client,
        }
    }
}

/// Raft RPCs to one member.
pub struct PeerClient {
    target: u64,
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
}

#[derive(Debug)]
struct Msg(String);
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Msg {}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |m: String| RPCError::Unreachable(Unreachable::new(&Msg(m)));
        let network = |m: String| RPCError::Network(NetworkError::new(&Msg(m)));
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(unreachable(e.clone())),
        };
        let mut client = client;
        let json = serde_json::to_vec(req).map_err(|e| network(e.to_string()))?;
        let mut request = tonic::Request::new(RaftMessage { json });
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                return Err(unreachable(format!(
                    "{} ({}): {}",
                    self.target, self.addr, s
                )))
            }
            Err(s) => return Err(network(format!("{} ({}): {}", self.target, self.addr, s))),
        };
        let result: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&reply.json).map_err(|e| network(e.to_string()))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
