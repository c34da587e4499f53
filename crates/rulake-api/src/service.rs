//! The `rulake.v1` services over one coordinator.
//!
//! Handlers are thin: decode, call the coordinator within the request's
//! deadline, encode, and convert errors in [`crate::status`]. Limits that
//! protect the server (batch size, k) are enforced here, before any work.

use crate::convert::*;
use crate::status::{ingest_too_large, invalid, oversized, to_status};
use rulake_auth::{authorize, Perm};
use rulake_catalog::CollectionChanges;
use rulake_coordinator::Coordinator;
use rulake_proto::v1 as pb;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Server-side limits, each answered with a clear status code.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Queries in one `BatchSearch` (`INVALID_ARGUMENT` beyond it).
    pub max_batch: usize,
    /// Largest `k` (`INVALID_ARGUMENT` beyond it).
    pub max_k: usize,
    /// Upper bound on any request's run time; a client's shorter deadline
    /// (`grpc-timeout`) applies first. Past it: `DEADLINE_EXCEEDED`.
    pub request_timeout: Duration,
    /// Largest message accepted or sent (`RESOURCE_EXHAUSTED` beyond it).
    pub max_message_bytes: usize,
    /// Calls one client connection may have in flight; the next one gets
    /// `RESOURCE_EXHAUSTED` at once (0: no limit). Enforced by
    /// [`crate::per_connection_limit`], a layer of the server.
    pub max_concurrent_per_connection: usize,
    /// Records in one `Ingest` stream (`RESOURCE_EXHAUSTED` beyond it, and
    /// nothing of the stream is committed).
    pub max_ingest_records: u64,
    /// Vector and id bytes in one `Ingest` stream (as for records).
    pub max_ingest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1024,
            max_k: rulake_engine::MAX_K,
            request_timeout: Duration::from_secs(30),
            max_message_bytes: crate::MAX_MESSAGE_BYTES,
            max_concurrent_per_connection: crate::limit::MAX_CONCURRENT_PER_CONNECTION,
            max_ingest_records: MAX_INGEST_RECORDS,
            max_ingest_bytes: MAX_INGEST_BYTES,
        }
    }
}

/// Default for [`Limits::max_ingest_records`]: an ingest buffers at most a
/// file of rows, but remembers every id it was given (to refuse repeats),
/// so the stream's length bounds its memory; bigger loads are several
/// ingests (or an external source).
pub const MAX_INGEST_RECORDS: u64 = 10_000_000;

/// Default for [`Limits::max_ingest_bytes`]: 10 M vectors of 256 floats.
pub const MAX_INGEST_BYTES: u64 = 10 << 30;

/// The public API over one coordinator: every `rulake.v1` service.
#[derive(Clone)]
pub struct Api {
    coord: Coordinator,
    limits: Limits,
}

/// The deadline of a request: its `grpc-timeout`, capped by the server's.
/// A client's deadline is cut by a small margin so the handler answers
/// `DEADLINE_EXCEEDED` itself, naming the call, before the transport's own
/// timer cancels the call with a bare `CANCELLED`.
fn deadline_of<T>(req: &Request<T>, cap: Duration) -> Duration {
    req.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |d| {
            let margin = (d / 20).min(Duration::from_millis(50));
            (d - margin).min(cap)
        })
}

/// `grpc-timeout` is digits followed by one unit letter (H M S m u n).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Run `work` within `deadline`; past it the work is dropped (an ingest
/// cleans up its files, a load is abandoned) and the caller gets
/// `DEADLINE_EXCEEDED`.
async fn within<T>(
    deadline: Duration,
    what: &str,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{what} did not finish within the deadline of {deadline:?}"
        ))),
    }
}

impl Api {
    /// Serve `coord` with `limits`.
    pub fn new(coord: Coordinator, limits: Limits) -> Self {
        Api { coord, limits }
    }

    /// The coordinator behind the API.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coord
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn check_k(&self, params: &rulake_types::SearchParams) -> Result<(), Status> {
        if params.k == 0 || params.k > self.limits.max_k {
            return Err(invalid(format!(
                "k must be between 1 and {}, got {}",
                self.limits.max_k, params.k
            )));
        }
        Ok(())
    }

