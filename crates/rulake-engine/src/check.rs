//! One generation check at a time per collection, shared by the `fresh`
//! queries that arrived before it started.
//!
//! Why: a `fresh` query must see every write the lake acknowledged before
//! the query arrived, so it needs a look at the source that *started*
//! after its arrival. Asking the source once per query gives that, at the
//! price of one lake request (a LIST on an object store: tens of
//! milliseconds, billed) per query. Queries that arrive together can share
//! one look, as long as it starts after all of them arrived.
//!
//! So there is at most one check running, and at most one waiting to run:
//! a query that arrives while no check runs starts one; a query that
//! arrives while one runs (it may have started before the query, so it
//! does not count) waits for the next, which starts the moment the running
//! one ends and serves every query that arrived in between. Whatever the
//! number of concurrent queries, a check window (one check's duration) sees
//! at most two checks, and no query is answered from a look older than
//! itself.
//!
//! The checks run in a task of their own, so a query that stops waiting
//! (its deadline came) never strands the queries behind it, and a source
//! that panics answers with an error rather than parking every waiter.

use parking_lot::Mutex;
use rulake_lake::Source;
use rulake_types::Generation;
use std::sync::Arc;
use tokio::sync::watch;

/// What a check found: the source's generation, or what its failure said.
pub(crate) type Outcome = std::result::Result<Generation, String>;

/// Checks started and wanted (guarded together, so a query's choice of
/// check and the running check's choice to run another cannot interleave).
#[derive(Default)]
struct State {
    /// Number of the last check started (checks are numbered from 1).
    started: u64,
    /// Whether check `started` is still running.
    running: bool,
    /// Highest check number a query waits for.
    wanted: u64,
}

/// The last check that ended and what it found.
#[derive(Clone, Default)]
struct Ended {
    seq: u64,
    outcome: Option<Outcome>,
}

/// The single-flight generation check of one collection (see the module
/// docs).
pub(crate) struct GenerationCheck {
    state: Mutex<State>,
    ended: watch::Sender<Ended>,
}

impl Default for GenerationCheck {
    fn default() -> Self {
        GenerationCheck {
            state: Mutex::new(State::default()),
            ended: watch::Sender::new(Ended::default()),
        }
    }
}

impl GenerationCheck {
    /// The generation of `source` as seen by a check that started after
    /// this call: the running check's when none ran, the next one's
    /// otherwise.
    pub(crate) async fn after_now(self: &Arc<Self>, source: &Arc<dyn Source>) -> Outcome {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to run a shared check on: look alone.
            return source.generation().await.map_err(|e| e.to_string());
        };
        let mut ended = self.ended.subscribe();
        let (need, start) = {
            let mut s = self.state.lock();
            if s.running {
                s.wanted = s.started + 1;
                (s.started + 1, false)
            } else {
                s.started += 1;
                s.running = true;
                s.wanted = s.started;
                (s.started, true)
            }
        };
        if start {
            rt.spawn(self.clone().run(source.clone(), need));
        }
        let outcome = match ended.wait_for(|e| e.seq >= need).await {
            Ok(e) => e.outcome.clone(),
            // The sender lives in `self`, which this call holds.
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| Err("the generation check ended without an answer".into()))
    }

    /// Run check `first`, then one more for as long as a query arrived
    /// while the last one ran.
    async fn run(self: Arc<Self>, source: Arc<dyn Source>, first: u64) {
        let mut seq = first;
        loop {
            let look = {
                let source = source.clone();
                tokio::spawn(async move { source.generation().await })
            };
            let outcome = match look.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!(
                    "generation check aborted: {}",
                    crate::freshness::panic_message(e)
                )),
            };
            self.ended.send_replace(Ended {
                seq,
                outcome: Some(outcome),
            });
            let mut s = self.state.lock();
            if s.wanted > seq {
                seq += 1;
                s.started = seq;
            } else {
                s.running = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulake_lake::{Listing, RowStream, Unit};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A source whose generation checks are counted and held until the
    /// gate opens; a check sees what `now` held when it started, as a
    /// listing sees the objects there when the lake answers it.
    #[derive(Debug)]
    struct Held {
        calls: AtomicU64,
        gate: watch::Sender<bool>,
        now: Mutex<u64>,
    }

    #[async_trait::async_trait]
    impl Source for Held {
        fn kind(&self) -> &'static str {
            "memory"
        }
        fn describe(&self) -> String {
            "held".into()
        }
        async fn generation(&self) -> rulake_lake::Result<Generation> {
            let seen = *self.now.lock();
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.subscribe().wait_for(|open| *open).await;
            Ok(Generation(format!("g{seen}")))
        }
        async fn list_units(&self) -> rulake_lake::Result<Listing> {
            unreachable!("a check only asks for the generation")
        }
        fn read_unit(&self, _: &Unit, _: usize) -> RowStream {
            unreachable!("a check reads no rows")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_that_arrive_during_a_check_share_the_next_one() {
        let held = Arc::new(Held {
            calls: AtomicU64::new(0),
            gate: watch::Sender::new(false),
            now: Mutex::new(1),
        });
        let source: Arc<dyn Source> = held.clone();
        let check = Arc::new(GenerationCheck::default());

        // The first query starts check 1, held at the lake.
        let first = tokio::spawn({
            let (check, source) = (check.clone(), source.clone());
            async move { check.after_now(&source).await }
        });
        while held.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A write lands, then 32 queries arrive while check 1 is held.
        *held.now.lock() = 2;
        let later: Vec<_> = (0..32)
            .map(|_| {
                let (check, source) = (check.clone(), source.clone());
                tokio::spawn(async move { check.after_now(&source).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(held.calls.load(Ordering::SeqCst), 1, "one check at a time");
        held.gate.send_replace(true);

        // The first query may take check 1's answer or the later one's
        // (both started after it arrived); every later query waited for a
        // check that started after it arrived, so it sees the write.
        let first = first.await.unwrap().unwrap();
        assert!(first == Generation("g1".into()) || first == Generation("g2".into()));
        for q in later {
            assert_eq!(q.await.unwrap().unwrap(), Generation("g2".into()));
        }
        assert_eq!(
            held.calls.load(Ordering::SeqCst),
            2,
            "33 queries, two checks"
        );
    }
}
