//! The `rulake.v1` services over one embedded engine.
//!
//! Handlers are thin: decode, call the engine, encode, and convert errors in
//! [`crate::status`]. Limits that protect the server (batch size) are
//! enforced here, before any work; limits that belong to the data model
//! (k, dimension, names) are the engine's.

use crate::convert::*;
use crate::status::{invalid, to_status};
use rulake_engine::RuLake;
use rulake_lake::{ParquetSource, ParquetSourceConfig, Source};
use rulake_proto::v1 as pb;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// Server-side limits, each answered with a clear status code.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Queries in one `BatchSearch` (`INVALID_ARGUMENT` beyond it).
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_batch: 1024 }
    }
}

/// The public API over one engine: every `rulake.v1` service.
#[derive(Clone)]
pub struct Api {
    engine: Arc<RuLake>,
    limits: Limits,
    /// The wire form of each collection's source, to describe it back.
    sources: Arc<Mutex<BTreeMap<String, pb::Source>>>,
}

impl Api {
    /// Serve `engine` with `limits`.
    pub fn new(engine: Arc<RuLake>, limits: Limits) -> Self {
        Api {
            engine,
            limits,
            sources: Arc::default(),
        }
    }

    /// The engine behind the API.
    pub fn engine(&self) -> &Arc<RuLake> {
        &self.engine
    }

    fn open_source(source: &pb::Source) -> Result<Arc<dyn Source>, Status> {
        match &source.kind {
            Some(pb::source::Kind::Parquet(p)) => {
                let config = ParquetSourceConfig {
                    url: p.url.clone(),
                    id_column: p.id_column.clone(),
                    vector_column: p.vector_column.clone(),
                    options: p
                        .options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                let s = ParquetSource::open(config)
                    .map_err(|e| to_status(rulake_engine::EngineError::Lake(e)))?;
                Ok(Arc::new(s))
            }
            Some(pb::source::Kind::Delta(_)) | Some(pb::source::Kind::Iceberg(_)) => {
                Err(Status::unimplemented(
                    "delta and iceberg sources are not served over the API yet; use a parquet source",
                ))
            }
            Some(pb::source::Kind::Managed(_)) => Err(Status::unimplemented(
                "managed collections need the catalog's commit path; use a parquet source",
            )),
            None => Err(invalid("source kind is required")),
        }
    }

    fn source_of(&self, name: &str) -> Option<pb::Source> {
        self.sources
            .lock()
            .expect("sources lock")
            .get(name)
            .cloned()
    }
}

#[tonic::async_trait]
impl pb::collection_service_server::CollectionService for Api {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("spec is required"))?;
        let (spec, source) = spec_from(spec)?;
        let name = spec.name.clone();
        // Validate the spec before touching the lake or the registry.
        spec.validate().map_err(to_status)?;
        if self.engine.describe(&name).is_ok() {
            return Err(to_status(rulake_engine::EngineError::AlreadyExists {
                kind: "collection",
                name,
            }));
        }
        let opened = Self::open_source(&source)?;
        self.engine
            .register_source(&name, opened)
            .map_err(to_status)?;
        if let Err(e) = self.engine.create_collection(spec) {
            let _ = self.engine.unregister_source(&name);
            return Err(to_status(e));
        }
        self.sources
            .lock()
            .expect("sources lock")
            .insert(name.clone(), source.clone());
        let info = self.engine.describe(&name).map_err(to_status)?;
        Ok(Response::new(pb::CreateCollectionResponse {
            info: Some(info_to(info, Some(source))),
        }))
    }

    async fn drop_collection(
        &self,
        req: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        let name = req.into_inner().name;
        self.engine.drop_collection(&name).map_err(to_status)?;
        let _ = self.engine.unregister_source(&name);
        self.sources.lock().expect("sources lock").remove(&name);
        Ok(Response::new(pb::DropCollectionResponse {}))
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let collections = self
            .engine
            .list_collections()
            .into_iter()
            .filter_map(|n| {
                let info = self.engine.describe(&n).ok()?;
                Some(info_to(info, self.source_of(&n)))
            })
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn describe_collection(
        &self,
        req: Request<pb::DescribeCollectionRequest>,
    ) -> Result<Response<pb::DescribeCollectionResponse>, Status> {
        let name = req.into_inner().name;
        let info = self.engine.describe(&name).map_err(to_status)?;
        Ok(Response::new(pb::DescribeCollectionResponse {
            info: Some(info_to(info, self.source_of(&name))),
        }))
    }

    async fn alter_collection(
        &self,
        _req: Request<pb::AlterCollectionRequest>,
    ) -> Result<Response<pb::AlterCollectionResponse>, Status> {
        Err(Status::unimplemented(
            "altering a collection commits through the catalog, which this server does not run yet",
        ))
    }

    async fn create_alias(
        &self,
        _req: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        Err(aliases_pending())
    }

    async fn delete_alias(
        &self,
        _req: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        Err(aliases_pending())
    }

    async fn switch_aliases(
        &self,
        _req: Request<pb::SwitchAliasesRequest>,
    ) -> Result<Response<pb::SwitchAliasesResponse>, Status> {
        Err(aliases_pending())
    }

    async fn list_aliases(
        &self,
        _req: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        Ok(Response::new(pb::ListAliasesResponse::default()))
    }
}

