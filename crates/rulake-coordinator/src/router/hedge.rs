//! One node's share of a scan: the first try, then retries or hedges.
//!
//! Why a slow request is duplicated rather than abandoned: the first try
//! may still be the fastest answer (it was the best replica when sent), so
//! after the hedge delay it races its duplicates on the partitions' next
//! replicas, and whichever covers the partitions first answers. A request
//! that fails outright is retried on those replicas instead, with nothing
//! to race. A refused query (bad argument) is never retried: another
//! replica would refuse it too.
//!
//! The outcome of one group is how many of its partitions were answered
//! and the replies that answered them; partitions left out are counted
//! out of the scan by the merge.

use super::merge::Reply;
use super::Router;
use crate::{CoordinatorError, Result};
use futures::future::{join_all, select, Either};
use rulake_proto::internal::v1 as pb;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Partitions answered, and the replies that cover them.
type Outcome = (u32, Vec<Reply>);

/// Requests to other replicas: per request, the partitions it covers and
/// how it went.
type Tried = Vec<(u32, Result<Reply>)>;

impl Router {
    /// Partitions `parts` first on `node`; on failure, or when slower than
    /// the hedge delay, on their other replicas too. Returns how many
    /// partitions answered and the replies that cover them.
    pub(super) async fn run_group(
        &self,
        node: u64,
        parts: Vec<u32>,
        cands: &[Vec<u64>],
        base: &pb::ScanRequest,
        deadline: Instant,
    ) -> Result<Outcome> {
        let n = parts.len() as u32;
        let primary = Box::pin(self.call(node, parts.clone(), base, deadline));
        let hedge = Box::pin(tokio::time::sleep(self.inner.cfg.hedge_delay));
        let (primary, hedged) = match select(primary, hedge).await {
            Either::Left((Ok(r), _)) => return Ok((n, vec![r])),
            Either::Left((Err(e), _)) => {
                if matches!(e, CoordinatorError::InvalidArgument(_)) {
                    return Err(e);
                }
                tracing::debug!(node, error = %e, "shard request failed; retrying on other replicas");
                (None, false)
            }
            Either::Right(((), primary)) => (Some(primary), true),
        };
        let (alt, uncovered) = alternates(node, &parts, cands);
        let counter = if hedged {
            &self.inner.counters.hedges
        } else {
            &self.inner.counters.retries
        };
        if !alt.is_empty() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // Not sent until awaited: a hedge with no other replica sends nothing.
        let others = self.call_each(&alt, base, deadline);
        match primary {
            None => settle(others.await, || {
                CoordinatorError::Unavailable(format!(
                    "no replica answered for {uncovered} partition(s) after shard {node} failed"
                ))
            }),
            Some(primary) if alt.is_empty() => primary.await.map(|r| (n, vec![r])),
            Some(primary) => race(primary, others, n).await,
        }
    }

    /// One request per node of `alt`, for its partitions, all at once.
    async fn call_each(
        &self,
        alt: &BTreeMap<u64, Vec<u32>>,
        base: &pb::ScanRequest,
        deadline: Instant,
    ) -> Tried {
        let calls = alt.iter().map(|(node, ps)| async move {
            (
                ps.len() as u32,
                self.call(*node, ps.clone(), base, deadline).await,
            )
        });
        join_all(calls).await
    }
}

/// For each of `parts`, its best replica other than `node` (from `cands`,
/// best first per partition), grouped by node; and how many partitions
/// have no other replica.
fn alternates(node: u64, parts: &[u32], cands: &[Vec<u64>]) -> (BTreeMap<u64, Vec<u32>>, u32) {
    let mut alt: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut uncovered = 0u32;
    for p in parts {
        match cands[*p as usize].iter().find(|c| **c != node) {
            Some(c) => alt.entry(*c).or_default().push(*p),
            None => uncovered += 1,
        }
    }
    (alt, uncovered)
}

/// A hedged first try (covering `n` partitions) against its duplicates.
/// The first try answers if it completes first, or if the duplicates
/// completed first but did not cover everything and it then succeeds;
/// otherwise whatever the duplicates covered answers.
async fn race<P, A>(primary: P, others: A, n: u32) -> Result<Outcome>
where
    P: Future<Output = Result<Reply>> + Unpin,
    A: Future<Output = Tried>,
{
    match select(primary, Box::pin(others)).await {
        Either::Left((Ok(r), _)) => Ok((n, vec![r])),
        Either::Left((Err(_), others)) => settle(others.await, || {
            CoordinatorError::Unavailable("no replica answered".into())
        }),
        Either::Right((tried, primary)) => {
            let (got, replies, _) = tally(tried);
            if got == n {
                return Ok((got, replies));
            }
            // Some alternates failed: the primary may still answer all.
            match primary.await {
                Ok(r) => Ok((n, vec![r])),
                Err(e) if got == 0 => Err(e),
                Err(_) => Ok((got, replies)),
            }
        }
    }
}