    /// Name the call's collection for the per-collection metrics: the
    /// collection an alias stands for, or the name as given (recorded as
    /// unknown when no such collection exists, so labels stay bounded).
    fn label(&self, name: &str) {
        match self.coord.resolve(name) {
            Ok(target) => rulake_metrics::set_collection(&target),
            Err(_) => rulake_metrics::set_collection(name),
        }
    }

    fn info(&self, name: &str) -> Result<pb::CollectionInfo, Status> {
        self.coord.describe(name).map(view_to).map_err(to_status)
    }
}

#[tonic::async_trait]
impl pb::collection_service_server::CollectionService for Api {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        let ext = req.extensions().clone();
        let spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("spec is required"))?;
        authorize(&ext, Perm::Admin, &spec.name)?;
        let def = def_from(spec)?;
        let name = def.record.name.clone();
        let view = within(deadline, "CreateCollection", async {
            self.coord.create_collection(def).await.map_err(to_status)
        })
        .await?;
        self.label(&name);
        Ok(Response::new(pb::CreateCollectionResponse {
            info: Some(view_to(view)),
        }))
    }

    async fn drop_collection(
        &self,
        req: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Admin, &req.get_ref().name)?;
        let name = req.into_inner().name;
        self.label(&name);
        within(deadline, "DropCollection", async {
            self.coord.drop_collection(&name).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::DropCollectionResponse {}))
    }

    async fn list_collections(
        &self,
        req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        // Only what the caller may read: the rest stays unseen.
        let collections = self
            .coord
            .list()
            .into_iter()
            .filter(|v| authorize(req.extensions(), Perm::Read, &v.record.name).is_ok())
            .map(view_to)
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn describe_collection(
        &self,
        req: Request<pb::DescribeCollectionRequest>,
    ) -> Result<Response<pb::DescribeCollectionResponse>, Status> {
        authorize(req.extensions(), Perm::Read, &req.get_ref().name)?;
        let name = req.into_inner().name;
        self.label(&name);
        Ok(Response::new(pb::DescribeCollectionResponse {
            info: Some(self.info(&name)?),
        }))
    }

    async fn alter_collection(
        &self,
        req: Request<pb::AlterCollectionRequest>,
    ) -> Result<Response<pb::AlterCollectionResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Admin, &req.get_ref().name)?;
        let r = req.into_inner();
        self.label(&r.name);
        let changes = CollectionChanges {
            replication: r.replication_factor,
            consistency: match r.consistency {
                Some(c) => Some(consistency_from(Some(c))?),
                None => None,
            },
            rerank: r.rerank,
            nprobe: r.nprobe,
        };
        let view = within(deadline, "AlterCollection", async {
            self.coord
                .alter_collection(&r.name, changes)
                .await
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::AlterCollectionResponse {
            info: Some(view_to(view)),
        }))
    }

    async fn create_alias(
        &self,
        req: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        let ext = req.extensions().clone();
        let a = req
            .into_inner()
            .alias
            .ok_or_else(|| invalid("alias is required"))?;
        authorize(&ext, Perm::Admin, &a.alias)?;
        authorize(&ext, Perm::Admin, &a.collection)?;
        within(deadline, "CreateAlias", async {
            self.coord
                .create_alias(&a.alias, &a.collection)
                .await
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::CreateAliasResponse {}))
    }

    async fn delete_alias(
        &self,
        req: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Admin, &req.get_ref().alias)?;
        let alias = req.into_inner().alias;
        within(deadline, "DeleteAlias", async {
            self.coord.delete_alias(&alias).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::DeleteAliasResponse {}))
    }

    async fn switch_aliases(
        &self,
        req: Request<pb::SwitchAliasesRequest>,
    ) -> Result<Response<pb::SwitchAliasesResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        let mut switches = BTreeMap::new();
        let ext = req.extensions().clone();
        for a in req.into_inner().aliases {
            authorize(&ext, Perm::Admin, &a.alias)?;
            authorize(&ext, Perm::Admin, &a.collection)?;
            if switches.insert(a.alias.clone(), a.collection).is_some() {
                return Err(invalid(format!("alias {:?} appears twice", a.alias)));
            }
        }
        within(deadline, "SwitchAliases", async {
            self.coord.switch_aliases(switches).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::SwitchAliasesResponse {}))
    }

    async fn list_aliases(
        &self,
        req: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let aliases = self
            .coord
            .aliases()
            .into_iter()
            .filter(|(a, _)| authorize(req.extensions(), Perm::Read, a).is_ok())
            .map(|(alias, collection)| pb::Alias { alias, collection })
            .collect();
        Ok(Response::new(pb::ListAliasesResponse { aliases }))
    }
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Read, &req.get_ref().collection)?;
        let r = req.into_inner();
        self.label(&r.collection);
        let query = query_from(r.query)?;
        let params = params_from(r.params)?;
        self.check_k(&params)?;
        let by = Instant::now() + deadline;
        let a = within(deadline, "Search", async {
            self.coord
                .search(&r.collection, &query, params, by)
                .await
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::SearchResponse {
            hits: a.hits.into_iter().map(hit_to).collect(),
            generation: a.generation.0,
            partial: a.partitions_answered < a.partitions_total,
            partitions_answered: a.partitions_answered,
            partitions_total: a.partitions_total,
            loading_generation: a.loading.map(|g| g.0).unwrap_or_default(),
        }))
    }

    async fn batch_search(
        &self,
        req: Request<pb::BatchSearchRequest>,
    ) -> Result<Response<pb::BatchSearchResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Read, &req.get_ref().collection)?;
        let r = req.into_inner();
        self.label(&r.collection);
        if r.queries.len() > self.limits.max_batch {
            return Err(invalid(format!(
                "a batch holds at most {} queries, got {}",
                self.limits.max_batch,
                r.queries.len()
            )));
        }
        let params = params_from(r.params)?;
        self.check_k(&params)?;
        let queries: Vec<Vec<f32>> = r.queries.into_iter().map(|v| v.values).collect();
        let by = Instant::now() + deadline;
        let answers = within(deadline, "BatchSearch", async {
            self.coord
                .batch_search(&r.collection, &queries, params, by)
                .await
                .map_err(to_status)
        })
        .await?;
        let (generation, loading, answered, total) = answers
            .first()
            .map(|a| {
                (
                    a.generation.0.clone(),
                    a.loading.clone().map(|g| g.0).unwrap_or_default(),
                    a.partitions_answered,
                    a.partitions_total,
                )
            })
            .unwrap_or_default();
        Ok(Response::new(pb::BatchSearchResponse {
            results: answers
                .into_iter()
                .map(|a| pb::batch_search_response::QueryResult {
                    hits: a.hits.into_iter().map(hit_to).collect(),
                })
                .collect(),
            generation,
            partial: answered < total,
            partitions_answered: answered,
            partitions_total: total,
            loading_generation: loading,
        }))
    }

    async fn federated_search(
        &self,
        req: Request<pb::FederatedSearchRequest>,
    ) -> Result<Response<pb::FederatedSearchResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        for c in &req.get_ref().collections {
            authorize(req.extensions(), Perm::Read, c)?;
        }
        let r = req.into_inner();
        let query = query_from(r.query)?;
        let params = params_from(r.params)?;
        self.check_k(&params)?;
        let by = Instant::now() + deadline;
        let a = within(deadline, "FederatedSearch", async {
            self.coord
                .federated_search(&r.collections, &query, params, by)
                .await
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::FederatedSearchResponse {
            hits: a
                .hits
                .into_iter()
                .map(|h| pb::FederatedHit {
                    collection: h.collection,
                    generation: h.generation.0,
                    id: Some(id_to(h.id)),
                    distance: h.distance,
                })
                .collect(),
            generations: a.generations.into_iter().map(|(k, g)| (k, g.0)).collect(),
            loading_generations: a.loading.into_iter().map(|(k, g)| (k, g.0)).collect(),
            partial: a.partitions_answered < a.partitions_total,
            partitions_answered: a.partitions_answered,
            partitions_total: a.partitions_total,
        }))
    }
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Api {
    async fn cache_stats(
        &self,
        req: Request<pb::CacheStatsRequest>,
    ) -> Result<Response<pb::CacheStatsResponse>, Status> {
        authorize(req.extensions(), Perm::Admin, CLUSTER)?;
        let s = self.coord.engine().cache_stats();
        let stats = pb::CacheStats {
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            refused: s.refused,
            builds: s.builds,
            incremental_builds: s.incremental_builds,
            build_seconds: s.build_seconds,
            disk_loads: s.disk_loads,
            errors: s.errors.len() as u64,
            partitions: s.partitions as u32,
            bytes: s.bytes as u64,
            budget_bytes: s.budget_bytes as u64,
        };
        Ok(Response::new(pb::CacheStatsResponse {
            nodes: [(LOCAL_NODE.to_string(), stats)].into_iter().collect(),
        }))
    }

    async fn cluster_status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        authorize(req.extensions(), Perm::Admin, CLUSTER)?;
        let deadline = deadline_of(&req, self.limits.request_timeout);
        let st = within(deadline, "ClusterStatus", async {
            self.coord
                .meta()
                .status_of(0)
                .await
                .map_err(|e| Status::unavailable(format!("meta status: {e}")))
        })
        .await?;
        let cat = self.coord.catalog();
        let (routing_epoch, routes) = match self.coord.router() {
            Some(router) => {
                let (epoch, table) = router.route_table();
                let routes = table
                    .into_iter()
                    .flat_map(|(collection, routes)| {
                        routes.into_iter().map(move |r| pb::PartitionRoute {
                            collection: collection.clone(),
                            partition: r.partition,
                            replicas: r.replicas.iter().map(u64::to_string).collect(),
                            warm: r.warm.iter().map(u64::to_string).collect(),
                        })
                    })
                    .collect();
                (epoch, routes)
            }
            None => (0, Vec::new()),
        };
        let shards = match self.coord.router() {
            Some(router) => {
                let states = router.shard_states();
                cat.nodes
                    .values()
                    .map(|n| {
                        let assigned = cat
                            .assignment
                            .partitions
                            .values()
                            .filter(|ns| ns.contains(&n.id))
                            .count() as u32;
                        let (live, warm) = states
                            .iter()
                            .find(|s| s.0 == n.id)
                            .map_or((false, 0), |s| (s.2, s.3));
                        pb::ShardNode {
                            id: n.id.to_string(),
                            address: n.addr.clone(),
                            live,
                            partitions_assigned: assigned,
                            partitions_warm: warm,
                            cache_bytes: 0,
                            cache_budget_bytes: n.capacity_bytes,
                        }
                    })
                    .collect()
            }
            None => {
                let cache = self.coord.engine().cache_stats();
                let (assigned, warm) = cat.collections.values().fold((0, 0), |(a, w), c| {
                    let warm = self
                        .coord
                        .engine()
                        .describe(&c.name)
                        .map_or(0, |i| i.partitions_warm);
                    (a + c.partitions, w + warm)
                });
                vec![pb::ShardNode {
                    id: LOCAL_NODE.into(),
                    address: String::new(),
                    live: true,
                    partitions_assigned: assigned,
                    partitions_warm: warm,
                    cache_bytes: cache.bytes as u64,
                    cache_budget_bytes: cache.budget_bytes as u64,
                }]
            }
        };
        Ok(Response::new(pb::ClusterStatusResponse {
            members: st
                .members
                .into_iter()
                .map(|m| pb::MetaMember {
                    id: m.id,
                    address: m.addr,
                    voter: m.voter,
                })
                .collect(),
            leader_id: st.leader,
            term: st.term,
            commit_index: st.commit_index,
            applied_index: st.applied_index,
            assignment_epoch: st.epoch,
            shards,
            routing_epoch,
            routes,
        }))
    }

    async fn drain_shard(
        &self,
        req: Request<pb::DrainShardRequest>,
    ) -> Result<Response<pb::DrainShardResponse>, Status> {
        authorize(req.extensions(), Perm::Admin, CLUSTER)?;
        let deadline = deadline_of(&req, self.limits.request_timeout);
        single_process(&self.coord)?;
        let node = node_id(&req.get_ref().node_id)?;
        let (moved, epoch) = within(deadline, "DrainShard", async {
            self.coord.drain(node).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::DrainShardResponse {
            partitions_moved: moved,
            assignment_epoch: epoch,
        }))
    }

    async fn admit_shard(
        &self,
        req: Request<pb::AdmitShardRequest>,
    ) -> Result<Response<pb::AdmitShardResponse>, Status> {
        authorize(req.extensions(), Perm::Admin, CLUSTER)?;
        let deadline = deadline_of(&req, self.limits.request_timeout);
        single_process(&self.coord)?;
        let node = node_id(&req.get_ref().node_id)?;
        let (assigned, epoch) = within(deadline, "AdmitShard", async {
            self.coord.admit(node).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::AdmitShardResponse {
            partitions_assigned: assigned,
            assignment_epoch: epoch,
        }))
    }
}

