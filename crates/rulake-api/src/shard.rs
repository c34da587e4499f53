//! The shard node's internal `ShardService`: what coordinators call. It
//! lives here, beside the public services, so that every RuLake error is
//! mapped to a gRPC status in one place ([`crate::status`]).

use crate::service::parse_grpc_timeout;
use crate::status::{engine_status, to_status};
use rulake_coordinator::ShardNode;
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::shard_service_server::{ShardService, ShardServiceServer};
use rulake_types::{SearchParams, VectorId};
use std::collections::HashSet;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// Largest scan request or reply (a batch of many wide queries).
const MAX_SCAN_BYTES: usize = 256 << 20;

/// The `ShardService` of one shard node.
#[derive(Clone)]
pub struct ShardApi {
    node: ShardNode,
}

impl ShardApi {
    /// The service over `node`.
    pub fn new(node: ShardNode) -> Self {
        ShardApi { node }
    }

    /// A tonic service for a server's router.
    pub fn server(self) -> ShardServiceServer<ShardApi> {
        ShardServiceServer::new(self)
            .max_decoding_message_size(MAX_SCAN_BYTES)
            .max_encoding_message_size(MAX_SCAN_BYTES)
    }
}

fn params(r: &pb::ScanRequest) -> SearchParams {
    SearchParams {
        k: r.k as usize,
        nprobe: r.nprobe.map(|n| n as usize),
        rerank: r.rerank.map(|n| n as usize),
    }
}

#[tonic::async_trait]
impl ShardService for ShardApi {
    async fn scan(&self, req: Request<pb::ScanRequest>) -> Result<Response<pb::ScanReply>, Status> {
        // The coordinator's deadline: a fresh collection answers from what
        // is warm rather than wait past it for a newer generation, and the
        // scan's CPU work stops there (`DEADLINE_EXCEEDED`) instead of
        // running on for a caller that has gone.
        let deadline = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        let mut req = req.into_inner();
        self.node
            .catch_up(req.catalog_index)
            .await
            .map_err(to_status)?;
        let queries: Vec<Vec<f32>> = req.queries.iter().map(|q| q.values.clone()).collect();
        let selection = rulake_coordinator::wire::selection_from(
            req.filter.take(),
            std::mem::take(&mut req.output_columns),
        )
        .map_err(to_status)?;
        let scanned = self
            .node
            .engine()
            .scan_selected(
                &req.collection,
                &req.partitions,
                &queries,
                params(&req),
                &selection,
                req.collection_vectors,
                deadline,
            )
            .await
            .map_err(|e| engine_status(&e))?;
        Ok(Response::new(pb::ScanReply {
            generation: scanned.generation.0,
            loading_generation: scanned.loading.map(|g| g.0).unwrap_or_default(),
            results: scanned
                .hits
                .into_iter()
                .map(|hits| pb::ScanHits {
                    hits: hits
                        .into_iter()
                        .map(|h| pb::ScanHit {
                            id: h.id.to_key(),
                            distance: h.distance,
                            columns: rulake_coordinator::wire::columns_to(h.columns),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        _req: Request<pb::ShardStatusRequest>,
    ) -> Result<Response<pb::ShardStatusReply>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn lookup(
        &self,
        req: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupReply>, Status> {
        let req = req.into_inner();
        self.node
            .catch_up(req.catalog_index)
            .await
            .map_err(to_status)?;
        let ids: HashSet<VectorId> = req
            .ids
            .iter()
            .map(|k| {
                VectorId::from_key(k)
                    .ok_or_else(|| Status::invalid_argument(format!("malformed id key {k:?}")))
            })
            .collect::<Result<_, _>>()?;
        let present = self
            .node
            .engine()
            .lookup(&req.collection, &req.partitions, &ids)
            .await
            .map_err(|e| engine_status(&e))?;
        Ok(Response::new(pb::LookupReply {
            present: present.iter().map(VectorId::to_key).collect(),
        }))
    }

    async fn refresh(
        &self,
        req: Request<pb::ShardRefreshRequest>,
    ) -> Result<Response<pb::ShardRefreshReply>, Status> {
        let req = req.into_inner();
        self.node
            .catch_up(req.catalog_index)
            .await
            .map_err(to_status)?;
        let g = self
            .node
            .engine()
            .refresh(&req.collection)
            .await
            .map_err(|e| engine_status(&e))?;
        // Partitions newly owned since the last load come with it.
        self.node
            .engine()
            .warm(&req.collection)
            .await
            .map_err(|e| engine_status(&e))?;
        if req.persisted {
            self.node.engine().flush_persisted().await;
        }
        Ok(Response::new(pb::ShardRefreshReply { generation: g.0 }))
    }

    async fn lineage(
        &self,
        req: Request<pb::ShardLineageRequest>,
    ) -> Result<Response<rulake_proto::v1::DescribeGenerationResponse>, Status> {
        let req = req.into_inner();
        let l = self
            .node
            .engine()
            .lineage(&req.collection)
            .map_err(|e| engine_status(&e))?;
        Ok(Response::new(rulake_coordinator::lineage_message(&l)))
    }
}
