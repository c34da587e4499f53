//! The engine as a shard node uses it: serve only the partitions the
//! assignment gives this node, and answer a coordinator's scan of some of
//! them with each query's merged exact top-k.
//!
//! A scan takes the collection-wide vector count from the coordinator so
//! each partition gets the same share of `nprobe` and `rerank` it gets in
//! one process ([`rulake_index::split_search`]): a cluster's answer is the
//! single-process answer, not an approximation of it.

use crate::load::{key, Room};
use crate::plan::{effective, plan_with_total};
use crate::search::{merge_partitions, Selecting};
use crate::{CachedPartition, EngineError, Result, RuLake};
use rayon::prelude::*;
use rulake_types::{Generation, Hit, SearchParams, Selection, VectorId};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A shard node's answer to a scan.
#[derive(Clone, Debug)]
pub struct Scanned {
    /// Generation every scanned partition was served from.
    pub generation: Generation,
    /// A newer generation still loading (see [`crate::SearchResponse::loading`]).
    pub loading: Option<Generation>,
    /// Per query, the merged exact top-k.
    pub hits: Vec<Vec<Hit>>,
}

/// One served partition as a shard node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition number.
    pub partition: u32,
    /// Loaded and able to answer without reading the lake.
    pub warm: bool,
    /// Generation it was built from (when warm).
    pub generation: Option<Generation>,
    /// Vectors it holds (when warm).
    pub vectors: u64,
}

impl RuLake {
    /// Serve only `owned` partitions of `name` (`None`: all of them).
    /// Partitions given up leave the memory cache at once; newly owned ones
    /// load on the next [`RuLake::warm`] or scan.
    pub fn set_owned(&self, name: &str, owned: Option<BTreeSet<u32>>) -> Result<()> {
        let c = self.collection(name)?;
        let before: BTreeSet<u32> = self.owned(&c.spec).into_iter().collect();
        match &owned {
            Some(set) => self
                .inner
                .owned
                .write()
                .insert(name.to_owned(), set.clone()),
            None => self.inner.owned.write().remove(name),
        };
        let after: BTreeSet<u32> = self.owned(&c.spec).into_iter().collect();
        for p in before.difference(&after) {
            self.inner.cache.remove(&key(name, *p));
        }
        Ok(())
    }

    /// Load every partition this engine serves of `name` at the current
    /// generation; returns it.
    pub async fn warm(&self, name: &str) -> Result<Generation> {
        let c = self.collection(name)?;
        self.ensure_current(&c, None).await?;
        let (g, _, _) = self.serving_owned(&c).await?;
        Ok(g)
    }

    /// As [`RuLake::warm`], but only into budget no partition and no load
    /// holds: a partition that does not fit is left cold, to be loaded
    /// (evicting the least recently used) by the first query that needs
    /// it. What a shard node runs in the background, so that a node
    /// assigned more than its budget does not evict what its queries use
    /// to warm what nobody asked for, over and over.
    pub async fn prefetch(&self, name: &str) -> Result<Generation> {
        let c = self.collection(name)?;
        self.ensure_current(&c, None).await?;
        let owned = self.owned(&c.spec);
        let (g, _, _) = self.serving_of(&c, owned, Room::FreeOnly).await?;
        Ok(g)
    }

    /// The partitions this engine serves of `name`, warm or not.
    pub fn partition_states(&self, name: &str) -> Result<Vec<PartitionState>> {
        let c = self.collection(name)?;
        Ok(self
            .owned(&c.spec)
            .into_iter()
            .map(|p| match self.inner.cache.peek(&key(name, p)) {
                Some(part) => PartitionState {
                    partition: p,
                    warm: true,
                    generation: Some(part.generation.clone()),
                    vectors: part.index.len() as u64,
                },
                None => PartitionState {
                    partition: p,
                    warm: false,
                    generation: None,
                    vectors: 0,
                },
            })
            .collect())
    }

    /// Search `partitions` of `name` with every query; per query, the
    /// merged exact top-k of those partitions. `collection_vectors` is the
    /// size of the whole collection (0: the partitions served here). A
    /// `fresh` collection answers by `deadline` as
    /// [`RuLake::search_until`] does, and the scan itself stops there with
    /// [`EngineError::DeadlineExceeded`].
    pub async fn scan(
        &self,
        name: &str,
        partitions: &[u32],
        queries: &[Vec<f32>],
        params: SearchParams,
        collection_vectors: u64,
        deadline: Option<Instant>,
    ) -> Result<Scanned> {
        let none = Selection::default();
        self.scan_selected(
            name,
            partitions,
            queries,
            params,
            &none,
            collection_vectors,
            deadline,
        )
        .await
    }

