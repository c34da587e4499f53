//! When a search must give up: the instant its caller stops waiting.
//!
//! Why the index checks it itself: a search is CPU work that never yields,
//! so a server's timer cannot interrupt it; a query probing every list of
//! a large partition (or a batch of them) would run to the end long after
//! its caller gave up, holding a worker thread. The search looks at the
//! clock between probed lists (every [`CHECK_EVERY_LISTS`]) and between
//! its stages, and stops with [`IndexError::DeadlineExceeded`]; reading
//! the clock costs tens of nanoseconds, a list's scan microseconds.

use crate::error::{IndexError, Result};
use std::time::Instant;

/// Probed lists scanned between two looks at the clock.
pub const CHECK_EVERY_LISTS: usize = 4;

/// Exact distances computed in the rerank between two looks at the clock.
pub(crate) const CHECK_EVERY_RERANKED: usize = 1024;

/// The instant a search must stop by, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: the search runs to the end.
    pub const NONE: Deadline = Deadline(None);

    /// Stop at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline(Some(at))
    }

    /// The instant, if any.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Whether the instant has passed.
    #[inline]
    pub fn passed(&self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// `Err(DeadlineExceeded)` once the instant has passed.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.passed() {
            Err(IndexError::DeadlineExceeded)
        } else {
            Ok(())
        }
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(d: Option<Instant>) -> Self {
        Deadline(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passes_only_at_its_instant() {
        assert!(Deadline::NONE.check().is_ok());
        let later = Deadline::at(Instant::now() + Duration::from_secs(3600));
        assert!(later.check().is_ok());
        let now = Deadline::at(Instant::now());
        assert!(matches!(now.check(), Err(IndexError::DeadlineExceeded)));
    }
}
