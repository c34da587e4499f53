//! A Wing–Gong linearizability checker for a single register, with the
//! search memoised on (linearized set, register value). Histories of a
//! key/value store are checked one key at a time (linearizability is local).
//! An operation whose outcome is unknown (`ret == None`) may take effect at
//! any point after its invocation, or never.

use std::collections::HashSet;

/// What a client did to one register.
#[derive(Clone, Debug)]
pub enum Op {
    /// Wrote the value.
    Write(String),
    /// Read the value.
    Read(String),
}

/// One operation: invocation and completion times (any monotonic unit).
#[derive(Clone, Debug)]
pub struct Event {
    /// When it was invoked.
    pub call: u64,
    /// When it completed; `None` if the outcome is unknown (writes only).
    pub ret: Option<u64>,
    /// The operation and its result.
    pub op: Op,
}

/// Whether `history` of one register starting at `init` is linearizable.
pub fn linearizable(init: &str, history: &[Event]) -> bool {
    let n = history.len();
    let words = n.div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, String)> = HashSet::new();
    search(history, &mut done, init.to_owned(), &mut seen)
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn search(
    h: &[Event],
    done: &mut Vec<u64>,
    value: String,
    seen: &mut HashSet<(Vec<u64>, String)>,
) -> bool {
    // Finished when every operation that completed has been linearized.
    if (0..h.len()).all(|i| is_done(done, i) || h[i].ret.is_none()) {
        return true;
    }
    if !seen.insert((done.clone(), value.clone())) {
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
        let next = match &h[i].op {
            Op::Write(v) => v.clone(),
            Op::Read(v) if *v == value => value.clone(),
            Op::Read(_) => continue,
        };
        done[i / 64] |= 1 << (i % 64);
        if search(h, done, next, seen) {
            return true;
        }
        done[i / 64] &= !(1 << (i % 64));
    }
    false
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