    /// [`RuLake::scan`] returning only rows that match `selection`'s
    /// filter, each hit with its columns (as [`RuLake::search_selected`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn scan_selected(
        &self,
        name: &str,
        partitions: &[u32],
        queries: &[Vec<f32>],
        params: SearchParams,
        selection: &Selection,
        collection_vectors: u64,
        deadline: Option<Instant>,
    ) -> Result<Scanned> {
        let c = self.collection(name)?;
        for q in queries {
            Self::check_query(&c.spec, q, &params)?;
        }
        selection.check_columns(&c.spec.payload_columns)?;
        let owned: BTreeSet<u32> = self.owned(&c.spec).into_iter().collect();
        if let Some(p) = partitions.iter().find(|p| !owned.contains(p)) {
            return Err(EngineError::FailedPrecondition(format!(
                "partition {p} of {name:?} is not served by this node"
            )));
        }
        let loading = self.ensure_current(&c, deadline).await?;
        // Only the partitions asked for are loaded: one this node has just
        // gained (a dead replica's, say) loads in the background, and must
        // not hold up scans of those it has warm. Without the collection's
        // size from the coordinator, though, the plan shares the search
        // out over everything served here, so all of it is needed.
        let wanted = self
            .owned(&c.spec)
            .into_iter()
            .filter(|p| collection_vectors == 0 || partitions.contains(p))
            .collect();
        let (generation, numbers, parts) = self.serving_of(&c, wanted, Room::Evict).await?;
        let picked = pick(&numbers, &parts, partitions);
        let retune = c.retune_for(&params);
        let params = effective(&c.spec, params);
        let total = if collection_vectors > 0 {
            collection_vectors as usize
        } else {
            parts.iter().map(|p| p.index.len()).sum()
        };
        let plan = plan_with_total(&picked, params, total, c.retune.factor());
        let masks = self.masks(name, &picked);
        let sel = Selecting::new(&c.spec, selection, &picked, &masks)?;
        self.inner
            .queries
            .record(queries.len(), picked.len() as u32, c.spec.partitions);
        // One query: its partitions in parallel (nothing else to spread);
        // a batch: queries in parallel, each query's partitions in turn.
        let parallel_parts = queries.len() == 1;
        let one = |q: &Vec<f32>| -> Result<Vec<Hit>> {
            let hits = merge_partitions(
                &picked,
                &plan,
                &masks,
                &sel,
                q,
                params.k,
                parallel_parts,
                deadline.into(),
            )?;
            if !sel.filtered() {
                self.inner
                    .recall
                    .offer(name, q, &hits, &picked, &masks, params.k, retune);
            }
            Ok(hits)
        };
        let hits = queries.par_iter().map(one).collect::<Result<Vec<_>>>()?;
        Ok(Scanned {
            generation,
            loading,
            hits,
        })
    }

    /// Which of `ids` the given partitions of `name` hold (deleted ones
    /// included). A partition asked for and not served here is an error,
    /// never an empty answer: a delete decides from this which ids get
    /// tombstones, and "not here" read as "absent" would acknowledge a
    /// delete that deleted nothing.
    pub async fn lookup(
        &self,
        name: &str,
        partitions: &[u32],
        ids: &HashSet<VectorId>,
    ) -> Result<Vec<VectorId>> {
        let c = self.collection(name)?;
        self.ensure_current(&c, None).await?;
        let (_, numbers, parts) = self.serving_owned(&c).await?;
        let missing: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|p| !numbers.contains(p))
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::NotServed {
                collection: name.to_owned(),
                partitions: missing,
            });
        }
        let mut found = Vec::new();
        for part in pick(&numbers, &parts, partitions) {
            let table = part.index.ids();
            for pos in 0..table.len() as u32 {
                let id = table.get(pos);
                if ids.contains(&id) {
                    found.push(id);
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The partitions among `parts` (numbered by `numbers`) whose numbers are
/// in `partitions`, in `numbers`' order.
fn pick(
    numbers: &[u32],
    parts: &[Arc<CachedPartition>],
    partitions: &[u32],
) -> Vec<Arc<CachedPartition>> {
    let wanted: BTreeSet<u32> = partitions.iter().copied().collect();
    numbers
        .iter()
        .zip(parts)
        .filter(|(n, _)| wanted.contains(n))
        .map(|(_, p)| p.clone())
        .collect()
}
