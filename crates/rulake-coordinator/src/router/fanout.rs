//! One scan across the shards: group, send, gather.
//!
//! Why partitions are grouped by their first-choice node and sent as one
//! request per node: a node merges the top-k of all the partitions it was
//! asked, so the coordinator merges one list per node instead of one per
//! partition, and the number of requests grows with the nodes, not with
//! the partitions. Why each request's timeout is the client's deadline
//! less a merge margin: a shard that would otherwise wait for a newer
//! generation to load answers from the one it has warm, and does so while
//! the coordinator still has time to merge that answer.

use super::merge::{Fanned, Merge, Reply};
use super::routes::by_first_choice;
use super::shards::{status_error, traced};
use super::Router;
use crate::{CoordinatorError, Result};
use futures::future::join_all;
use rulake_catalog::CollectionRecord;
use rulake_proto::internal::v1 as pb;
use rulake_types::{SearchParams, Selection};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Time kept from a client's deadline to merge the shards' answers.
fn merge_margin(left: Duration) -> Duration {
    (left / 20).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

/// How much longer than its own `grpc-timeout` a request is waited for
/// before the coordinator gives up on it locally.
const LOCAL_GRACE: Duration = Duration::from_millis(200);

impl Router {
    /// Search `rec` with `queries` on the shards, answering by `deadline`;
    /// the selection's filter and output columns travel with every request.
    pub async fn scan(
        &self,
        rec: &CollectionRecord,
        queries: &[Vec<f32>],
        params: SearchParams,
        selection: &Selection,
        deadline: Instant,
    ) -> Result<Fanned> {
        let cands = self.candidates(rec);
        let total = rec.partitions;
        let base = self.scan_request(rec, queries, params, selection);
        // First choice per partition, grouped by node.
        // A partition with no replica at all is simply not asked: it
        // counts out of `answered`.
        let (groups, _) = by_first_choice(&cands);
        let nq = queries.len() as u64;
        let c = &self.inner.counters;
        c.queries.fetch_add(nq, Ordering::Relaxed);
        c.fanout.fetch_add(u64::from(total) * nq, Ordering::Relaxed);
        let runs = groups
            .into_iter()
            .map(|(node, parts)| self.run_group(node, parts, &cands, &base, deadline));
        let mut merge = Merge::new(queries.len());
        for outcome in join_all(runs).await {
            merge.add(outcome);
        }
        let fanned = merge.finish(total, params.k)?;
        if fanned.answered < total {
            c.partial.fetch_add(nq, Ordering::Relaxed);
        }
        Ok(fanned)
    }

    /// The scan request every node gets, but for its partitions.
    fn scan_request(
        &self,
        rec: &CollectionRecord,
        queries: &[Vec<f32>],
        params: SearchParams,
        selection: &Selection,
    ) -> pb::ScanRequest {
        pb::ScanRequest {
            collection: rec.name.clone(),
            partitions: Vec::new(),
            queries: queries
                .iter()
                .map(|q| pb::ScanQuery { values: q.clone() })
                .collect(),
            k: params.k as u32,
            nprobe: params.nprobe.map(|n| n as u32),
            rerank: params.rerank.map(|n| n as u32),
            collection_vectors: self.collection_vectors(rec),
            catalog_index: self.catalog_index(),
            filter: selection.filter.as_ref().map(crate::wire::filter_to),
            output_columns: selection.columns.clone(),
        }
    }

    /// Send one request to one node, to be answered by `deadline` less the
    /// merge margin (and within the configured request timeout).
    pub(super) async fn call(
        &self,
        node: u64,
        parts: Vec<u32>,
        base: &pb::ScanRequest,
        deadline: Instant,
    ) -> Result<Reply> {
        let shard = self.registered(node)?;
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        let _in_flight = shard.in_flight();
        let mut req = traced(tonic::Request::new(pb::ScanRequest {
            partitions: parts,
            ..base.clone()
        }));
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self
            .inner
            .cfg
            .request_timeout
            .min(left.saturating_sub(merge_margin(left)));
        req.set_timeout(timeout);
        let mut c = shard.client.clone();
        match tokio::time::timeout(timeout + LOCAL_GRACE, c.scan(req)).await {
            Ok(Ok(r)) => Ok(Reply::from_wire(r.into_inner())),
            Ok(Err(s)) => Err(status_error(node, &shard.addr, s)),
            Err(_) => Err(CoordinatorError::Unavailable(format!(
                "shard {node} ({}) did not answer within {timeout:?}",
                shard.addr
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_margin_is_a_twentieth_within_bounds() {
        assert_eq!(merge_margin(Duration::ZERO), Duration::from_millis(5));
        assert_eq!(
            merge_margin(Duration::from_millis(400)),
            Duration::from_millis(20)
        );
        assert_eq!(
            merge_margin(Duration::from_secs(10)),
            Duration::from_millis(50)
        );
    }
}
