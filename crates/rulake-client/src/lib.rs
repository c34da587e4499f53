//! A client for RuLake's public gRPC API (`rulake.v1`).
//!
//! The generated stubs already speak every RPC; this crate adds what each
//! caller would otherwise write again: one connection for the four
//! services, a deadline on every call, typed ids, and an ingest that turns
//! an iterator of records into the header-then-batches stream the server
//! expects, with progress, and the caller's credential on every call
//! ([`Client::with_credentials`]: an API key or a token file, sent as
//! `authorization: Bearer ...`, the header the server's auth layer reads).
//!
//! ```no_run
//! # async fn example() -> Result<(), rulake_client::ClientError> {
//! use rulake_client::{Client, Id};
//! let c = Client::connect("http://127.0.0.1:50051").await?;
//! let hits = c.search("docs", &[0.1, 0.2, 0.3], 10).await?;
//! for h in hits.hits {
//!     println!("{:?} {}", h.id, h.distance);
//! }
//! c.delete("docs", vec![Id::Num(7)]).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`] — connection, deadlines and one method per RPC (this file).
//! - [`credentials`] — what is sent to authenticate, and the interceptor.
//! - [`proto`] — the generated `rulake.v1` types, for requests the helpers
//!   do not cover.
//! - [`records`] — [`Record`]s to ingest, parsed from JSON Lines and CSV text.

pub use rulake_proto::v1 as proto;

pub mod credentials;
pub mod records;

pub use credentials::{Authorize, CredentialError, Credentials};
pub use records::Record;

use proto::admin_service_client::AdminServiceClient;
use proto::collection_service_client::CollectionServiceClient;
use proto::data_service_client::DataServiceClient;
use proto::search_service_client::SearchServiceClient;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The channel every stub uses: the connection, with the credential set on
/// each call.
type Authed = InterceptedService<Channel, Authorize>;

/// Largest message the client sends or accepts (the server's limit).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is malformed or the server cannot be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Reading the records to ingest failed; the call was cancelled and
    /// nothing was committed.
    #[error("input: {0} (the ingest was cancelled; nothing was committed)")]
    Input(String),
    /// The credential cannot be sent (an unreadable token file, a key a
    /// header cannot carry); nothing was sent.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The server answered with an error status (its message says why).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Status(s)
    }
}

impl ClientError {
    /// The gRPC status code, when the server answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// Result alias.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A vector id: RuLake keeps integer and string ids apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    /// An unsigned integer id.
    Num(u64),
    /// A string id.
    Str(String),
}

impl From<Id> for proto::VectorId {
    fn from(id: Id) -> Self {
        proto::VectorId {
            id: Some(match id {
                Id::Num(n) => proto::vector_id::Id::Num(n),
                Id::Str(s) => proto::vector_id::Id::Str(s),
            }),
        }
    }
}

