//! The shards' replies for one scan, made into one answer.
//!
//! Why the merge can be exact and still say little about generations:
//! every shard returns its exact top-k over the partitions it was asked,
//! so the top-k of the union is the answer, whichever replica answered.
//! Generations, though, are per partition, and during a refresh two
//! partitions may be served from different ones; the answer names the
//! generation most partitions were served from (and the newer one most
//! were still loading), weighting each reply by the partitions it covers.
//!
//! Why one failed group does not fail the scan: a partition no replica
//! answered is counted out (`answered` below `total`). Only a refusal of
//! the query itself (a bad argument), or no partition answering at all,
//! is the caller's error.

use super::routes::most_common;
use crate::{CoordinatorError, Result};
use rulake_proto::internal::v1 as pb;
use rulake_types::{merge_topk, Generation, Hit, VectorId};
use std::collections::BTreeMap;

/// What the shards answered for one collection.
#[derive(Debug)]
pub struct Fanned {
    /// Per query, the merged hits.
    pub hits: Vec<Vec<Hit>>,
    /// Generation most partitions were served from.
    pub generation: Generation,
    /// A newer generation some partitions are still loading (a `fresh`
    /// collection's shards answered from the one they had warm).
    pub loading: Option<Generation>,
    /// Partitions that answered.
    pub answered: u32,
    /// Partitions of the collection.
    pub total: u32,
}

/// One shard's answer to one scan request.
pub(super) struct Reply {
    pub(super) generation: String,
    pub(super) loading: String,
    /// Per query, that shard's top-k.
    pub(super) hits: Vec<Vec<Hit>>,
}

impl Reply {
    /// The wire reply in the coordinator's terms; hits whose id does not
    /// parse are left out.
    pub(super) fn from_wire(reply: pb::ScanReply) -> Reply {
        let hits = reply
            .results
            .into_iter()
            .map(|l| {
                l.hits
                    .into_iter()
                    .filter_map(|h| {
                        Some(Hit {
                            id: VectorId::from_key(&h.id)?,
                            distance: h.distance,
                            columns: crate::wire::columns_from(h.columns),
                        })
                    })
                    .collect()
            })
            .collect();
        Reply {
            generation: reply.generation,
            loading: reply.loading_generation,
            hits,
        }
    }
}

/// The replies of one scan, gathered as node groups finish.
pub(super) struct Merge {
    /// Per query, every reply's top-k.
    lists: Vec<Vec<Vec<Hit>>>,
    generations: BTreeMap<String, u32>,
    loading: BTreeMap<String, u32>,
    answered: u32,
    first_error: Option<CoordinatorError>,
}

impl Merge {
    /// Nothing gathered yet, for `queries` queries.
    pub(super) fn new(queries: usize) -> Merge {
        Merge {
            lists: vec![Vec::new(); queries],
            generations: BTreeMap::new(),
            loading: BTreeMap::new(),
            answered: 0,
            first_error: None,
        }
    }

    /// One node group's outcome: `n` partitions answered by `replies`, or
    /// why none was.
    pub(super) fn add(&mut self, outcome: Result<(u32, Vec<Reply>)>) {
        match outcome {
            Ok((n, replies)) => {
                self.answered += n;
                for reply in replies {
                    *self.generations.entry(reply.generation).or_default() += n;
                    if !reply.loading.is_empty() {
                        *self.loading.entry(reply.loading).or_default() += n;
                    }
                    for (i, hits) in reply.hits.into_iter().enumerate() {
                        if let Some(l) = self.lists.get_mut(i) {
                            l.push(hits);
                        }
                    }
                }
            }
            Err(e) => {
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
    }

    /// The answer over `total` partitions, `k` hits per query.
    pub(super) fn finish(self, total: u32, k: usize) -> Result<Fanned> {
        if let Some(e) = self.first_error {
            // A query the shards refuse (bad argument) is the caller's
            // error, not a partial answer.
            if matches!(e, CoordinatorError::InvalidArgument(_)) || self.answered == 0 && total > 0
            {
                return Err(e);
            }
        }
        Ok(Fanned {
            hits: self.lists.into_iter().map(|l| merge_topk(l, k)).collect(),
            generation: most_common(self.generations).unwrap_or_default(),
            loading: most_common(self.loading),
            answered: self.answered,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, distance: f32) -> Hit {
        Hit::new(VectorId::U64(id), distance)
    }

    fn reply(generation: &str, loading: &str, hits: Vec<Hit>) -> Reply {
        Reply {
            generation: generation.into(),
            loading: loading.into(),
            hits: vec![hits],
        }
    }

    #[test]
    fn merges_top_k_and_weights_generations_by_partitions() {
        let mut m = Merge::new(1);
        m.add(Ok((
            3,
            vec![reply("g2", "", vec![hit(1, 0.5), hit(2, 0.9)])],
        )));
        m.add(Ok((1, vec![reply("g1", "g2", vec![hit(3, 0.1)])])));
        let f = m.finish(4, 2).unwrap();
        assert_eq!(f.answered, 4);
        assert_eq!(f.total, 4);
        assert_eq!(f.generation, Generation("g2".into()));
        assert_eq!(f.loading, Some(Generation("g2".into())));
        let ids: Vec<_> = f.hits[0].iter().map(|h| h.id.clone()).collect();
        assert_eq!(ids, vec![VectorId::U64(3), VectorId::U64(1)]);
    }

    #[test]
    fn a_failed_group_is_counted_out_not_fatal() {
        let mut m = Merge::new(1);
        m.add(Ok((1, vec![reply("g", "", vec![hit(1, 0.0)])])));
        m.add(Err(CoordinatorError::Unavailable("down".into())));
        let f = m.finish(2, 10).unwrap();
        assert_eq!((f.answered, f.total), (1, 2));
        assert_eq!(f.loading, None);
    }

    #[test]
    fn a_refused_query_or_no_answer_at_all_is_an_error() {
        let mut m = Merge::new(1);
        m.add(Ok((1, vec![reply("g", "", vec![])])));
        m.add(Err(CoordinatorError::InvalidArgument("bad".into())));
        assert!(matches!(
            m.finish(2, 10),
            Err(CoordinatorError::InvalidArgument(_))
        ));

        let mut m = Merge::new(1);
        m.add(Err(CoordinatorError::Unavailable("first".into())));
        m.add(Err(CoordinatorError::Unavailable("second".into())));
        match m.finish(2, 10) {
            Err(CoordinatorError::Unavailable(msg)) => assert_eq!(msg, "first"),
            other => panic!("expected the first error, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_collection_answers_empty() {
        let f = Merge::new(2).finish(0, 10).unwrap();
        assert_eq!(f.hits, vec![Vec::<Hit>::new(), Vec::new()]);
        assert_eq!(f.generation, Generation::default());
    }
}
