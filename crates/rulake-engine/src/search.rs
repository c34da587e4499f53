//! Searching served partitions: checks, fan-out and the exact merge.
//!
//! Every partition answers with exact distances, so the merged top-k of
//! the partitions' answers is the collection's answer; nothing is
//! re-ranked after the merge. Partitions of one query share the best
//! `k`-th distance found so far ([`SharedKth`]), which lets each skip
//! reranking rows that cannot make the answer. A query is checked before
//! the collection is touched (and a coordinator runs the same check
//! before fanning out), so a bad query fails the same way wherever the
//! partitions live and never triggers a load.
//!
//! Parallelism goes where there is something to spread: one query's
//! partitions in parallel, a batch's queries in parallel (each query's
//! partitions in turn), a federation's partitions of every collection in
//! parallel.
//!
//! Why a deadline reaches the partitions: searching is CPU work that never
//! yields, so the timer of the call that asked cannot stop it. Each
//! partition's search looks at the call's deadline before it starts and
//! between its probed lists ([`rulake_index::Deadline`]); past it, the
//! query ends with [`EngineError::DeadlineExceeded`] and the rest of the
//! work (other partitions, other queries of a batch) is skipped.
//!
//! A federation names each collection once: names repeated (directly) are
//! searched once, so naming one collection 20,000 times costs what naming
//! it once does.

use crate::filter::{self, Selected};
use crate::plan::{effective, partition_params};
use crate::registry::Collection;
use crate::{
    CachedPartition, CollectionSpec, EngineError, FederatedHit, FederatedResponse, Result, RuLake,
    SearchResponse, MAX_K,
};
use rayon::prelude::*;
use rulake_index::{Deadline, SharedKth};
use rulake_types::{hit_order, merge_topk, Generation, Hit, SearchParams, Selection};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// What a collection answers a query from.
struct Answering {
    /// A newer generation still loading (see [`SearchResponse::loading`]).
    loading: Option<Generation>,
    /// The generation of `parts`.
    generation: Generation,
    parts: Vec<Arc<CachedPartition>>,
    /// Deleted positions per partition.
    masks: Vec<Arc<Vec<u64>>>,
}

/// What a search asks of each partition beyond the nearest rows: per
/// partition the rows its filter selects (empty without a filter), and
/// the payload columns every hit carries.
#[derive(Default)]
pub(crate) struct Selecting {
    selected: Vec<Selected>,
    columns: Vec<String>,
}

impl Selecting {
    /// `selection` evaluated over `parts` (each without its `masks` rows).
    pub(crate) fn new(
        spec: &CollectionSpec,
        selection: &Selection,
        parts: &[Arc<CachedPartition>],
        masks: &[Arc<Vec<u64>>],
    ) -> Result<Self> {
        selection.check_columns(&spec.payload_columns)?;
        let selected = match &selection.filter {
            None => Vec::new(),
            Some(f) => parts
                .par_iter()
                .zip(masks)
                .map(|(p, m)| filter::select(p, m, f))
                .collect::<Result<_>>()?,
        };
        Ok(Selecting {
            selected,
            columns: selection.columns.clone(),
        })
    }

    /// What partition `i` of the search asks.
    pub(crate) fn part(&self, i: usize) -> PartSelect<'_> {
        PartSelect {
            selected: self.selected.get(i),
            columns: &self.columns,
        }
    }

    /// True when a filter narrows the search (live recall is then not
    /// sampled: the estimate and re-tuning are for unfiltered searches).
    pub(crate) fn filtered(&self) -> bool {
        !self.selected.is_empty()
    }
}

/// What one partition's search asks beyond the nearest rows.
#[derive(Clone, Copy, Default)]
pub(crate) struct PartSelect<'a> {
    selected: Option<&'a Selected>,
    columns: &'a [String],
}

