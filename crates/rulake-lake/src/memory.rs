//! An in-process, mutable source for embedding RuLake in an application and
//! for tests: add, upsert and delete rows, and every change bumps the
//! generation exactly like a rewritten lake file would.
//!
//! Like a lake that gains files, every `add` creates a new segment (a unit),
//! so the cache can extend its partitions incrementally; replacing or
//! deleting rows rewrites the segments that held them, which the cache
//! answers with a rebuild, as it does for a rewritten lake file.

use crate::error::{LakeError, Result};
use crate::source::{Listing, RowBatch, RowStream, Source, Unit};
use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::RwLock;
use rulake_types::{Generation, VectorId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Segment {
    rows: BTreeMap<VectorId, Arc<[f32]>>,
    /// Bumped whenever existing rows of the segment change.
    version: u64,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_segment: u64,
    segments: BTreeMap<u64, Segment>,
    /// Which segment holds each id.
    index: HashMap<VectorId, u64>,
}

/// A mutable in-memory source of one fixed dimension.
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    dim: usize,
    state: RwLock<State>,
}

impl MemorySource {
    /// An empty source named `name` holding `dim`-dimensional vectors.
    pub fn new(name: impl Into<String>, dim: usize) -> Arc<Self> {
        Arc::new(MemorySource {
            name: name.into(),
            dim,
            state: RwLock::new(State::default()),
        })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn check(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.dim {
            return Err(LakeError::Invalid(format!(
                "vector has {} dimensions, source {} expects {}",
                v.len(),
                self.name,
                self.dim
            )));
        }
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(LakeError::Invalid(format!(
                "vector has a non-finite component ({x}) at position {i}"
            )));
        }
        Ok(())
    }

    /// Collect `rows`, checking every vector before anything changes.
    fn checked<I>(&self, rows: I) -> Result<Vec<(VectorId, Vec<f32>)>>
    where
        I: IntoIterator<Item = (VectorId, Vec<f32>)>,
    {
        let rows: Vec<_> = rows.into_iter().collect();
        for (_, v) in &rows {
            self.check(v)?;
        }
        Ok(rows)
    }

    fn new_segment(st: &mut State, rows: Vec<(VectorId, Vec<f32>)>) {
        if rows.is_empty() {
            return;
        }
        let seg = st.next_segment;
        st.next_segment += 1;
        let mut segment = Segment::default();
        for (id, v) in rows {
            st.index.insert(id.clone(), seg);
            segment.rows.insert(id, v.into());
        }
        st.segments.insert(seg, segment);
    }

    /// Add new rows as one new segment; fails without changing anything if
    /// an id exists (in the source or twice in `rows`) or a vector is invalid.
    pub fn add<I>(&self, rows: I) -> Result<()>
    where
        I: IntoIterator<Item = (VectorId, Vec<f32>)>,
    {
        let rows = self.checked(rows)?;
        let mut st = self.state.write();
        let mut seen = HashSet::new();
        for (id, _) in &rows {
            if st.index.contains_key(id) || !seen.insert(id) {
                return Err(LakeError::DuplicateId { id: id.to_string() });
            }
        }
        Self::new_segment(&mut st, rows);
        st.generation += 1;
        Ok(())
    }

    /// Insert or replace rows: replaced rows rewrite their segment, new
    /// rows form a new segment.
    pub fn upsert<I>(&self, rows: I) -> Result<()>
    where
        I: IntoIterator<Item = (VectorId, Vec<f32>)>,
    {
        let rows = self.checked(rows)?;
        let mut st = self.state.write();
        let mut fresh = Vec::new();
        for (id, v) in rows {
            match st.index.get(&id).copied() {
                Some(seg) => {
                    let s = st.segments.get_mut(&seg).expect("indexed segment");
                    s.rows.insert(id, v.into());
                    s.version += 1;
                }
                None if fresh.iter().any(|(f, _)| f == &id) => {
                    fresh.retain(|(f, _)| f != &id);
                    fresh.push((id, v));
                }
                None => fresh.push((id, v)),
            }
        }
        Self::new_segment(&mut st, fresh);
        st.generation += 1;
        Ok(())
    }

    /// Delete rows by id; returns how many existed.
    pub fn delete<'a, I>(&self, ids: I) -> usize
    where
        I: IntoIterator<Item = &'a VectorId>,
    {
        let mut st = self.state.write();
        let mut n = 0;
        for id in ids {
            if let Some(seg) = st.index.remove(id) {
                let s = st.segments.get_mut(&seg).expect("indexed segment");
                s.rows.remove(id);
                s.version += 1;
                if s.rows.is_empty() {
                    st.segments.remove(&seg);
                }
                n += 1;
            }
        }
        if n > 0 {
            st.generation += 1;
        }
        n
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.state.read().index.len()
    }

    /// True when the source holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Source for MemorySource {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    async fn generation(&self) -> Result<Generation> {
        Ok(Generation(format!("mem-{}", self.state.read().generation)))
    }

    async fn list_units(&self) -> Result<Listing> {
        let st = self.state.read();
        let units = st
            .segments
            .iter()
            .map(|(seg, s)| Unit {
                key: format!("{}/segment-{seg:08}", self.name),
                object: format!("memory://{}/segment-{seg:08}", self.name),
                row_group: 0,
                rows: s.rows.len() as u64,
                object_size: 0,
                version: s.version.to_string(),
            })
            .collect();
        Ok(Listing {
            generation: Generation(format!("mem-{}", st.generation)),
            units,
            pruned: Vec::new(),
        })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        let st = self.state.read();
        let seg = unit
            .key
            .rsplit_once("segment-")
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .and_then(|n| st.segments.get(&n))
            .filter(|s| s.version.to_string() == unit.version);
        let res = match seg {
            _ if dim != self.dim => Err(LakeError::Invalid(format!(
                "collection expects {dim} dimensions, memory source {} holds {}",
                self.name, self.dim
            ))),
            // Rewritten or deleted since it was listed: like a vanished file.
            None => Err(LakeError::Vanished {
                path: unit.object.clone(),
            }),
            Some(s) => {
                let mut batch = RowBatch::default();
                for (id, v) in &s.rows {
                    batch.ids.push(id.clone());
                    batch.vectors.extend_from_slice(v);
                }
                Ok(batch)
            }
        };
        futures::stream::once(async move { res }).boxed()
    }
}
