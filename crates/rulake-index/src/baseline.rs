//! The bare `ruvector-rabitq` flat index (`RabitqPlusIndex`: 1-bit codes of
//! whole vectors, flat scan, exact rerank), wrapped so the demo and the
//! benchmarks can compare RuLake's IVF partitions against it on one dataset.

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
