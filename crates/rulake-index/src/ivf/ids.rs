//! Caller ids by row position.
//!
//! Why positions: lists, codes, tombstones and search results all name a row
//! by its `u32` position, so the hot paths never touch an id; an id is looked
//! up only for the rows a search returns or a delete names. Ids are kept
//! whole (never cut to a fixed width, so two never become one), in the
//! narrowest table that holds them: a plain `Vec<u64>` costs 8 bytes a row
//! where a table of `VectorId` costs 32.

use rulake_types::VectorId;

/// Row ids of a partition, by u32 position; never truncated.
#[derive(Clone, Debug, PartialEq)]
pub enum IdTable {
    /// All ids are integers.
    U64(Vec<u64>),
    /// All ids are strings.
    Str(Vec<String>),
    /// Both kinds (possible with the memory source).
    Mixed(Vec<VectorId>),
}

/// `ids` unwrapped by `take` when `is` holds for every one of them;
/// otherwise `ids` back, untouched.
fn all_of<T>(
    ids: Vec<VectorId>,
    is: fn(&VectorId) -> bool,
    take: fn(VectorId) -> Option<T>,
) -> Result<Vec<T>, Vec<VectorId>> {
    if ids.iter().all(is) {
        Ok(ids.into_iter().filter_map(take).collect())
    } else {
        Err(ids)
    }
}

/// Every id as an integer, or `ids` back if one is a string.
fn all_u64(ids: Vec<VectorId>) -> Result<Vec<u64>, Vec<VectorId>> {
    all_of(
        ids,
        |i| matches!(i, VectorId::U64(_)),
        |i| match i {
            VectorId::U64(v) => Some(v),
            VectorId::Str(_) => None,
        },
    )
}

/// Every id as a string, or `ids` back if one is an integer.
fn all_str(ids: Vec<VectorId>) -> Result<Vec<String>, Vec<VectorId>> {
    all_of(
        ids,
        |i| matches!(i, VectorId::Str(_)),
        |i| match i {
            VectorId::Str(s) => Some(s),
            VectorId::U64(_) => None,
        },
    )
}

impl IdTable {
    /// Pack ids into the most compact table that holds them.
    pub fn from_ids(ids: Vec<VectorId>) -> Self {
        match all_u64(ids) {
            Ok(v) => IdTable::U64(v),
            Err(ids) => match all_str(ids) {
                Ok(v) => IdTable::Str(v),
                Err(ids) => IdTable::Mixed(ids),
            },
        }
    }

    /// The id at a row position.
    pub fn get(&self, pos: u32) -> VectorId {
        match self {
            IdTable::U64(v) => VectorId::U64(v[pos as usize]),
            IdTable::Str(v) => VectorId::Str(v[pos as usize].clone()),
            IdTable::Mixed(v) => v[pos as usize].clone(),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            IdTable::U64(v) => v.len(),
            IdTable::Str(v) => v.len(),
            IdTable::Mixed(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append ids at the next positions, keeping the table as narrow as
    /// its contents allow.
    pub(super) fn extend(&mut self, ids: Vec<VectorId>) {
        let ids = match self {
            IdTable::U64(v) => match all_u64(ids) {
                Ok(more) => {
                    v.extend(more);
                    return;
                }
                Err(ids) => ids,
            },
            IdTable::Str(v) => match all_str(ids) {
                Ok(more) => {
                    v.extend(more);
                    return;
                }
                Err(ids) => ids,
            },
            IdTable::Mixed(_) => ids,
        };
        let mut all: Vec<VectorId> = match std::mem::replace(self, IdTable::U64(Vec::new())) {
            IdTable::U64(v) => v.into_iter().map(VectorId::U64).collect(),
            IdTable::Str(v) => v.into_iter().map(VectorId::Str).collect(),
            IdTable::Mixed(v) => v,
        };
        all.extend(ids);
        *self = IdTable::from_ids(all);
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        match self {
            IdTable::U64(v) => v.len() * 8,
            IdTable::Str(v) => v.iter().map(|s| s.len() + 24).sum(),
            IdTable::Mixed(v) => v
                .iter()
                .map(|i| match i {
                    VectorId::U64(_) => 32,
                    VectorId::Str(s) => 32 + s.len(),
                })
                .sum(),
        }
    }
}