/// One partition of a federated search and what its hits are reported
/// under.
struct FederatedPart {
    collection: String,
    generation: Generation,
    part: Arc<CachedPartition>,
    params: SearchParams,
    mask: Arc<Vec<u64>>,
    /// Index of this partition in its collection's `Selecting`.
    slot: usize,
    /// Position of its collection in the federation's `Selecting`s.
    collection_slot: usize,
}

impl RuLake {
    /// Check a query against a collection: `k` in range, the dimension,
    /// finite components. A coordinator checks before fanning out, so a
    /// bad query gets the same error wherever the partitions live.
    /// `nprobe` and `rerank` are never refused: each partition clamps them
    /// to the lists that exist and to [`crate::MAX_RERANK`]
    /// ([`rulake_index::split_search`]).
    pub fn check_query(spec: &CollectionSpec, query: &[f32], params: &SearchParams) -> Result<()> {
        if params.k == 0 || params.k > MAX_K {
            return Err(EngineError::InvalidArgument(format!(
                "k must be between 1 and {MAX_K}, got {}",
                params.k
            )));
        }
        if query.len() != spec.dim {
            return Err(EngineError::InvalidArgument(format!(
                "query has {} dimensions, collection {:?} has {}",
                query.len(),
                spec.name,
                spec.dim
            )));
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return Err(EngineError::InvalidArgument(format!(
                "query component {i} is not a finite number"
            )));
        }
        Ok(())
    }

    /// Bring `c` to what its consistency level allows to serve (see
    /// `freshness`) and take its partitions and delete masks.
    async fn answering(&self, c: &Arc<Collection>, deadline: Option<Instant>) -> Result<Answering> {
        let loading = self.ensure_current(c, deadline).await?;
        let (generation, parts) = self.serving_partitions(c).await?;
        let masks = self.masks(&c.spec.name, &parts);
        Ok(Answering {
            loading,
            generation,
            parts,
            masks,
        })
    }

