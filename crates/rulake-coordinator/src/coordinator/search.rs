//! Queries: search, batch search, federated search and refresh.
//!
//! Why a query bound for shard nodes is checked against the collection's
//! spec here, before the fan-out: a bad query is then refused once, with
//! the engine's own message, before any shard is asked or any request is
//! counted; a shard's refusal (kept as the caller's error by the router's
//! merge) is only the second line. In this process the engine makes the
//! same checks itself, so the local path hands each call straight over.
//! Federated answers are merged here, not in the router, because only the
//! coordinator knows which collection each fan-out was for. A federation
//! searches each collection once however often it is named, directly or
//! through aliases: the names are resolved, then de-duplicated, before any
//! work, so a request naming one collection 20,000 times costs (and
//! answers) what naming it once does.
//!
//! Every call carries the instant it must answer by: in this process the
//! engine stops its search there, across shard nodes it travels as each
//! request's `grpc-timeout` and the shard's engine stops there; either way
//! the caller is told `DEADLINE_EXCEEDED` rather than left waiting while
//! the work runs on.

use super::Coordinator;
use crate::router::{Fanned, Router};
use crate::{sync, CoordinatorError, Result};
use rulake_catalog::CollectionRecord;
use rulake_engine::{FederatedResponse, RuLake, SearchResponse};
use rulake_types::{Generation, Hit, SearchParams, Selection};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

impl Coordinator {
    /// Search a collection or alias, answering by `deadline` (a `fresh`
    /// collection whose newer generation is still loading then answers
    /// from the newest warm one, and says which is loading).
    pub async fn search(
        &self,
        name: &str,
        query: &[f32],
        params: SearchParams,
        selection: &Selection,
        deadline: Instant,
    ) -> Result<SearchResponse> {
        let target = self.resolve(name)?;
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .search_selected(&target, query, params, selection, Some(deadline))
                .await?);
        };
        let queries = [query.to_vec()];
        let rec = self.check_queries(&target, &queries, &params, selection)?;
        let mut f = router
            .scan(&rec, &queries, params, selection, deadline)
            .await?;
        let hits = f.hits.pop().unwrap_or_default();
        Ok(response(&f, hits))
    }

    /// Many queries against one collection or alias, one generation,
    /// answering by `deadline` as [`Coordinator::search`].
    pub async fn batch_search(
        &self,
        name: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
        selection: &Selection,
        deadline: Instant,
    ) -> Result<Vec<SearchResponse>> {
        let target = self.resolve(name)?;
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .batch_search_selected(&target, queries, params, selection, Some(deadline))
                .await?);
        };
        let rec = self.check_queries(&target, queries, &params, selection)?;
        let mut f = router
            .scan(&rec, queries, params, selection, deadline)
            .await?;
        let lists = std::mem::take(&mut f.hits);
        Ok(lists.into_iter().map(|hits| response(&f, hits)).collect())
    }

    /// One query over several collections or aliases, merged exactly. Hits
    /// name the collection they came from (not the alias); a collection
    /// named more than once (or also through an alias) is searched once.
    /// Answers by `deadline` as [`Coordinator::search`].
    pub async fn federated_search(
        &self,
        names: &[String],
        query: &[f32],
        params: SearchParams,
        selection: &Selection,
        deadline: Instant,
    ) -> Result<FederatedResponse> {
        let targets = self.federation_targets(names)?;
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let Some(router) = &self.inner.remote else {
            return Ok(self
                .inner
                .engine
                .federated_search_selected(&refs, query, params, selection, Some(deadline))
                .await?);
        };
        self.federated_remote(router, &targets, query, params, selection, deadline)
            .await
    }

    /// The collections `names` stand for, each once, in the order first
    /// named (each distinct name is resolved once).
    fn federation_targets(&self, names: &[String]) -> Result<Vec<String>> {
        let mut named = HashSet::new();
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for n in names {
            if !named.insert(n.as_str()) {
                continue;
            }
            let t = self.resolve(n)?;
            if seen.insert(t.clone()) {
                targets.push(t);
            }
        }
        Ok(targets)
    }

    async fn federated_remote(
        &self,
        router: &Router,
        targets: &[String],
        query: &[f32],
        params: SearchParams,
        selection: &Selection,
        deadline: Instant,
    ) -> Result<FederatedResponse> {
        let queries = [query.to_vec()];
        let recs = self.federated_records(targets, &queries, &params, selection)?;
        let fans = futures::future::join_all(
            recs.iter()
                .map(|r| router.scan(r, &queries, params, selection, deadline)),
        )
        .await;
        merge_federated(&recs, fans, params.k)
    }

    /// The records of `targets`, each checked against `queries`; refused
    /// unless there is at least one and all share dimension and metric.
    fn federated_records(
        &self,
        targets: &[String],
        queries: &[Vec<f32>],
        params: &SearchParams,
        selection: &Selection,
    ) -> Result<Vec<CollectionRecord>> {
        if targets.is_empty() {
            return Err(CoordinatorError::InvalidArgument(
                "no collections to search".into(),
            ));
        }
        let mut recs = Vec::with_capacity(targets.len());
        for t in targets {
            recs.push(self.check_queries(t, queries, params, selection)?);
        }
        let first = &recs[0];
        if let Some(c) = recs
            .iter()
            .find(|c| c.dim != first.dim || c.metric != first.metric)
        {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "federated collections must share dimension and metric: {:?} is {}d {}, {:?} is {}d {}",
                first.name, first.dim, first.metric, c.name, c.dim, c.metric
            )));
        }
        Ok(recs)
    }

    /// A collection's record, once every query is valid for it and every
    /// column the selection names is one of its payload columns (a
    /// column's type is checked by the shards, which hold the values).
    fn check_queries(
        &self,
        target: &str,
        queries: &[Vec<f32>],
        params: &SearchParams,
        selection: &Selection,
    ) -> Result<CollectionRecord> {
        let (rec, src) = self.record_and_source(target)?;
        let spec = sync::engine_spec(&rec, &src)?;
        for q in queries {
            RuLake::check_query(&spec, q, params)?;
        }
        selection
            .check_columns(&rec.payload_names())
            .map_err(rulake_engine::EngineError::from)?;
        Ok(rec)
    }

    /// Check a collection's source now; returns the generation served and
    /// whether it changed.
    pub async fn refresh(&self, name: &str) -> Result<(Generation, bool)> {
        let target = self.resolve(name)?;
        let before = self.info(&target)?.generation;
        let g = self.refresh_target(&target).await?;
        let changed = before.as_ref() != Some(&g);
        Ok((g, changed))
    }
}

