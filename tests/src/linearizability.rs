//! A Wing–Gong linearizability checker, with the search memoised on
//! (linearized set, object state). Histories of a key/value store are
//! checked one key at a time (linearizability is local); an object whose
//! operations touch several keys at once (a switch of several aliases in
//! one step) is checked as one object whose state is all of them, through a
//! [`Model`]. An operation whose outcome is unknown (`ret == None`) may
//! take effect at any point after its invocation, or never.
//!
//! Kept rather than a library's tester because the histories of a fault
//! run are short per object (hundreds of operations), unknown outcomes are
//! the common case under faults, and the memoised search handles both in
//! one small function that the tests below pin down.

use std::collections::HashSet;
use std::hash::Hash;

/// An object's sequential specification: what each operation does to its
/// state, and whether a read's result fits the state.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// One operation with its observed result.
    type Op;
    /// The state after `op` from `state`, or `None` when `op`'s observed
    /// result is impossible in `state` (a read that saw something else).
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// What a client did to one register.
#[derive(Clone, Debug)]
pub enum Op {
    /// Wrote the value.
    Write(String),
    /// Read the value.
    Read(String),
}

/// A single register of strings.
pub struct Register;

impl Model for Register {
    type State = String;
    type Op = Op;
    fn step(&self, state: &String, op: &Op) -> Option<String> {
        match op {
            Op::Write(v) => Some(v.clone()),
            Op::Read(v) => (v == state).then(|| state.clone()),
        }
    }
}

/// One operation: invocation and completion times (any monotonic unit).
#[derive(Clone, Debug)]
pub struct Event<O = Op> {
    /// When it was invoked.
    pub call: u64,
    /// When it completed; `None` if the outcome is unknown (writes only).
    pub ret: Option<u64>,
    /// The operation and its result.
    pub op: O,
}

/// Whether `history` of one register starting at `init` is linearizable.
pub fn linearizable(init: &str, history: &[Event]) -> bool {
    check(&Register, init.to_owned(), history)
}

/// Whether `history` of an object specified by `model`, starting in
/// `init`, is linearizable.
pub fn check<M: Model>(model: &M, init: M::State, history: &[Event<M::Op>]) -> bool {
    let words = history.len().div_ceil(64).max(1);
    let mut search = Search {
        model,
        h: history,
        seen: HashSet::new(),
    };
    search.from(&mut vec![0u64; words], init)
}

struct Search<'a, M: Model> {
    model: &'a M,
    h: &'a [Event<M::Op>],
    seen: HashSet<(Vec<u64>, M::State)>,
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

impl<M: Model> Search<'_, M> {
    fn from(&mut self, done: &mut Vec<u64>, state: M::State) -> bool {
        let h = self.h;
        // Finished when every operation that completed has been linearized.
        if (0..h.len()).all(|i| is_done(done, i) || h[i].ret.is_none()) {
            return true;
        }
        if !self.seen.insert((done.clone(), state.clone())) {
            return false;
        }
        // The earliest completion among pending ops bounds which may go next.
        let bound = (0..h.len())
            .filter(|&i| !is_done(done, i))
            .filter_map(|i| h[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..h.len() {
            if is_done(done, i) || h[i].call > bound {
                continue;
            }
            let Some(next) = self.model.step(&state, &h[i].op) else {
                continue;
            };
            done[i / 64] |= 1 << (i % 64);
            if self.from(done, next) {
                return true;
            }
            done[i / 64] &= !(1 << (i % 64));
        }
        false
    }
}

#[test]
fn accepts_a_concurrent_history_and_rejects_a_stale_read() {
    let ev = |call, ret, op| Event { call, ret, op };
    let w = |v: &str| Op::Write(v.into());
    let r = |v: &str| Op::Read(v.into());
    // A read overlapping a write may see either value.
    let ok = [
        ev(0, Some(10), w("a")),
        ev(5, Some(6), r("0")),
        ev(7, Some(8), r("a")),
    ];
    assert!(linearizable("0", &ok));
    // An indeterminate write may take effect late...
    let late = [
        ev(0, None, w("a")),
        ev(5, Some(6), r("0")),
        ev(7, Some(8), r("a")),
    ];
    assert!(linearizable("0", &late));
    // ...or never.
    let never = [ev(0, None, w("a")), ev(5, Some(6), r("0"))];
    assert!(linearizable("0", &never));
    // A read after a completed write must not see the old value.
    let stale = [ev(0, Some(1), w("a")), ev(2, Some(3), r("0"))];
    assert!(!linearizable("0", &stale));
    // Values cannot flip back: a, then b, then a again with no third write.
    let flip = [
        ev(0, Some(1), w("a")),
        ev(2, Some(3), w("b")),
        ev(4, Some(5), r("b")),
        ev(6, Some(7), r("a")),
    ];
    assert!(!linearizable("0", &flip));
    // A value nobody wrote.
    assert!(!linearizable("0", &[ev(0, Some(1), r("z"))]));
}