    /// Search one collection.
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        params: SearchParams,
    ) -> Result<SearchResponse> {
        self.search_until(collection, query, params, None).await
    }

    /// Search one collection, answering by `deadline`: a `fresh`
    /// collection whose newer generation is still loading then answers
    /// from the one it has warm (see [`SearchResponse::loading`]), and a
    /// search still running at `deadline` stops there with
    /// [`EngineError::DeadlineExceeded`] (see the module docs).
    pub async fn search_until(
        &self,
        collection: &str,
        query: &[f32],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<SearchResponse> {
        self.search_selected(collection, query, params, &Selection::default(), deadline)
            .await
    }

    /// [`RuLake::search_until`] returning only rows that match
    /// `selection`'s filter, each hit with `selection`'s columns (see
    /// `filter` for the plans). A filter or column the collection's
    /// payload columns do not fit is [`EngineError::Filter`].
    pub async fn search_selected(
        &self,
        collection: &str,
        query: &[f32],
        params: SearchParams,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<SearchResponse> {
        let c = self.collection(collection)?;
        Self::check_query(&c.spec, query, &params)?;
        selection.check_columns(&c.spec.payload_columns)?;
        let a = self.answering(&c, deadline).await?;
        let sel = Selecting::new(&c.spec, selection, &a.parts, &a.masks)?;
        let retune = c.retune_for(&params);
        let params = effective(&c.spec, params);
        let plan = partition_params(&a.parts, params, c.retune.factor());
        let hits = search_partitions(
            &a.parts,
            &a.masks,
            &sel,
            query,
            &plan,
            params.k,
            deadline.into(),
        )?;
        let answered = a.parts.len() as u32;
        self.inner.queries.record(1, answered, c.spec.partitions);
        if !sel.filtered() {
            self.inner.recall.offer(
                &c.spec.name,
                query,
                &hits,
                &a.parts,
                &a.masks,
                params.k,
                retune,
            );
        }
        Ok(SearchResponse {
            hits,
            generation: a.generation,
            loading: a.loading,
            partitions_answered: answered,
            partitions_total: c.spec.partitions,
        })
    }

    /// Search one collection with many queries in one call (parallel over
    /// queries; one consistency check for the batch).
    pub async fn batch_search(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
    ) -> Result<Vec<SearchResponse>> {
        self.batch_search_until(collection, queries, params, None)
            .await
    }

    /// [`RuLake::batch_search`] answering by `deadline`, as
    /// [`RuLake::search_until`].
    pub async fn batch_search_until(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<Vec<SearchResponse>> {
        self.batch_search_selected(collection, queries, params, &Selection::default(), deadline)
            .await
    }

    /// [`RuLake::batch_search_until`] with one `selection` for every
    /// query, as [`RuLake::search_selected`] (the filter is evaluated
    /// once for the batch).
    pub async fn batch_search_selected(
        &self,
        collection: &str,
        queries: &[Vec<f32>],
        params: SearchParams,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<Vec<SearchResponse>> {
        let c = self.collection(collection)?;
        for q in queries {
            Self::check_query(&c.spec, q, &params)?;
        }
        selection.check_columns(&c.spec.payload_columns)?;
        let a = self.answering(&c, deadline).await?;
        let sel = Selecting::new(&c.spec, selection, &a.parts, &a.masks)?;
        let retune = c.retune_for(&params);
        let params = effective(&c.spec, params);
        let plan = partition_params(&a.parts, params, c.retune.factor());
        let answered = a.parts.len() as u32;
        self.inner
            .queries
            .record(queries.len(), answered, c.spec.partitions);
        queries
            .par_iter()
            .map(|q| {
                let hits = merge_partitions(
                    &a.parts,
                    &plan,
                    &a.masks,
                    &sel,
                    q,
                    params.k,
                    false,
                    deadline.into(),
                )?;
                if !sel.filtered() {
                    self.inner.recall.offer(
                        &c.spec.name,
                        q,
                        &hits,
                        &a.parts,
                        &a.masks,
                        params.k,
                        retune,
                    );
                }
                Ok(SearchResponse {
                    hits,
                    generation: a.generation.clone(),
                    loading: a.loading.clone(),
                    partitions_answered: answered,
                    partitions_total: c.spec.partitions,
                })
            })
            .collect()
    }

    /// Search several collections of one dimension and metric as one:
    /// every partition of every collection in parallel, one exact merge.
    pub async fn federated_search(
        &self,
        collections: &[&str],
        query: &[f32],
        params: SearchParams,
    ) -> Result<FederatedResponse> {
        self.federated_search_until(collections, query, params, None)
            .await
    }

    /// [`RuLake::federated_search`] answering by `deadline`, as
    /// [`RuLake::search_until`].
    pub async fn federated_search_until(
        &self,
        collections: &[&str],
        query: &[f32],
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<FederatedResponse> {
        self.federated_search_selected(collections, query, params, &Selection::default(), deadline)
            .await
    }

    /// [`RuLake::federated_search_until`] with `selection` applied to
    /// every collection, as [`RuLake::search_selected`]: each collection
    /// must keep every column the selection names.
    pub async fn federated_search_selected(
        &self,
        collections: &[&str],
        query: &[f32],
        params: SearchParams,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<FederatedResponse> {
        let cs = self.federation(collections, query, &params)?;
        for c in &cs {
            selection.check_columns(&c.spec.payload_columns)?;
        }
        let mut work = Vec::new();
        let mut selecting = Vec::new();
        let mut generations = BTreeMap::new();
        let mut loading = BTreeMap::new();
        let mut total = 0;
        for (ci, c) in cs.iter().enumerate() {
            let a = self.answering(c, deadline).await?;
            if let Some(g) = a.loading {
                loading.insert(c.spec.name.clone(), g);
            }
            total += c.spec.partitions;
            generations.insert(c.spec.name.clone(), a.generation.clone());
            selecting.push(Selecting::new(&c.spec, selection, &a.parts, &a.masks)?);
            let plan = partition_params(&a.parts, effective(&c.spec, params), c.retune.factor());
            for (slot, ((part, p), mask)) in a.parts.into_iter().zip(plan).zip(a.masks).enumerate()
            {
                work.push(FederatedPart {
                    collection: c.spec.name.clone(),
                    generation: a.generation.clone(),
                    part,
                    params: p,
                    mask,
                    slot,
                    collection_slot: ci,
                });
            }
        }
        let answered = work.len() as u32;
        self.inner.queries.record(1, answered, total);
        Ok(FederatedResponse {
            hits: federated_hits(&work, &selecting, query, params.k, deadline.into())?,
            generations,
            loading,
            partitions_answered: answered,
            partitions_total: total,
        })
    }

    /// The collections of a federated search, checked: at least one, all
    /// of one dimension and metric, the query valid for each. A name given
    /// more than once counts once (in the order first given).
    fn federation(
        &self,
        collections: &[&str],
        query: &[f32],
        params: &SearchParams,
    ) -> Result<Vec<Arc<Collection>>> {
        if collections.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no collections to search".into(),
            ));
        }
        let mut seen = HashSet::new();
        let cs: Vec<_> = collections
            .iter()
            .filter(|n| seen.insert(**n))
            .map(|n| self.collection(n))
            .collect::<Result<_>>()?;
        let first = &cs[0].spec;
        for c in &cs {
            if c.spec.dim != first.dim || c.spec.metric != first.metric {
                return Err(EngineError::FailedPrecondition(format!(
                    "federated collections must share dimension and metric: {:?} is {}d {}, {:?} is {}d {}",
                    first.name, first.dim, first.metric, c.spec.name, c.spec.dim, c.spec.metric
                )));
            }
            Self::check_query(&c.spec, query, params)?;
        }
        Ok(cs)
    }

    /// Per partition, the positions of deleted ids (empty when none are).
    pub(crate) fn masks(&self, name: &str, parts: &[Arc<CachedPartition>]) -> Vec<Arc<Vec<u64>>> {
        match self.deletes(name) {
            None => vec![Arc::default(); parts.len()],
            Some(d) => parts.iter().map(|p| d.mask(p)).collect(),
        }
    }
}

/// Every partition of a federated search in parallel, merged: nearest
/// first, ties by collection then id, an id once per collection.
fn federated_hits(
    work: &[FederatedPart],
    selecting: &[Selecting],
    query: &[f32],
    k: usize,
    deadline: Deadline,
) -> Result<Vec<FederatedHit>> {
    let shared = SharedKth::new(k);
    let lists: Vec<Vec<FederatedHit>> = work
        .par_iter()
        .map(|w| {
            let sel = selecting[w.collection_slot].part(w.slot);
            Ok(partition_hits(
                &w.part,
                &w.mask,
                sel,
                query,
                w.params,
                Some(&shared),
                deadline,
            )?
            .into_iter()
            .map(|h| FederatedHit {
                collection: w.collection.clone(),
                generation: w.generation.clone(),
                id: h.id,
                distance: h.distance,
                columns: h.columns,
            })
            .collect())
        })
        .collect::<Result<_>>()?;
    let mut all: Vec<FederatedHit> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.collection.cmp(&b.collection))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut seen = HashSet::new();
    all.retain(|h| seen.insert((h.collection.clone(), h.id.clone())));
    all.truncate(k);
    Ok(all)
}

/// One partition's answer to `query`. `shared`, when the query has other
/// partitions, is the `k`-th best distance they found so far: rows that cannot beat it are
/// not reranked (see `rulake_index::bound`), so a query split over many
/// partitions reads about as many full vectors as one over a single index.
/// With a filter, the partition searches only the rows `sel` selects, by
/// the plan `filter` chooses. Hits carry `sel`'s payload columns.
/// Past `deadline` (checked before the partition and between its probed
/// lists) the answer is [`EngineError::DeadlineExceeded`].
pub(crate) fn partition_hits(
    part: &CachedPartition,
    mask: &[u64],
    sel: PartSelect<'_>,
    query: &[f32],
    p: SearchParams,
    shared: Option<&SharedKth>,
    deadline: Deadline,
) -> Result<Vec<Hit>> {
    let ids = part.index.ids();
    let found = match sel.selected {
        Some(selected) => filter::search(part, selected, query, p, deadline)?.1,
        None => part
            .index
            .search_within(query, p.k, p.nprobe, p.rerank, mask, shared, deadline)
            .map_err(filter::index_error)?,
    };
    Ok(found
        .into_iter()
        .map(|(pos, distance)| Hit {
            id: ids.get(pos),
            distance,
            columns: part.payload.row(pos, sel.columns),
        })
        .collect())
}

/// A partition's answer with its place in the collection's partition list.
type Numbered = (usize, Result<Vec<Hit>>);

/// Fan out over partitions in parallel and merge exactly, giving up at
/// `deadline`.
fn search_partitions(
    parts: &[Arc<CachedPartition>],
    masks: &[Arc<Vec<u64>>],
    sel: &Selecting,
    query: &[f32],
    plan: &[SearchParams],
    k: usize,
    deadline: Deadline,
) -> Result<Vec<Hit>> {
    if parts.len() == 1 {
        let mut hits = partition_hits(
            &parts[0],
            &masks[0],
            sel.part(0),
            query,
            plan[0],
            None,
            deadline,
        )?;
        hits.sort_by(hit_order);
        return Ok(hits);
    }
    // One task per thread, not per partition: the calling thread searches
    // one group of partitions itself while pool threads take the others.
    // With more tasks than cores the calling thread and the pool's threads
    // share cores, and a query waits for a preempted thread's next time
    // slice; with fewer the cores idle. The calling thread counts as one of
    // them, so the pool wakes only as many threads as it needs.
    let groups = parts.len().min(rayon::current_num_threads().max(1));
    let shared = SharedKth::new(k);
    let group = |g: usize| -> Vec<Numbered> {
        (g..parts.len())
            .step_by(groups)
            .map(|i| {
                let hits = partition_hits(
                    &parts[i],
                    &masks[i],
                    sel.part(i),
                    query,
                    plan[i],
                    Some(&shared),
                    deadline,
                );
                (i, hits)
            })
            .collect()
    };
    let slots: Vec<parking_lot::Mutex<Vec<Numbered>>> = (1..groups)
        .map(|_| parking_lot::Mutex::new(Vec::new()))
        .collect();
    let first = rayon::in_place_scope(|s| {
        for (g, slot) in slots.iter().enumerate() {
            let group = &group;
            s.spawn(move |_| *slot.lock() = group(g + 1));
        }
        group(0)
    });
    let mut answers: Vec<Numbered> = first;
    for slot in slots {
        answers.extend(slot.into_inner());
    }
    // Partition order, so the first error reported is the same every time.
    answers.sort_by_key(|(i, _)| *i);
    let lists = answers
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>>>()?;
    Ok(merge_topk(lists, k))
}

/// `parts` searched at their planned parameters, on rayon's pool when
/// `parallel` (else one after another on this thread), and their answers
/// merged into the top `k`; past `deadline`, no answer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn merge_partitions(
    parts: &[Arc<CachedPartition>],
    plan: &[SearchParams],
    masks: &[Arc<Vec<u64>>],
    sel: &Selecting,
    query: &[f32],
    k: usize,
    parallel: bool,
    deadline: Deadline,
) -> Result<Vec<Hit>> {
    let shared = SharedKth::new(k);
    let hits_of = |i: usize| {
        partition_hits(
            &parts[i],
            &masks[i],
            sel.part(i),
            query,
            plan[i],
            Some(&shared),
            deadline,
        )
    };
    let lists = if parallel {
        (0..parts.len())
            .into_par_iter()
            .map(hits_of)
            .collect::<Result<Vec<_>>>()?
    } else {
        (0..parts.len()).map(hits_of).collect::<Result<Vec<_>>>()?
    };
    Ok(merge_topk(lists, k))
}
