//! Deleted ids of one collection, as position bitsets per partition.
//!
//! A delete must take effect on the next query, but a partition is shared
//! by concurrent searches and rebuilding or copying it per delete would
//! cost seconds at a million vectors. So the ids stay a set, and each
//! partition gets a bitset of the positions they occupy, computed once per
//! (partition, delete set) the first time a search needs it and handed to
//! the index's candidate filter.

use rulake_cache::CachedPartition;
use rulake_types::VectorId;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

/// A partition (held weakly) and the bitset of its deleted positions.
type Mask = (Weak<CachedPartition>, Arc<Vec<u64>>);

/// One collection's deleted ids and the bitsets computed from them.
pub(crate) struct Deletes {
    ids: HashSet<VectorId>,
    /// Bitsets by partition. The partition is held weakly and compared by
    /// pointer, so a rebuilt partition (a new value) gets a new bitset.
    masks: parking_lot::Mutex<Vec<Mask>>,
}

impl Deletes {
    pub(crate) fn new(ids: HashSet<VectorId>) -> Self {
        Deletes {
            ids,
            masks: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The bitset of deleted positions in `part`.
    pub(crate) fn mask(&self, part: &Arc<CachedPartition>) -> Arc<Vec<u64>> {
        let mut masks = self.masks.lock();
        masks.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, m)) = masks
            .iter()
            .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(part)))
        {
            return m.clone();
        }
        let table = part.index.ids();
        let mut bits = vec![0u64; table.len().div_ceil(64)];
        for pos in 0..table.len() as u32 {
            if self.ids.contains(&table.get(pos)) {
                bits[pos as usize / 64] |= 1 << (pos % 64);
            }
        }
        let m = Arc::new(bits);
        masks.push((Arc::downgrade(part), m.clone()));
        m
    }

    /// Live rows of `part` that the delete set hides.
    pub(crate) fn hidden_in(&self, part: &Arc<CachedPartition>) -> usize {
        let mask = self.mask(part);
        // Rows the index tombstoned itself are not live already.
        (0..part.index.len() as u32)
            .filter(|&p| mask[p as usize / 64] & (1 << (p % 64)) != 0)
            .filter(|&p| !part.index.is_tombstoned(p))
            .count()
    }
}