/// Placement calls need shard nodes: a single-process server has none.
fn single_process(coord: &Coordinator) -> Result<(), Status> {
    if coord.router().is_none() {
        return Err(Status::failed_precondition(
            "this server runs every role in one process; there are no shard nodes to drain or admit (run `rulake coordinator` over `rulake shard` nodes)",
        ));
    }
    Ok(())
}

fn node_id(s: &str) -> Result<u64, Status> {
    rulake_coordinator::parse_node_id(s).ok_or_else(|| {
        invalid(format!(
            "node_id {s:?} is not a shard node id (a number ≥ 1, or a StatefulSet pod name ending in -<ordinal>)"
        ))
    })
}

/// What a record counts against [`Limits::max_ingest_bytes`]: its vector
/// and its id as stored.
fn record_bytes(id: &rulake_types::VectorId, v: &[f32]) -> u64 {
    let id = match id {
        rulake_types::VectorId::U64(_) => 8,
        rulake_types::VectorId::Str(s) => s.len(),
    };
    (v.len() * 4 + id) as u64
}

/// What cluster-wide admin calls are authorized against: only a grant
/// matching every name (`admin:*`) covers it.
const CLUSTER: &str = "*";

/// The shard node of a single-process server, as admin answers name it.
const LOCAL_NODE: &str = "local";