/// One query's answer, from what the shards answered for its collection.
fn response(f: &Fanned, hits: Vec<Hit>) -> SearchResponse {
    SearchResponse {
        hits,
        generation: f.generation.clone(),
        loading: f.loading.clone(),
        partitions_answered: f.answered,
        partitions_total: f.total,
    }
}

/// The shards' answers for each of `recs` (one query), merged exactly:
/// nearest first, ties broken by collection then id, `k` kept.
fn merge_federated(
    recs: &[CollectionRecord],
    fans: Vec<Result<Fanned>>,
    k: usize,
) -> Result<FederatedResponse> {
    let mut hits = Vec::new();
    let mut generations = BTreeMap::new();
    let mut loading = BTreeMap::new();
    let (mut answered, mut total) = (0, 0);
    for (rec, f) in recs.iter().zip(fans) {
        let mut f = f?;
        answered += f.answered;
        total += f.total;
        generations.insert(rec.name.clone(), f.generation.clone());
        if let Some(g) = f.loading.take() {
            loading.insert(rec.name.clone(), g);
        }
        for h in f.hits.pop().unwrap_or_default() {
            hits.push(rulake_engine::FederatedHit {
                collection: rec.name.clone(),
                generation: f.generation.clone(),
                id: h.id,
                distance: h.distance,
                columns: h.columns,
            });
        }
    }
    hits.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.collection.cmp(&b.collection))
            .then_with(|| a.id.cmp(&b.id))
    });
    hits.truncate(k);
    Ok(FederatedResponse {
        hits,
        generations,
        loading,
        partitions_answered: answered,
        partitions_total: total,
    })
}
