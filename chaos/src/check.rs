//! The invariants, checked over a scenario's whole history.
//!
//! - I1: no acknowledged write lost; the catalog's histories linearizable.
//!   The alias table is one object (a switch moves both aliases in one
//!   step, so a read that saw half a switch is a violation); the managed
//!   commit sequence is a log whose order every read and every
//!   acknowledgement must agree with; tombstones only grow.
//! - I2: searches answer, or are flagged partial, while a replica of each
//!   partition lives: the longest stretch with no answered search is
//!   bounded.
//! - I3: every complete answer is the exact one: all ten hits of the
//!   static collection, and of the managed one the row whose own vector
//!   was asked (a row of its first batch, in every generation).
//! - I4: no process panicked, no call outlived its deadline by more than
//!   a second, resident memory stayed under the cache budget plus slack.
//! - I5: once the last fault is healed, placement, routes and answers
//!   converge within a bound.

use crate::load::{Answer, CatalogRead, Record, Write, WriteEvent};
use crate::system::CALL_DEADLINE;
use rulake_tests::linearizability::{check, Event, Model};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Longest stretch without an answered search (I2).
pub const MAX_OUTAGE: Duration = Duration::from_secs(5);
/// Longest convergence after healing (I5).
pub const MAX_CONVERGENCE: Duration = Duration::from_secs(10);
/// Resident memory allowed above the cache budget (I4): the runtime,
/// connection buffers and allocator slack of a small node.
pub const RSS_SLACK: u64 = 256 << 20;

/// Figures of a run, and the invariants it broke.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Searches answered in full, flagged partial, failed.
    pub answered: usize,
    /// Flagged partial.
    pub partial: usize,
    /// Failed on every coordinator.
    pub failed: usize,
    /// Complete answers that were not the exact ones.
    pub wrong: usize,
    /// Longest stretch with no answered search.
    pub outage: Duration,
    /// Writes acknowledged, and writes whose outcome is unknown.
    pub acked: usize,
    /// Writes that failed (outcome unknown).
    pub unknown: usize,
    /// Longest single try of any search.
    pub longest_call: Duration,
    /// Broken invariants, one line each (`I1: ...`).
    pub violations: Vec<String>,
}

/// The alias table as one object.
struct AliasTable;

/// An operation on the alias table.
enum AliasOp {
    Switch(BTreeMap<String, String>),
    Read(BTreeMap<String, String>),
}

impl Model for AliasTable {
    type State = BTreeMap<String, String>;
    type Op = AliasOp;
    fn step(&self, state: &Self::State, op: &AliasOp) -> Option<Self::State> {
        match op {
            AliasOp::Switch(to) => {
                let mut next = state.clone();
                next.extend(to.clone());
                Some(next)
            }
            AliasOp::Read(seen) => (seen == state).then(|| state.clone()),
        }
    }
}

/// Check the history of a run whose alias table started as `aliases`.
/// `outage_bound` is false for faults that take every replica away (the
/// outage is then a figure, not a violation).
pub fn verdict(record: &Record, aliases: &BTreeMap<String, String>, outage_bound: bool) -> Verdict {
    let mut v = Verdict::default();
    searches(record, &mut v);
    if outage_bound && v.outage > MAX_OUTAGE {
        v.violations.push(format!(
            "I2: no search answered for {:.1} s (bound {} s)",
            v.outage.as_secs_f64(),
            MAX_OUTAGE.as_secs()
        ));
    }
    if v.wrong > 0 {
        let first = record.searches.iter().find_map(|s| match &s.answer {
            Answer::Wrong(w) => Some(w.clone()),
            _ => None,
        });
        v.violations.push(format!(
            "I3: {} complete answers were not exact; first: {}",
            v.wrong,
            first.unwrap_or_default()
        ));
    }
    if v.longest_call > CALL_DEADLINE + crate::load::HANG_SLACK {
        v.violations.push(format!(
            "I4: a search try took {:.1} s, past its {} s deadline + 1 s",
            v.longest_call.as_secs_f64(),
            CALL_DEADLINE.as_secs()
        ));
    }
    v.acked = record.writes.iter().filter(|w| w.ret.is_some()).count();
    v.unknown = record.writes.len() - v.acked;
    v.violations.extend(alias_history(record, aliases));
    v.violations
        .extend(commit_log(&record.writes, &record.reads));
    v.violations
        .extend(tombstones(&record.writes, &record.reads));
    v
}

