//! The reference point of the demo and the benchmarks: the bare
//! `ruvector-rabitq` flat index (`RabitqPlusIndex`: 1-bit codes of whole
//! vectors, flat scan, exact rerank), wrapped so RuLake's IVF partitions can
//! be compared against it on one dataset.
//!
//! Why it lives here and not with the demo or the benchmarks: this crate is
//! the only one in the workspace that depends on `ruvector-rabitq`, and
//! keeping it that way keeps the library's version and API in one place.
//! Nothing in the query path uses it.

use ruvector_rabitq::{AnnIndex, RabitqPlusIndex};

/// A flat RaBitQ+ index over row positions.
pub struct FlatRabitq {
    inner: RabitqPlusIndex,
}

impl FlatRabitq {
    /// Build over row-major `vectors` with the given rerank factor.
    pub fn build(dim: usize, vectors: &[f32], rerank: usize) -> crate::Result<Self> {
        let items = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i, v.to_vec()))
            .collect();
        let inner = RabitqPlusIndex::from_vectors_parallel(dim, 42, rerank, items)
            .map_err(|e| crate::IndexError::Invalid(e.to_string()))?;
        Ok(FlatRabitq { inner })
    }

    /// Top-`k` row positions with exact squared L2 distances.
    pub fn search(&self, query: &[f32], k: usize) -> crate::Result<Vec<(u32, f32)>> {
        Ok(self
            .inner
            .search(query, k)
            .map_err(|e| crate::IndexError::Invalid(e.to_string()))?
            .into_iter()
            .map(|r| (r.id as u32, r.score))
            .collect())
    }

    /// Bytes held by the index.
    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }
}