impl Id {
    /// The id of a hit or record, if it carries one.
    pub fn of(v: &Option<proto::VectorId>) -> Option<Id> {
        match v.as_ref()?.id.as_ref()? {
            proto::vector_id::Id::Num(n) => Some(Id::Num(*n)),
            proto::vector_id::Id::Str(s) => Some(Id::Str(s.clone())),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

/// A connection to one RuLake server (any coordinator). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    timeout: Duration,
    auth: Authorize,
}

impl Client {
    /// Connect to `addr` (`http://host:port`), with a 30 s deadline per call.
    pub async fn connect(addr: &str) -> Result<Self> {
        let err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let channel = Endpoint::from_shared(addr.to_owned())
            .map_err(err)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(err)?;
        Ok(Client {
            channel,
            timeout: Duration::from_secs(30),
            auth: Authorize::default(),
        })
    }

    /// The same connection, sending `credentials` with every call. A token
    /// file is read here once (so a missing or empty file fails now, not at
    /// the first call) and again for every call.
    pub fn with_credentials(mut self, credentials: Credentials) -> Result<Self> {
        credentials.header()?;
        self.auth = Authorize::new(credentials);
        Ok(self)
    }

    /// The same connection with another per-call deadline (sent to the
    /// server, which stops working on the call when it passes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }

    fn collections(&self) -> CollectionServiceClient<Authed> {
        CollectionServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn searches(&self) -> SearchServiceClient<Authed> {
        SearchServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn data(&self) -> DataServiceClient<Authed> {
        DataServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    // -- collections -------------------------------------------------------

    /// Create a collection.
    pub async fn create_collection(
        &self,
        spec: proto::CollectionSpec,
    ) -> Result<proto::CollectionInfo> {
        let r = self
            .collections()
            .create_collection(self.request(proto::CreateCollectionRequest { spec: Some(spec) }))
            .await?;
        Ok(r.into_inner().info.unwrap_or_default())
    }

    /// Every collection.
    pub async fn list_collections(&self) -> Result<Vec<proto::CollectionInfo>> {
        let r = self
            .collections()
            .list_collections(self.request(proto::ListCollectionsRequest {}))
            .await?;
        Ok(r.into_inner().collections)
    }

    /// One collection (or the one an alias points at).
    pub async fn describe_collection(&self, name: &str) -> Result<proto::CollectionInfo> {
        let r = self
            .collections()
            .describe_collection(self.request(proto::DescribeCollectionRequest {
                name: name.to_owned(),
            }))
            .await?;
        Ok(r.into_inner().info.unwrap_or_default())
    }

    /// Change consistency, rerank, nprobe or replication factor.
    pub async fn alter_collection(
        &self,
        req: proto::AlterCollectionRequest,
    ) -> Result<proto::CollectionInfo> {
        let r = self
            .collections()
            .alter_collection(self.request(req))
            .await?;
        Ok(r.into_inner().info.unwrap_or_default())
    }

    /// Drop a collection.
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.collections()
            .drop_collection(self.request(proto::DropCollectionRequest {
                name: name.to_owned(),
            }))
            .await?;
        Ok(())
    }

    // -- aliases -----------------------------------------------------------

    /// Point a new alias at a collection.
    pub async fn create_alias(&self, alias: &str, collection: &str) -> Result<()> {
        self.collections()
            .create_alias(self.request(proto::CreateAliasRequest {
                alias: Some(proto::Alias {
                    alias: alias.to_owned(),
                    collection: collection.to_owned(),
                }),
            }))
            .await?;
        Ok(())
    }

    /// Remove an alias.
    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        self.collections()
            .delete_alias(self.request(proto::DeleteAliasRequest {
                alias: alias.to_owned(),
            }))
            .await?;
        Ok(())
    }

    /// Re-point aliases (`(alias, collection)` pairs) in one atomic step.
    pub async fn switch_aliases(&self, pairs: &[(&str, &str)]) -> Result<()> {
        let aliases = pairs
            .iter()
            .map(|(a, c)| proto::Alias {
                alias: (*a).to_owned(),
                collection: (*c).to_owned(),
            })
            .collect();
        self.collections()
            .switch_aliases(self.request(proto::SwitchAliasesRequest { aliases }))
            .await?;
        Ok(())
    }

    /// Every alias and its collection.
    pub async fn list_aliases(&self) -> Result<Vec<proto::Alias>> {
        let r = self
            .collections()
            .list_aliases(self.request(proto::ListAliasesRequest {}))
            .await?;
        Ok(r.into_inner().aliases)
    }

    // -- search ------------------------------------------------------------

    /// The `k` nearest neighbours of `query` with the collection's defaults.
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: u32,
    ) -> Result<proto::SearchResponse> {
        self.search_with(
            collection,
            query,
            proto::SearchParams {
                k,
                ..Default::default()
            },
        )
        .await
    }

    /// A search with explicit parameters (nprobe, rerank).
    pub async fn search_with(
        &self,
        collection: &str,
        query: &[f32],
        params: proto::SearchParams,
    ) -> Result<proto::SearchResponse> {
        let r = self
            .searches()
            .search(self.request(proto::SearchRequest {
                collection: collection.to_owned(),
                query: Some(proto::Vector {
                    values: query.to_vec(),
                }),
                params: Some(params),
            }))
            .await?;
        Ok(r.into_inner())
    }

    /// Many queries in one call, answered from one generation.
    pub async fn batch_search(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: proto::SearchParams,
    ) -> Result<proto::BatchSearchResponse> {
        let r = self
            .searches()
            .batch_search(
                self.request(proto::BatchSearchRequest {
                    collection: collection.to_owned(),
                    queries: queries
                        .iter()
                        .map(|q| proto::Vector { values: q.clone() })
                        .collect(),
                    params: Some(params),
                }),
            )
            .await?;
        Ok(r.into_inner())
    }

    /// One query over several collections of one dimension and metric.
    pub async fn federated_search(
        &self,
        collections: &[&str],
        query: &[f32],
        params: proto::SearchParams,
    ) -> Result<proto::FederatedSearchResponse> {
        let r = self
            .searches()
            .federated_search(self.request(proto::FederatedSearchRequest {
                collections: collections.iter().map(|c| (*c).to_owned()).collect(),
                query: Some(proto::Vector {
                    values: query.to_vec(),
                }),
                params: Some(params),
            }))
            .await?;
        Ok(r.into_inner())
    }

    // -- data --------------------------------------------------------------

    /// Stream `records` into a managed collection in batches of
    /// `batch_size`, calling `progress` with the count sent so far. All of
    /// it becomes visible as one generation when the stream ends, or none
    /// of it on any error.
    pub async fn ingest<I>(
        &self,
        collection: &str,
        records: I,
        batch_size: usize,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<proto::IngestResponse>
    where
        I: IntoIterator,
        I::Item: Into<Record>,
        I::IntoIter: Send + 'static,
    {
        let records = futures::stream::iter(records.into_iter().map(|r| Ok(r.into())));
        self.ingest_stream(collection, records, batch_size, progress)
            .await
    }

    /// [`Client::ingest`] from a fallible stream (a file being parsed). An
    /// `Err` item cancels the call, so the server commits nothing, and is
    /// returned as [`ClientError::Input`].
    pub async fn ingest_stream<S>(
        &self,
        collection: &str,
        records: S,
        batch_size: usize,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<proto::IngestResponse>
    where
        S: futures::Stream<Item = Result<Record, String>> + Send + 'static,
    {
        use futures::StreamExt;
        use std::sync::{Arc, Mutex};
        let header = proto::IngestRequest {
            message: Some(proto::ingest_request::Message::Header(
                proto::IngestHeader {
                    collection: collection.to_owned(),
                },
            )),
        };
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let notify = Arc::new(tokio::sync::Notify::new());
        let chunks = records.chunks(batch_size.max(1));
        let (f, n) = (failed.clone(), notify.clone());
        let batches = futures::stream::unfold(
            (Box::pin(chunks), 0u64, progress),
            move |(mut chunks, mut sent, mut progress)| {
                let (f, n) = (f.clone(), n.clone());
                async move {
                    let chunk = chunks.next().await?;
                    let mut records = Vec::with_capacity(chunk.len());
                    for item in chunk {
                        match item {
                            Ok(r) => records.push(proto::Record {
                                id: Some(r.id.into()),
                                vector: Some(proto::Vector { values: r.vector }),
                                columns: r.columns.into_iter().collect(),
                            }),
                            Err(e) => {
                                // Never end the stream: an ended stream
                                // commits. The caller cancels the call.
                                *f.lock().expect("not poisoned") = Some(e);
                                n.notify_one();
                                futures::future::pending::<()>().await;
                            }
                        }
                    }
                    sent += records.len() as u64;
                    progress(sent);
                    let msg = proto::IngestRequest {
                        message: Some(proto::ingest_request::Message::Batch(proto::IngestBatch {
                            records,
                        })),
                    };
                    Some((msg, (chunks, sent, progress)))
                }
            },
        );
        let stream = futures::stream::once(async { header }).chain(batches);
        let mut data = self.data();
        let call = data.ingest(self.request(stream));
        tokio::select! {
            r = call => Ok(r?.into_inner()),
            _ = notify.notified() => {
                let e = failed.lock().expect("not poisoned").take().unwrap_or_default();
                Err(ClientError::Input(e))
            }
        }
    }

    /// Delete ids; returns how many were newly deleted.
    pub async fn delete(&self, collection: &str, ids: Vec<Id>) -> Result<u64> {
        let r = self
            .data()
            .delete(self.request(proto::DeleteRequest {
                collection: collection.to_owned(),
                ids: ids.into_iter().map(Into::into).collect(),
            }))
            .await?;
        Ok(r.into_inner().tombstones_added)
    }

    /// Check a collection's source now; returns the generation and whether
    /// it changed.
    pub async fn refresh(&self, collection: &str) -> Result<(String, bool)> {
        let r = self
            .data()
            .refresh(self.request(proto::RefreshRequest {
                collection: collection.to_owned(),
            }))
            .await?
            .into_inner();
        Ok((r.generation, r.changed))
    }

    /// What the generation a collection serves is made of (`generation`
    /// empty: whichever it serves; else it must be that one).
    pub async fn describe_generation(
        &self,
        name: &str,
        generation: &str,
    ) -> Result<proto::DescribeGenerationResponse> {
        let r = self
            .collections()
            .describe_generation(self.request(proto::DescribeGenerationRequest {
                name: name.to_owned(),
                generation: generation.to_owned(),
            }))
            .await?;
        Ok(r.into_inner())
    }

    /// Rewrite a managed collection's files without its deleted rows and
    /// retire their tombstones (see `CompactRequest`), calling `progress`
    /// as the server reports it; returns the summary.
    pub async fn compact(
        &self,
        collection: &str,
        mut progress: impl FnMut(&proto::CompactProgress),
    ) -> Result<proto::CompactSummary> {
        let stream = self
            .data()
            .compact(self.request(proto::CompactRequest {
                collection: collection.to_owned(),
            }))
            .await?
            .into_inner();
        until_done(stream, |p| p.done.take(), &mut progress, "compaction").await
    }

    // -- admin -------------------------------------------------------------

    /// Write a backup to `to` (see `CreateBackupRequest`), calling
    /// `progress` as the server reports it; returns the summary.
    pub async fn create_backup(
        &self,
        to: &str,
        mut progress: impl FnMut(&proto::BackupProgress),
    ) -> Result<proto::BackupSummary> {
        let stream = self
            .admin()
            .create_backup(self.request(proto::CreateBackupRequest { to: to.to_owned() }))
            .await?
            .into_inner();
        until_done(stream, |p| p.done.take(), &mut progress, "backup").await
    }

    /// Restore the backup at `from` into the server's empty catalog (see
    /// `RestoreBackupRequest`), calling `progress` as the server checks
    /// and copies its files; returns the summary.
    pub async fn restore_backup(
        &self,
        from: &str,
        mut progress: impl FnMut(&proto::BackupProgress),
    ) -> Result<proto::BackupSummary> {
        let stream = self
            .admin()
            .restore_backup(self.request(proto::RestoreBackupRequest {
                from: from.to_owned(),
            }))
            .await?
            .into_inner();
        until_done(stream, |p| p.done.take(), &mut progress, "restore").await
    }

    /// Cache statistics per node.
    pub async fn cache_stats(&self) -> Result<proto::CacheStatsResponse> {
        let r = self
            .admin()
            .cache_stats(self.request(proto::CacheStatsRequest {}))
            .await?;
        Ok(r.into_inner())
    }

    /// The meta group, the assignment epoch and the shard nodes.
    pub async fn cluster_status(&self) -> Result<proto::ClusterStatusResponse> {
        let r = self
            .admin()
            .cluster_status(self.request(proto::ClusterStatusRequest {}))
            .await?;
        Ok(r.into_inner())
    }

    /// Move every partition off shard node `node_id` and return once they
    /// are warm elsewhere (the node can then stop without a partial answer).
    pub async fn drain_shard(&self, node_id: &str) -> Result<proto::DrainShardResponse> {
        let r = self
            .admin()
            .drain_shard(self.request(proto::DrainShardRequest {
                node_id: node_id.to_owned(),
            }))
            .await?;
        Ok(r.into_inner())
    }

    /// Put shard node `node_id` (back) into placement.
    pub async fn admit_shard(&self, node_id: &str) -> Result<proto::AdmitShardResponse> {
        let r = self
            .admin()
            .admit_shard(self.request(proto::AdmitShardRequest {
                node_id: node_id.to_owned(),
            }))
            .await?;
        Ok(r.into_inner())
    }
}

/// Read a long call's reply (compaction, backup): `progress` for every
/// message until the one `done` takes a summary from, which is returned;
/// a stream that ends without one is UNAVAILABLE, naming `what`.
async fn until_done<M, S>(
    mut stream: tonic::Streaming<M>,
    done: impl Fn(&mut M) -> Option<S>,
    progress: &mut impl FnMut(&M),
    what: &str,
) -> Result<S> {
    while let Some(mut m) = stream.message().await? {
        if let Some(summary) = done(&mut m) {
            return Ok(summary);
        }
        progress(&m);
    }
    Err(ClientError::Status(tonic::Status::unavailable(format!(
        "the {what}'s progress stream ended without its summary"
    ))))
}