fn searches(record: &Record, v: &mut Verdict) {
    let mut answered_at: Vec<u64> = Vec::new();
    for s in &record.searches {
        v.longest_call = v.longest_call.max(Duration::from_micros(s.longest_try));
        match &s.answer {
            Answer::Exact => v.answered += 1,
            Answer::Partial => v.partial += 1,
            Answer::Wrong(_) => v.wrong += 1,
            Answer::Failed(_) => v.failed += 1,
        }
        if !matches!(s.answer, Answer::Failed(_)) {
            answered_at.push(s.ret);
        }
    }
    answered_at.sort_unstable();
    let last = record.searches.iter().map(|s| s.ret).max().unwrap_or(0);
    let gaps = answered_at.windows(2).map(|w| w[1] - w[0]);
    // A run that ends in failures counts its tail too.
    let tail = last.saturating_sub(answered_at.last().copied().unwrap_or(0));
    v.outage = Duration::from_micros(gaps.chain([tail]).max().unwrap_or(0));
}

fn alias_history(record: &Record, init: &BTreeMap<String, String>) -> Option<String> {
    let mut events: Vec<Event<AliasOp>> = record
        .writes
        .iter()
        .filter_map(|w| match &w.write {
            Write::Switch { to } => Some(Event {
                call: w.call,
                ret: w.ret,
                op: AliasOp::Switch(to.clone()),
            }),
            _ => None,
        })
        .collect();
    events.extend(record.reads.iter().map(|r| Event {
        call: r.call,
        ret: Some(r.ret),
        op: AliasOp::Read(r.aliases.clone()),
    }));
    events.sort_by_key(|e| e.call);
    (!check(&AliasTable, init.clone(), &events)).then(|| {
        format!(
            "I1: the alias table's history ({} switches and reads) is not linearizable",
            events.len()
        )
    })
}

