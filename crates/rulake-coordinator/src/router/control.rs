//! Id lookups and refreshes on the shards: the calls writers depend on.
//!
//! Why these are neither hedged nor answered in part, unlike a scan: a
//! lookup decides whether an ingest may commit or which ids a delete
//! tombstones, so a partition left out would let a duplicate id in or
//! leave a delete undone; it asks one replica of every partition and fails
//! whole if one cannot be asked. A refresh asks every node serving the
//! collection to check its source, so each moves to the new generation
//! itself; any node's answer is the generation, and it fails only when no
//! node answered. A lineage asks the serving nodes one at a time until one
//! serves the generation asked for.

use super::routes::{by_first_choice, partition_key};
use super::shards::status_error;
use super::Router;
use crate::{CoordinatorError, Result};
use futures::future::join_all;
use rulake_catalog::CollectionRecord;
use rulake_proto::internal::v1 as pb;
use rulake_types::{Generation, VectorId};
use std::collections::HashSet;

/// How long a shard node may take to load and persist a new generation
/// when asked to (`refresh_persisted`, after a compaction): a build of
/// every partition it serves, minutes for millions of vectors.
const PERSISTED_REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Router {
    /// Which of `ids` the collection holds, asking one replica per partition.
    pub async fn lookup(
        &self,
        rec: &CollectionRecord,
        ids: &HashSet<VectorId>,
    ) -> Result<Vec<VectorId>> {
        let (groups, orphan) = by_first_choice(&self.candidates(rec));
        if let Some(p) = orphan {
            return Err(CoordinatorError::Unavailable(format!(
                "partition {p} of {:?} has no replica to ask",
                rec.name
            )));
        }
        let keys: Vec<String> = ids.iter().map(VectorId::to_key).collect();
        let calls = groups.into_iter().map(|(node, parts)| {
            let keys = keys.clone();
            async move {
                let shard = self.registered(node)?;
                let req = self.request(pb::LookupRequest {
                    collection: rec.name.clone(),
                    partitions: parts,
                    ids: keys,
                    catalog_index: self.catalog_index(),
                });
                let mut c = shard.client.clone();
                c.lookup(req)
                    .await
                    .map(|r| r.into_inner().present)
                    .map_err(|s| status_error(node, &shard.addr, s))
            }
        });
        let mut found: Vec<VectorId> = Vec::new();
        for r in join_all(calls).await {
            found.extend(r?.iter().filter_map(|k| VectorId::from_key(k)));
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Ask every node serving part of `rec` to check its source now.
    pub async fn refresh(&self, rec: &CollectionRecord) -> Result<Generation> {
        let mut last = Err(CoordinatorError::Unavailable("no shard answered".into()));
        for r in self.refresh_each(rec, false).await? {
            match r {
                Ok(g) => last = Ok(g),
                Err(e) if last.is_err() => last = Err(e),
                Err(_) => {}
            }
        }
        last
    }

    /// Ask every node serving part of `rec` to load its source's current
    /// generation and persist it; fails unless every node did (compaction
    /// deletes the files of the generation before only then).
    pub async fn refresh_persisted(&self, rec: &CollectionRecord) -> Result<Generation> {
        let mut generation = None;
        for r in self.refresh_each(rec, true).await? {
            let g = r?;
            if generation.as_ref().is_some_and(|h| h != &g) {
                return Err(CoordinatorError::Unavailable(format!(
                    "the shard nodes of {:?} loaded different generations ({} and {g}); the older one may still read its files",
                    rec.name,
                    generation.unwrap_or_default()
                )));
            }
            generation = Some(g);
        }
        generation.ok_or_else(|| CoordinatorError::Unavailable("no shard answered".into()))
    }

    /// Each serving node's answer to a refresh of `rec`.
    async fn refresh_each(
        &self,
        rec: &CollectionRecord,
        persisted: bool,
    ) -> Result<Vec<Result<Generation>>> {
        let nodes = self.serving_nodes(rec);
        if nodes.is_empty() {
            return Err(CoordinatorError::Unavailable(format!(
                "collection {:?} has no shard node yet",
                rec.name
            )));
        }
        let calls = nodes.into_iter().map(|node| async move {
            let shard = self.registered(node)?;
            let mut req = self.request(pb::ShardRefreshRequest {
                collection: rec.name.clone(),
                catalog_index: self.catalog_index(),
                persisted,
            });
            if persisted {
                // A compaction's reload builds whole partitions anew; the
                // request deadline is sized for a generation check.
                req.set_timeout(PERSISTED_REFRESH_TIMEOUT);
            }
            let mut c = shard.client.clone();
            c.refresh(req)
                .await
                .map(|r| Generation(r.into_inner().generation))
                .map_err(|s| status_error(node, &shard.addr, s))
        });
        Ok(join_all(calls).await)
    }

    /// The makeup of the generation a node serving `rec` serves: the first
    /// node that answers, or with `generation` given, the first serving
    /// that one (else an answer for another generation: the caller
    /// compares).
    pub async fn lineage(
        &self,
        rec: &CollectionRecord,
        generation: &str,
    ) -> Result<rulake_proto::v1::DescribeGenerationResponse> {
        let mut last = Err(CoordinatorError::Unavailable(format!(
            "collection {:?} has no shard node yet",
            rec.name
        )));
        let mut found_other = false;
        for node in self.serving_nodes(rec) {
            let shard = match self.registered(node) {
                Ok(s) => s,
                Err(e) => {
                    last = Err(e);
                    continue;
                }
            };
            let req = self.request(pb::ShardLineageRequest {
                collection: rec.name.clone(),
            });
            let mut c = shard.client.clone();
            match c.lineage(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if generation.is_empty() || r.generation == generation {
                        return Ok(r);
                    }
                    found_other = true;
                    last = Ok(r);
                }
                Err(s) if !found_other => last = Err(status_error(node, &shard.addr, s)),
                Err(_) => {}
            }
        }
        // Nodes answered, none with the generation asked for: the last
        // answer names one that is served.
        last
    }

    /// Every node the assignment has serving some partition of `rec`, by id.
    fn serving_nodes(&self, rec: &CollectionRecord) -> Vec<u64> {
        let view = self.inner.view.read();
        let a = &view.catalog.assignment;
        let mut v: Vec<u64> = (0..rec.partitions)
            .flat_map(|p| a.serving(&partition_key(&rec.name, p)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