fn aliases_pending() -> Status {
    Status::unimplemented("aliases are catalog entries; this server does not run the catalog yet")
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let r = req.into_inner();
        let query = query_from(r.query)?;
        let params = params_from(r.params)?;
        let a = self
            .engine
            .search(&r.collection, &query, params)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SearchResponse {
            hits: a.hits.into_iter().map(hit_to).collect(),
            generation: a.generation.0,
            partial: a.partitions_answered < a.partitions_total,
            partitions_answered: a.partitions_answered,
            partitions_total: a.partitions_total,
        }))
    }

    async fn batch_search(
        &self,
        req: Request<pb::BatchSearchRequest>,
    ) -> Result<Response<pb::BatchSearchResponse>, Status> {
        let r = req.into_inner();
        if r.queries.len() > self.limits.max_batch {
            return Err(invalid(format!(
                "a batch holds at most {} queries, got {}",
                self.limits.max_batch,
                r.queries.len()
            )));
        }
        let params = params_from(r.params)?;
        let queries: Vec<Vec<f32>> = r.queries.into_iter().map(|v| v.values).collect();
        let answers = self
            .engine
            .batch_search(&r.collection, &queries, params)
            .await
            .map_err(to_status)?;
        let (generation, answered, total) = answers
            .first()
            .map(|a| {
                (
                    a.generation.0.clone(),
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
        }))
    }

    async fn federated_search(
        &self,
        req: Request<pb::FederatedSearchRequest>,
    ) -> Result<Response<pb::FederatedSearchResponse>, Status> {
        let r = req.into_inner();
        let query = query_from(r.query)?;
        let params = params_from(r.params)?;
        let names: Vec<&str> = r.collections.iter().map(String::as_str).collect();
        let a = self
            .engine
            .federated_search(&names, &query, params)
            .await
            .map_err(to_status)?;
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
        _req: Request<pb::CacheStatsRequest>,
    ) -> Result<Response<pb::CacheStatsResponse>, Status> {
        let s = self.engine.cache_stats();
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
            nodes: [("local".to_string(), stats)].into_iter().collect(),
        }))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented(
            "cluster status comes from the catalog, which this server does not run yet",
        ))
    }

    async fn drain_shard(
        &self,
        _req: Request<pb::DrainShardRequest>,
    ) -> Result<Response<pb::DrainShardResponse>, Status> {
        Err(Status::unimplemented(
            "this server runs every role in one process; there is no other shard node to drain to",
        ))
    }

    async fn admit_shard(
        &self,
        _req: Request<pb::AdmitShardRequest>,
    ) -> Result<Response<pb::AdmitShardResponse>, Status> {
        Err(Status::unimplemented(
            "this server runs every role in one process; placement has one node",
        ))
    }
}

#[tonic::async_trait]
impl pb::data_service_server::DataService for Api {
    async fn ingest(
        &self,
        _req: Request<tonic::Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        Err(Status::unimplemented(
            "managed ingest commits through the catalog, which this server does not run yet",
        ))
    }

    async fn delete(
        &self,
        _req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(Status::unimplemented(
            "tombstones are catalog entries; this server does not run the catalog yet",
        ))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let name = req.into_inner().collection;
        let before = self.engine.describe(&name).map_err(to_status)?.generation;
        let g = self.engine.refresh(&name).await.map_err(to_status)?;
        Ok(Response::new(pb::RefreshResponse {
            changed: before.as_ref() != Some(&g),
            generation: g.0,
        }))
    }
}