#[tonic::async_trait]
impl pb::data_service_server::DataService for Api {
    async fn ingest(
        &self,
        req: Request<tonic::Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        let ext = req.extensions().clone();
        let mut stream = req.into_inner();
        // Dropping the ingest (an error, the deadline, a client that went
        // away) deletes whatever it wrote; only `commit` makes it visible.
        let (records, generation) = within(deadline, "Ingest", async {
            let header = match stream.message().await.map_err(oversized)? {
                Some(pb::IngestRequest {
                    message: Some(pb::ingest_request::Message::Header(h)),
                }) => h,
                _ => return Err(invalid("the first Ingest message must be a header")),
            };
            authorize(&ext, Perm::Write, &header.collection)?;
            self.label(&header.collection);
            let mut ingest = self.coord.ingest(&header.collection).map_err(to_status)?;
            let mut bytes = 0u64;
            while let Some(msg) = stream.message().await.map_err(oversized)? {
                match msg.message {
                    Some(pb::ingest_request::Message::Batch(b)) => {
                        for r in b.records {
                            let id = id_from(r.id)?;
                            let v = r.vector.map(|v| v.values).unwrap_or_default();
                            bytes += record_bytes(&id, &v);
                            let over = if ingest.records() >= self.limits.max_ingest_records {
                                Some(("records", self.limits.max_ingest_records))
                            } else if bytes > self.limits.max_ingest_bytes {
                                Some(("bytes", self.limits.max_ingest_bytes))
                            } else {
                                None
                            };
                            if let Some((what, limit)) = over {
                                // Delete what was written before answering,
                                // so the refusal leaves nothing behind.
                                ingest.abort().await;
                                return Err(ingest_too_large(what, limit));
                            }
                            ingest.add(id, &v).await.map_err(to_status)?;
                        }
                    }
                    Some(pb::ingest_request::Message::Header(_)) => {
                        return Err(invalid("only the first Ingest message is a header"))
                    }
                    None => return Err(invalid("an Ingest message carries a header or a batch")),
                }
            }
            ingest.commit().await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::IngestResponse {
            records,
            generation: generation.0,
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Write, &req.get_ref().collection)?;
        let r = req.into_inner();
        self.label(&r.collection);
        let ids = r
            .ids
            .into_iter()
            .map(|i| id_from(Some(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let added = within(deadline, "Delete", async {
            self.coord
                .delete(&r.collection, ids)
                .await
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::DeleteResponse {
            tombstones_added: added,
        }))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let deadline = deadline_of(&req, self.limits.request_timeout);
        authorize(req.extensions(), Perm::Write, &req.get_ref().collection)?;
        let name = req.into_inner().collection;
        self.label(&name);
        let (g, changed) = within(deadline, "Refresh", async {
            self.coord.refresh(&name).await.map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::RefreshResponse {
            changed,
            generation: g.0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_grpc_timeout;
    use std::time::Duration;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
