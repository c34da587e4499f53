//! A shared record of what clients did during a run, checked afterwards.
//!
//! Clients note each operation's invocation and completion on one
//! monotonic clock; an operation whose outcome is unknown (a write that
//! timed out or whose leader died) is kept with no completion, since it may
//! or may not have taken effect. The history is checked one key at a time
//! ([`crate::linearizability`]), which is sound because linearizability is
//! local.

use crate::linearizability::{linearizable, Event, Op};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One operation on one key.
#[derive(Clone, Debug)]
pub struct Record {
    /// The register it touched.
    pub key: String,
    /// When, what, and with what result.
    pub event: Event,
}

/// The run's history; clones share it.
#[derive(Clone, Debug)]
pub struct History {
    start: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            records: Arc::default(),
        }
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Self::default()
    }

    /// Microseconds since the history began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Record `op` on `key`, invoked at `call`, completed at `ret` (`None`:
    /// outcome unknown).
    pub fn record(&self, key: &str, call: u64, ret: Option<u64>, op: Op) {
        let r = Record {
            key: key.to_owned(),
            event: Event { call, ret, op },
        };
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Operations that completed.
    pub fn completed(&self) -> usize {
        self.records()
            .iter()
            .filter(|r| r.event.ret.is_some())
            .count()
    }

    /// The first key (of `keys`, each starting at `init`) whose history is
    /// not linearizable, with its events; `None` when all are.
    pub fn first_violation(&self, keys: &[&str], init: &str) -> Option<(String, Vec<Event>)> {
        let records = self.records();
        keys.iter().find_map(|k| {
            let events: Vec<Event> = records
                .iter()
                .filter(|r| r.key == *k)
                .map(|r| r.event.clone())
                .collect();
            (!linearizable(init, &events)).then(|| (k.to_string(), events))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let h = History::new();
        h.record("k", 0, Some(10), Op::Write("b".into()));
        h.record("k", 20, Some(30), Op::Read("b".into()));
        assert!(h.first_violation(&["k"], "a").is_none());
        h.record("k", 40, Some(50), Op::Read("a".into()));
        let (key, events) = h.first_violation(&["k"], "a").expect("violation");
        assert_eq!((key.as_str(), events.len()), ("k", 3));
        // An unknown write may have taken effect, or not.
        let h = History::new();
        h.record("k", 0, None, Op::Write("b".into()));
        h.record("k", 20, Some(30), Op::Read("b".into()));
        h.record("k", 40, Some(50), Op::Read("b".into()));
        assert!(h.first_violation(&["k"], "a").is_none());
        assert_eq!(h.completed(), 2);
    }
}