/// The partitions the successful requests cover, their replies, and the
/// last error among the rest.
fn tally(tried: Tried) -> (u32, Vec<Reply>, Option<CoordinatorError>) {
    let mut got = 0;
    let mut replies = Vec::new();
    let mut err = None;
    for (k, r) in tried {
        match r {
            Ok(r) => {
                got += k;
                replies.push(r);
            }
            Err(e) => err = Some(e),
        }
    }
    (got, replies, err)
}

/// What the requests covered, or, when they covered nothing, the last
/// error (`fallback` when none was sent).
fn settle(tried: Tried, fallback: impl FnOnce() -> CoordinatorError) -> Result<Outcome> {
    let (got, replies, err) = tally(tried);
    if got == 0 {
        return Err(err.unwrap_or_else(fallback));
    }
    Ok((got, replies))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::{pending, ready};

    fn reply(generation: &str) -> Reply {
        Reply {
            generation: generation.into(),
            loading: String::new(),
            hits: Vec::new(),
        }
    }

    fn down(msg: &str) -> CoordinatorError {
        CoordinatorError::Unavailable(msg.into())
    }

    fn gens(o: &Outcome) -> (u32, Vec<&str>) {
        (o.0, o.1.iter().map(|r| r.generation.as_str()).collect())
    }

    #[test]
    fn alternates_skip_the_failed_node_and_count_the_uncovered() {
        let cands = vec![vec![1, 2], vec![1], vec![1, 3, 2], vec![2, 1]];
        let (alt, uncovered) = alternates(1, &[0, 1, 2], &cands);
        assert_eq!(alt, BTreeMap::from([(2, vec![0]), (3, vec![2])]));
        assert_eq!(uncovered, 1);
    }

    #[test]
    fn settle_keeps_what_answered_or_the_last_error() {
        let o = settle(vec![(2, Ok(reply("a"))), (1, Err(down("x")))], || {
            down("none")
        })
        .unwrap();
        assert_eq!(gens(&o), (2, vec!["a"]));
        let e = settle(vec![(1, Err(down("x"))), (1, Err(down("y")))], || {
            down("none")
        });
        assert!(matches!(e, Err(CoordinatorError::Unavailable(m)) if m == "y"));
        let e = settle(Vec::new(), || down("none"));
        assert!(matches!(e, Err(CoordinatorError::Unavailable(m)) if m == "none"));
    }

    #[tokio::test]
    async fn a_first_try_that_answers_first_wins() {
        let o = race(Box::pin(ready(Ok(reply("primary")))), pending(), 3)
            .await
            .unwrap();
        assert_eq!(gens(&o), (3, vec!["primary"]));
    }

    #[tokio::test]
    async fn a_failed_first_try_leaves_the_duplicates() {
        let others = ready(vec![(1, Ok(reply("b"))), (1, Err(down("c")))]);
        let o = race(Box::pin(ready(Err(down("a")))), others, 2)
            .await
            .unwrap();
        assert_eq!(gens(&o), (1, vec!["b"]));
    }

    #[tokio::test]
    async fn duplicates_that_cover_everything_win() {
        let others = ready(vec![(1, Ok(reply("b"))), (1, Ok(reply("c")))]);
        let o = race(Box::pin(pending()), others, 2).await.unwrap();
        assert_eq!(gens(&o), (2, vec!["b", "c"]));
    }

    /// A first try that answers only after the duplicates have.
    fn late(r: Result<Reply>) -> std::pin::Pin<Box<impl Future<Output = Result<Reply>>>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            r
        })
    }

    #[tokio::test]
    async fn duplicates_that_fall_short_wait_for_the_first_try() {
        let half = || ready(vec![(1, Ok(reply("b"))), (1, Err(down("c")))]);
        let o = race(late(Ok(reply("primary"))), half(), 2).await.unwrap();
        assert_eq!(gens(&o), (2, vec!["primary"]));

        let o = race(late(Err(down("a"))), half(), 2).await.unwrap();
        assert_eq!(gens(&o), (1, vec!["b"]));

        let none = ready(vec![(2, Err(down("b")))]);
        let e = race(late(Err(down("a"))), none, 2).await;
        assert!(matches!(e, Err(CoordinatorError::Unavailable(m)) if m == "a"));
    }
}