/// The managed commit sequence as a log. Each acknowledged ingest names
/// its position; every position is taken once; an ingest acknowledged
/// before another began comes first; a read sees every ingest
/// acknowledged before it began and no more commits than had been
/// attempted by the time it returned.
fn commit_log(writes: &[WriteEvent], reads: &[CatalogRead]) -> Vec<String> {
    let ingests: Vec<(&WriteEvent, Option<u64>)> = writes
        .iter()
        .filter_map(|w| match w.write {
            Write::Ingest { seq, .. } => Some((w, seq)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeMap::new();
    for (w, seq) in &ingests {
        match (w.ret, seq) {
            (Some(_), None) => out.push(format!(
                "I1: an acknowledged ingest (called at {} µs) named no commit sequence",
                w.call
            )),
            (Some(_), Some(s)) => {
                if let Some(other) = seen.insert(*s, w.call) {
                    out.push(format!(
                        "I1: two acknowledged ingests (called at {other} and {} µs) both got commit {s}",
                        w.call
                    ));
                }
            }
            _ => {}
        }
    }
    let acked: Vec<(u64, u64, u64)> = ingests
        .iter()
        .filter_map(|(w, s)| Some((w.call, w.ret?, (*s)?)))
        .collect();
    for a in &acked {
        if let Some(b) = acked.iter().find(|b| a.1 < b.0 && a.2 > b.2) {
            out.push(format!(
                "I1: ingest acknowledged at {} µs got commit {}, after commit {} of an ingest begun later",
                a.1, a.2, b.2
            ));
        }
    }
    // The first setup batch is commit 1; ingests of the run come after.
    let base = 1;
    for r in reads {
        if let Some(a) = acked.iter().find(|a| a.1 < r.call && a.2 > r.seq) {
            out.push(format!(
                "I1: a read begun at {} µs saw commit {} after ingest commit {} was acknowledged at {} µs",
                r.call, r.seq, a.2, a.1
            ));
        }
        let attempted = ingests.iter().filter(|(w, _)| w.call < r.ret).count() as u64;
        if r.seq > base + attempted {
            out.push(format!(
                "I1: a read saw commit {} when only {} ingests had been attempted",
                r.seq, attempted
            ));
        }
    }
    if let Some(last) = reads.iter().max_by_key(|r| r.call) {
        if let Some(a) = acked.iter().max_by_key(|a| a.2) {
            if last.call > a.1 && last.seq < a.2 {
                out.push(format!(
                    "I1: acknowledged commit {} lost: the last read saw commit {}",
                    a.2, last.seq
                ));
            }
        }
    }
    out.truncate(5);
    out
}

/// Tombstones only grow, and a read sees every delete acknowledged before
/// it began.
fn tombstones(writes: &[WriteEvent], reads: &[CatalogRead]) -> Vec<String> {
    let mut out = Vec::new();
    let deletes: Vec<(u64, &Vec<u64>)> = writes
        .iter()
        .filter_map(|w| match &w.write {
            Write::Delete { ids } => Some((w.ret?, ids)),
            _ => None,
        })
        .collect();
    let mut by_call: Vec<&CatalogRead> = reads.iter().collect();
    by_call.sort_by_key(|r| r.call);
    let mut before: Option<&CatalogRead> = None;
    for r in by_call {
        if let Some((at, ids)) = deletes
            .iter()
            .find(|(at, ids)| *at < r.call && !ids.iter().all(|i| r.tombstones.contains(i)))
        {
            out.push(format!(
                "I1: a read begun at {} µs misses the tombstones of a delete acknowledged at {at} µs ({ids:?})",
                r.call
            ));
        }
        if let Some(b) = before.filter(|b| b.ret < r.call) {
            let lost: BTreeSet<_> = b.tombstones.difference(&r.tombstones).collect();
            if !lost.is_empty() {
                out.push(format!(
                    "I1: tombstones {lost:?} disappeared between two reads"
                ));
            }
        }
        before = Some(r);
    }
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{CatalogRead, WriteEvent};

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn read(call: u64, ret: u64, aliases: &[(&str, &str)], seq: u64) -> CatalogRead {
        CatalogRead {
            call,
            ret,
            aliases: map(aliases),
            seq,
            tombstones: BTreeSet::new(),
        }
    }

    fn switch(call: u64, ret: Option<u64>, to: &[(&str, &str)]) -> WriteEvent {
        WriteEvent {
            call,
            ret,
            write: Write::Switch { to: map(to) },
        }
    }

    fn ingest(call: u64, ret: Option<u64>, seq: Option<u64>) -> WriteEvent {
        WriteEvent {
            call,
            ret,
            write: Write::Ingest { batch: call, seq },
        }
    }

    #[test]
    fn half_of_a_two_alias_switch_is_a_violation() {
        let init = map(&[("front", "ext"), ("back", "m")]);
        let flipped = [("front", "m"), ("back", "ext")];
        let mut r = Record {
            writes: vec![switch(10, Some(20), &flipped)],
            reads: vec![
                read(0, 5, &[("front", "ext"), ("back", "m")], 1),
                read(30, 40, &flipped, 1),
            ],
            ..Default::default()
        };
        assert!(alias_history(&r, &init).is_none());
        // A read that saw only the first alias moved.
        r.reads
            .push(read(50, 60, &[("front", "m"), ("back", "m")], 1));
        assert!(alias_history(&r, &init).is_some());
        // A switch whose outcome is unknown may land late, or never.
        let r = Record {
            writes: vec![switch(10, None, &flipped)],
            reads: vec![
                read(30, 40, &[("front", "ext"), ("back", "m")], 1),
                read(50, 60, &flipped, 1),
            ],
            ..Default::default()
        };
        assert!(alias_history(&r, &init).is_none());
    }

    #[test]
    fn the_commit_log_catches_lost_reordered_and_phantom_commits() {
        let ok = [ingest(10, Some(20), Some(2)), ingest(30, Some(40), Some(3))];
        assert!(commit_log(&ok, &[read(50, 60, &[], 3)]).is_empty());
        // A read after an acknowledged commit that does not see it.
        assert!(!commit_log(&ok, &[read(50, 60, &[], 2)]).is_empty());
        // An ingest that began after another was acknowledged, committed first.
        let reordered = [ingest(10, Some(20), Some(3)), ingest(30, Some(40), Some(2))];
        assert!(!commit_log(&reordered, &[]).is_empty());
        // Two acknowledgements of one commit.
        let twice = [ingest(10, Some(20), Some(2)), ingest(30, Some(40), Some(2))];
        assert!(!commit_log(&twice, &[]).is_empty());
        // A commit nobody attempted.
        assert!(!commit_log(&ok[..1], &[read(50, 60, &[], 4)]).is_empty());
        // An unknown outcome may or may not be in the log.
        let unknown = [ingest(10, None, None)];
        assert!(commit_log(&unknown, &[read(50, 60, &[], 2)]).is_empty());
        assert!(commit_log(&unknown, &[read(50, 60, &[], 1)]).is_empty());
    }

    #[test]
    fn an_outage_is_the_longest_stretch_without_an_answer() {
        use crate::load::{Answer, Search};
        let s = |ret, answer| Search {
            call: ret,
            ret,
            longest_try: 1,
            answer,
        };
        let r = Record {
            searches: vec![
                s(1_000_000, Answer::Exact),
                s(2_000_000, Answer::Failed("down".into())),
                s(4_500_000, Answer::Partial),
                s(5_000_000, Answer::Failed("down".into())),
            ],
            ..Default::default()
        };
        let v = verdict(&r, &BTreeMap::new(), true);
        assert_eq!(v.outage, Duration::from_millis(3_500));
        assert_eq!((v.answered, v.partial, v.failed), (1, 1, 2));
        assert!(v.violations.is_empty(), "{:?}", v.violations);
    }
}
