//! The pool the 1-bit estimate fills: the `k × rerank` best scores of every
//! row of the probed lists.
//!
//! Why not a binary heap: a heap pays a sift on every admission, and most
//! admissions come early, while the pool's threshold is still loose, so the
//! sifts are spent on rows that are thrown out later. Here admitted rows are
//! appended to a buffer and, each time it holds `2 × cap`, one linear-time
//! selection keeps the best `cap` and tightens the threshold: amortised O(1)
//! a row. The order within the pool does not matter, since refinement
//! re-scores every candidate anyway.

/// A candidate from the 1-bit estimate pass.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cand {
    pub score: f32,
    pub pos: u32,
    /// Index into the probed lists and row within that list: where the
    /// candidate's 8-bit code lives.
    pub probe: u32,
    pub row: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(self.pos.cmp(&o.pos))
    }
}

/// Bounded candidate set keeping the `cap` smallest scores (see the module
/// docs for why it is not a heap).
pub(super) struct Candidates {
    cap: usize,
    buf: Vec<Cand>,
    /// The admission threshold: no candidate scoring this or worse can
    /// enter. +∞ until the first selection.
    pub worst: f32,
}

impl Candidates {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Candidates {
            cap,
            buf: Vec::with_capacity(2 * cap),
            worst: f32::INFINITY,
        }
    }

    #[inline]
    pub fn push(&mut self, c: Cand) {
        self.buf.push(c);
        if self.buf.len() == 2 * self.cap {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.cap {
            self.buf.select_nth_unstable(self.cap - 1);
            self.buf.truncate(self.cap);
            self.worst = self
                .buf
                .iter()
                .map(|c| c.score)
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }

    /// The best `cap` candidates, in no particular order.
    pub fn into_vec(mut self) -> Vec<Cand> {
        self.trim();
        self.buf
    }
}
