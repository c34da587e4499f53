//! Scrape-time metrics of a catalog member's Raft state: term, leader,
//! last log, commit and applied index, and the apply lag an operator
//! watches during a slow snapshot or a stuck state machine.
//!
//! Everything but the commit index comes from openraft's metrics watch,
//! read when Prometheus scrapes. openraft does not publish the commit index
//! there, so a small task reads it from the Raft state every
//! [`COMMIT_POLL`] while the collector lives.
//!
//! The series carry no member label: one member runs per process and the
//! scrape adds the target's own labels.

use crate::http::NotReady;
use crate::Result;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};
use rulake_catalog::CatalogNode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the commit index is refreshed.
pub const COMMIT_POLL: Duration = Duration::from_millis(500);

struct Families {
    term: IntGauge,
    leader: IntGauge,
    has_leader: IntGauge,
    is_leader: IntGauge,
    last_log: IntGauge,
    committed: IntGauge,
    applied: IntGauge,
    lag: IntGauge,
    voters: IntGauge,
}

impl Families {
    fn all(&self) -> [&IntGauge; 9] {
        [
            &self.term,
            &self.leader,
            &self.has_leader,
            &self.is_leader,
            &self.last_log,
            &self.committed,
            &self.applied,
            &self.lag,
            &self.voters,
        ]
    }
}

/// Reads a member's Raft metrics at scrape time (see the module docs).
pub struct RaftCollector {
    node: CatalogNode,
    committed: Arc<AtomicU64>,
    families: Mutex<Families>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for RaftCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCollector").finish_non_exhaustive()
    }
}

impl RaftCollector {
    /// A collector over `node`; starts the commit-index task on the
    /// current tokio runtime (it ends when the collector is dropped).
    pub fn start(node: CatalogNode) -> Result<Self> {
        let g = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        let families = Families {
            term: g("raft_term", "Current Raft term of this catalog member.")?,
            leader: g(
                "raft_leader_id",
                "Id of the leader this member knows (0: none).",
            )?,
            has_leader: g("raft_has_leader", "1 if this member knows a leader.")?,
            is_leader: g("raft_is_leader", "1 if this member is the leader.")?,
            last_log: g(
                "raft_last_log_index",
                "Index of the last entry in this member's log.",
            )?,
            committed: g(
                "raft_committed_index",
                "Highest log index this member knows is committed.",
            )?,
            applied: g(
                "raft_applied_index",
                "Highest log index applied to this member's catalog.",
            )?,
            lag: g(
                "raft_apply_lag",
                "Committed entries not yet applied to this member's catalog.",
            )?,
            voters: g(
                "raft_voters",
                "Voting members in the membership this member uses.",
            )?,
        };
        let descs = families
            .all()
            .into_iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        let committed = Arc::new(AtomicU64::new(0));
        let weak = Arc::downgrade(&committed);
        let raft = node.raft().clone();
        tokio::spawn(async move {
            loop {
                let c = raft
                    .with_raft_state(|st| st.committed.map_or(0, |c| c.index))
                    .await;
                let Some(slot) = weak.upgrade() else { break };
                match c {
                    Ok(c) => slot.store(c, Ordering::Relaxed),
                    // Raft stopped: the last value stays.
                    Err(_) => break,
                }
                drop(slot);
                tokio::time::sleep(COMMIT_POLL).await;
            }
        });
        Ok(RaftCollector {
            node,
            committed,
            families: Mutex::new(families),
            descs,
        })
    }
}

impl Collector for RaftCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let m = self.node.raft().metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let committed = self.committed.load(Ordering::Relaxed).max(applied);
        f.term.set(m.current_term as i64);
        f.leader.set(m.current_leader.unwrap_or(0) as i64);
        f.has_leader.set(i64::from(m.current_leader.is_some()));
        f.is_leader.set(i64::from(m.current_leader == Some(m.id)));
        f.last_log.set(m.last_log_index.unwrap_or(0) as i64);
        f.committed.set(committed as i64);
        f.applied.set(applied as i64);
        f.lag.set(committed.saturating_sub(applied) as i64);
        f.voters
            .set(m.membership_config.membership().voter_ids().count() as i64);
        f.all().into_iter().flat_map(|c| c.collect()).collect()
    }
}

/// Readiness of the meta role: the member knows a leader (so writes it
/// receives can be forwarded and committed). Catching up shows in
/// `rulake_raft_apply_lag`.
pub fn meta_ready(node: &CatalogNode) -> std::result::Result<(), NotReady> {
    let m = node.raft().metrics().borrow().clone();
    if m.current_leader.is_none() {
        return Err(NotReady {
            waiting: 1,
            detail: format!(
                "meta member {}: no known leader (term {})",
                m.id, m.current_term
            ),
        });
    }
    Ok(())
}
