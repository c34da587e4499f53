//! Whether a collection may answer from what it serves, and what a query
//! waits for when it may not.
//!
//! The consistency level is a promise about generations, so this is
//! where the source is checked: a `fresh` collection asks the source for
//! its generation before every query (through `check`, which lets the
//! queries that arrived together share one look that started after all of
//! them) and, when it moved on, waits for the refresh (or joins one
//! already running); an `eventual` one only looks
//! at the age of its last check, refreshing in the background past half
//! its staleness bound and in line past all of it. Two rules hold
//! throughout: a failing lake never takes away what is being served (the
//! last good generation answers and the error goes to the statistics),
//! and a query with a deadline never waits so long for a newer
//! generation that it cannot answer from the one it has warm.
//!
//! A refresh only decides whether the source changed; building and
//! swapping in the new generation is `load`'s job.

use crate::registry::Collection;
use crate::{Result, RuLake};
use rulake_types::{Consistency, Generation};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time kept to answer after waiting for a load.
const ANSWER_MIN: Duration = Duration::from_millis(20);

/// Most time kept to answer after waiting for a load.
const ANSWER_MAX: Duration = Duration::from_millis(500);

/// Until when a query with `deadline` may wait for a newer generation: a
/// quarter of the time left (at least 20 ms, at most 500 ms) is kept to
/// search what is warm and send the answer.
pub fn answer_by(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    let keep = (left / 4).clamp(ANSWER_MIN, ANSWER_MAX);
    deadline.checked_sub(keep).unwrap_or(deadline)
}

impl RuLake {
    /// Check the source now and load a new generation if it changed.
    /// On failure the previous generation keeps serving.
    pub async fn refresh(&self, name: &str) -> Result<Generation> {
        let c = self.collection(name)?;
        self.refresh_collection(&c).await
    }

    /// Refresh `c` under its refresh lock, keeping its error state (the
    /// collection's and the cache statistics') in step with the outcome.
    pub(crate) async fn refresh_collection(&self, c: &Arc<Collection>) -> Result<Generation> {
        let _guard = c.refresh.lock().await;
        let result = self.refresh_locked(c).await;
        match &result {
            Ok(_) => {
                *c.last_error.lock() = None;
                self.inner.cache.clear_error(&c.spec.name);
            }
            Err(e) => {
                tracing::warn!(collection = %c.spec.name, error = %e, "refresh failed; previous generation keeps serving");
                *c.last_error.lock() = Some(e.to_string());
                self.inner.cache.record_error(&c.spec.name, e);
            }
        }
        result
    }

    /// List the source; an unchanged generation only renews the check
    /// time, a changed one is loaded (the caller holds `c.refresh`).
    async fn refresh_locked(&self, c: &Arc<Collection>) -> Result<Generation> {
        // A standing filter's pruning leaves out what it rules out here,
        // so nothing downstream ever sees those units.
        let listing = match &c.spec.standing_filter {
            Some(f) => c.source.list_units_pruned(f).await?,
            None => c.source.list_units().await?,
        };
        let unchanged = c
            .serving
            .read()
            .as_ref()
            .is_some_and(|s| s.listing.generation == listing.generation);
        if unchanged {
            if let Some(s) = c.serving.write().as_mut() {
                s.checked_at = Instant::now();
            }
            return Ok(listing.generation);
        }
        self.load_generation(c, listing).await
    }

    /// Make sure the collection may answer under its consistency level.
    ///
    /// A `fresh` collection whose source moved on starts (or joins) a
    /// refresh and waits for it, but with a `deadline` only until
    /// [`answer_by`] of it: past that it answers from the generation it
    /// has warm, and the newer generation, still loading in the
    /// background, is returned so the answer can say so. A slow load never
    /// fails a query that has something to serve.
    pub(crate) async fn ensure_current(
        &self,
        c: &Arc<Collection>,
        deadline: Option<Instant>,
    ) -> Result<Option<Generation>> {
        let age = c.serving.read().as_ref().map(|s| s.checked_at.elapsed());
        let Some(age) = age else {
            // Nothing to serve yet: the load is the answer's only way.
            let r = self.refresh_collection(c).await;
            if c.serving.read().is_none() {
                r?;
            }
            return Ok(None);
        };
        match c.spec.consistency {
            Consistency::Fresh => {
                let Some(newer) = self.newer_generation(c, deadline).await else {
                    return Ok(None);
                };
                Ok(self.wait_for_generation(c, newer, deadline).await)
            }
            Consistency::Eventual { max_staleness } => {
                if age > max_staleness {
                    // Too stale to serve: the refresh's error, if any, is
                    // in the stats and the last good generation serves.
                    let _ = self.refresh_collection(c).await;
                } else if age > max_staleness / 2 {
                    self.refresh_in_background(c);
                }
                Ok(None)
            }
        }
    }

