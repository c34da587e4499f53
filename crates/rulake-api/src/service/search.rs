//! `SearchService`: k-NN queries against one collection, a batch of them,
//! or several collections merged. Apart from the other services because
//! only these calls hand the coordinator the instant to answer by and
//! report partial answers; their shared checks live here.
//!
//! Why the checks bound a call's total work, not only each knob: `k`, the
//! batch size and the collections of a federation are each limited, but
//! their product is what a call holds and merges in memory, so it has a
//! limit of its own ([`crate::Limits::max_search_hits`]). A federation's
//! names are de-duplicated, then counted against
//! [`crate::Limits::max_federated`], before any of them is authorized or
//! resolved: a request naming one collection 20,000 times answers as if it
//! named it once, at the cost of naming it once. The instant a call must
//! answer by goes to the coordinator (`Call::by`), whose engine stops its
//! CPU work there; `nprobe` and `rerank` are clamped by the engine (see
//! `rulake_index::split_search`), never refused.

use super::call::Scope;
use super::Api;
use crate::convert::{hit_to, id_to, params_from, query_from};
use crate::status::{invalid, to_status};
use rulake_auth::Perm;
use rulake_engine::SearchResponse;
use rulake_proto::v1 as pb;
use rulake_types::{SearchParams, Selection};
use std::collections::HashSet;
use tonic::{Request, Response, Status};

/// The request's filter and output columns, taken out of its parameters
/// (an empty or over-deep filter is `INVALID_ARGUMENT`).
fn selection_of(p: &mut Option<pb::SearchParams>) -> Result<Selection, Status> {
    let Some(p) = p.as_mut() else {
        return Ok(Selection::default());
    };
    rulake_coordinator::wire::selection_from(p.filter.take(), std::mem::take(&mut p.output_columns))
        .map_err(to_status)
}

impl Api {
    /// The request's search parameters, with `k` within the server's limit.
    fn search_params(&self, p: Option<pb::SearchParams>) -> Result<SearchParams, Status> {
        let params = params_from(p)?;
        if params.k == 0 || params.k > self.limits.max_k {
            return Err(invalid(format!(
                "k must be between 1 and {}, got {}",
                self.limits.max_k, params.k
            )));
        }
        Ok(params)
    }

    /// Refuse a call whose `k × queries × collections` exceeds the limit.
    fn check_hits(&self, k: usize, queries: usize, collections: usize) -> Result<(), Status> {
        let hits = k.saturating_mul(queries).saturating_mul(collections);
        if hits > self.limits.max_search_hits {
            return Err(invalid(format!(
                "this call asks for k × queries × collections = {k} × {queries} × {collections} \
                 = {hits} hits, over the server's limit of {} (max_search_hits); \
                 ask for a smaller k or split the call",
                self.limits.max_search_hits
            )));
        }
        Ok(())
    }

    /// The distinct names of a federation, in the order first given,
    /// within [`crate::Limits::max_federated`].
    fn federation<'r>(&self, names: &'r [String]) -> Result<Vec<&'r String>, Status> {
        let mut seen = HashSet::new();
        let distinct: Vec<&String> = names.iter().filter(|n| seen.insert(*n)).collect();
        if distinct.len() > self.limits.max_federated {
            return Err(invalid(format!(
                "a FederatedSearch names at most {} distinct collections (max_federated), got {}",
                self.limits.max_federated,
                distinct.len()
            )));
        }
        Ok(distinct)
    }
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.handle(
            req,
            "Search",
            Perm::Read,
            Scope::Collection(|r| &r.collection),
            move |mut r, call| async move {
                let query = query_from(r.query)?;
                let selection = selection_of(&mut r.params)?;
                let params = self.search_params(r.params)?;
                self.check_hits(params.k, 1, 1)?;
                let by = call.by();
                let a = call
                    .run(
                        self.coord
                            .search(&r.collection, &query, params, &selection, by),
                    )
                    .await?;
                Ok(pb::SearchResponse {
                    hits: a.hits.into_iter().map(hit_to).collect(),
                    generation: a.generation.0,
                    partial: a.partitions_answered < a.partitions_total,
                    partitions_answered: a.partitions_answered,
                    partitions_total: a.partitions_total,
                    loading_generation: a.loading.map(|g| g.0).unwrap_or_default(),
                })
            },
        )
        .await
    }

    async fn batch_search(
        &self,
        req: Request<pb::BatchSearchRequest>,
    ) -> Result<Response<pb::BatchSearchResponse>, Status> {
        self.handle(
            req,
            "BatchSearch",
            Perm::Read,
            Scope::Collection(|r| &r.collection),
            move |mut r, call| async move {
                if r.queries.len() > self.limits.max_batch {
                    return Err(invalid(format!(
                        "a batch holds at most {} queries, got {}",
                        self.limits.max_batch,
                        r.queries.len()
                    )));
                }
                let selection = selection_of(&mut r.params)?;
                let params = self.search_params(r.params)?;
                self.check_hits(params.k, r.queries.len(), 1)?;
                let queries: Vec<Vec<f32>> = r.queries.into_iter().map(|v| v.values).collect();
                let by = call.by();
                let answers = call
                    .run(
                        self.coord
                            .batch_search(&r.collection, &queries, params, &selection, by),
                    )
                    .await?;
                Ok(batch_response(answers))
            },
        )
        .await
    }

    async fn federated_search(
        &self,
        req: Request<pb::FederatedSearchRequest>,
    ) -> Result<Response<pb::FederatedSearchResponse>, Status> {
        self.handle(
            req,
            "FederatedSearch",
            Perm::Read,
            // Authorized below, once per distinct name, after the count.
            Scope::Deferred,
            move |mut r, call| async move {
                let names = self.federation(&r.collections)?;
                let selection = selection_of(&mut r.params)?;
                let params = self.search_params(r.params)?;
                self.check_hits(params.k, 1, names.len())?;
                for name in &names {
                    call.authorize_through(name)?;
                }
                let names: Vec<String> = names.into_iter().cloned().collect();
                let query = query_from(r.query)?;
                let by = call.by();
                let a = call
                    .run(
                        self.coord
                            .federated_search(&names, &query, params, &selection, by),
                    )
                    .await?;
                Ok(pb::FederatedSearchResponse {
                    hits: a
                        .hits
                        .into_iter()
                        .map(|h| pb::FederatedHit {
                            collection: h.collection,
                            generation: h.generation.0,
                            id: Some(id_to(h.id)),
                            distance: h.distance,
                            columns: rulake_coordinator::wire::columns_to(h.columns),
                        })
                        .collect(),
                    generations: a.generations.into_iter().map(|(k, g)| (k, g.0)).collect(),
                    loading_generations: a.loading.into_iter().map(|(k, g)| (k, g.0)).collect(),
                    partial: a.partitions_answered < a.partitions_total,
                    partitions_answered: a.partitions_answered,
                    partitions_total: a.partitions_total,
                })
            },
        )
        .await
    }
}

/// A batch's answers on the wire: one generation and one count of
/// partitions for the whole batch (every query ran against the same ones),
/// taken from the first answer.
fn batch_response(answers: Vec<SearchResponse>) -> pb::BatchSearchResponse {
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
    pb::BatchSearchResponse {
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
    }
}
