//! A catalog view for processes that are not meta members (shard nodes,
//! coordinators): poll any member for what it has applied, cheaply
//! (`if_newer_than` returns nothing when nothing changed), and publish it
//! in the same [`AppliedState`] shape a member shares, so the code above
//! does not care which kind of view it reads.
//!
//! Polling, not a log subscription: the catalog is small, the interval is
//! short, and a poller needs no membership change in the Raft group (a
//! learner per coordinator would make every scale-out a Raft change).

use crate::client::{CatalogClient, ReadConsistency};
use crate::store::AppliedState;
use openraft::{CommittedLeaderId, LogId};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A polled view of the catalog.
#[derive(Clone)]
pub struct Follower {
    state: Arc<RwLock<AppliedState>>,
    kick: Arc<Notify>,
    applied: watch::Receiver<u64>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Follower {
    /// Start polling through `client` every `interval`.
    pub fn spawn(client: CatalogClient, interval: Duration) -> Follower {
        let state = Arc::new(RwLock::new(AppliedState::default()));
        let kick = Arc::new(Notify::new());
        let (tx, applied) = watch::channel(0u64);
        let task = tokio::spawn(poll(client, interval, state.clone(), kick.clone(), tx));
        Follower {
            state,
            kick,
            applied,
            task: Arc::new(task),
        }
    }

    /// The view, shaped like a member's applied state.
    pub fn state(&self) -> Arc<RwLock<AppliedState>> {
        self.state.clone()
    }

    /// The log index the view reflects.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Changes of the applied index, for whoever must react to the catalog.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Poll now and wait until the view reflects `index` (at most `timeout`).
    pub async fn catch_up(&self, index: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut rx = self.applied.clone();
        while *rx.borrow_and_update() < index {
            self.kick.notify_one();
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), rx.changed()).await;
        }
        true
    }
}

async fn poll(
    client: CatalogClient,
    interval: Duration,
    state: Arc<RwLock<AppliedState>>,
    kick: Arc<Notify>,
    tx: watch::Sender<u64>,
) {
    let mut member = 0usize;
    let mut failures = 0u32;
    loop {
        let known = *tx.borrow();
        match client
            .read_newer(member, ReadConsistency::Local, known)
            .await
        {
            Ok(Some(r)) if r.applied_index > known => {
                {
                    let mut s = state.write();
                    s.catalog = r.catalog;
                    s.last_applied =
                        Some(LogId::new(CommittedLeaderId::new(0, 0), r.applied_index));
                }
                let _ = tx.send(r.applied_index);
                failures = 0;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                member = member.wrapping_add(1);
                if failures == 1 || failures % 50 == 0 {
                    tracing::warn!(error = %e, "catalog poll failed; the last view keeps serving");
                }
            }
        }
        let _ = tokio::time::timeout(interval, kick.notified()).await;
    }
}