    /// The source's generation when it is not the one `c` serves. `None`
    /// when it is (clearing an error the lake has recovered from), when
    /// the source cannot say (the error recorded; the last good
    /// generation serves), or when it has not said by [`answer_by`] of
    /// `deadline`: a lake that is down or slow (its client retrying a 503
    /// for seconds) must not fail a query that has a generation to serve,
    /// any more than a slow load may.
    async fn newer_generation(
        &self,
        c: &Collection,
        deadline: Option<Instant>,
    ) -> Option<Generation> {
        let check = c.check.after_now(&c.source);
        let checked = match deadline {
            Some(d) => match tokio::time::timeout_at(answer_by(d).into(), check).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(collection = %c.spec.name, "generation check outlasted the deadline; answering from the warm generation");
                    return None;
                }
            },
            None => check.await,
        };
        match checked {
            Ok(g) => {
                if self.serves(c, &g) {
                    if c.last_error.lock().take().is_some() {
                        // The lake is back to what is served: nothing is wrong any more.
                        self.inner.cache.clear_error(&c.spec.name);
                    }
                    return None;
                }
                Some(g)
            }
            Err(e) => {
                // Serve the last good generation; say so in the stats.
                self.inner.cache.record_error(&c.spec.name, &e);
                *c.last_error.lock() = Some(e.to_string());
                None
            }
        }
    }

    /// Refresh `c` until it serves `newer` or a refresh fails, waiting
    /// until [`answer_by`] of `deadline` at most; `Some(newer)` when that
    /// time ran out with the load still going.
    async fn wait_for_generation(
        &self,
        c: &Arc<Collection>,
        newer: Generation,
        deadline: Option<Instant>,
    ) -> Option<Generation> {
        let until = deadline.map(answer_by);
        // A refresh joined may have listed the source just before
        // it moved on; one more round picks the move up.
        for _ in 0..2 {
            let mut done = self.refresh_in_background(c);
            let end = done.wait_for(|running| !*running);
            match until {
                Some(t) => {
                    if tokio::time::timeout_at(t.into(), end).await.is_err() {
                        return Some(newer);
                    }
                }
                None => {
                    let _ = end.await;
                }
            }
            // A failed refresh leaves the last good generation
            // serving, its error in the stats.
            if self.serves(c, &newer) || c.last_error.lock().is_some() {
                return None;
            }
        }
        None
    }

    /// Whether `c` serves generation `g` now.
    fn serves(&self, c: &Collection, g: &Generation) -> bool {
        c.serving
            .read()
            .as_ref()
            .is_some_and(|s| s.listing.generation == *g)
    }

    /// Start a refresh of `c` in the background unless one runs already;
    /// the receiver sees `false` once it (either one) is over.
    fn refresh_in_background(&self, c: &Arc<Collection>) -> tokio::sync::watch::Receiver<bool> {
        let rx = c.background.subscribe();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return rx;
        };
        let started = c
            .background
            .send_if_modified(|running| !std::mem::replace(running, true));
        if started {
            let (engine, c) = (self.clone(), c.clone());
            rt.spawn(async move {
                // The refresh runs in its own task so that a panic inside a
                // source library surfaces here as a recorded error instead
                // of leaving `background` set and every waiter parked.
                let run = {
                    let (engine, c) = (engine.clone(), c.clone());
                    tokio::spawn(async move { engine.refresh_collection(&c).await })
                };
                if let Err(e) = run.await {
                    let msg = format!("refresh aborted: {}", panic_message(e));
                    tracing::error!(collection = %c.spec.name, error = %msg, "refresh task failed; previous generation keeps serving");
                    *c.last_error.lock() = Some(msg.clone());
                    engine.inner.cache.record_error(&c.spec.name, &msg);
                }
                c.background.send_replace(false);
            });
        }
        rx
    }
}

/// What a failed task said: the panic payload when it is text.
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(e) => e.to_string(),
    }
}
