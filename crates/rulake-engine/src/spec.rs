//! What a collection is, and what a search answers.
//!
//! These are plain values, apart from the engine, because they cross
//! its boundary: a coordinator builds and validates a spec before any
//! node holds the collection (so a bad spec is refused once, with the
//! same error everywhere), and the API layer serialises the answers. What
//! an [`Alter`] may change is exactly what needs no rebuild of cached
//! partitions.

use crate::error::{EngineError, Result};
use rulake_index::{BuildParams, DEFAULT_RERANK, DEFAULT_TARGET_RECALL};
use rulake_types::payload::MAX_PAYLOAD_COLUMNS;
use rulake_types::{Consistency, Filter, Generation, Hit, Metric, Value, VectorId};
use serde::Serialize;
use std::collections::BTreeMap;

/// A collection: a source read as `partitions` partitions of one dimension and metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectionSpec {
    /// Collection name.
    pub name: String,
    /// Name of a registered source.
    pub source: String,
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// Partitions `P`.
    pub partitions: u32,
    /// When the source is checked.
    pub consistency: Consistency,
    /// Default rerank factor (candidates reranked exactly = `k × rerank`).
    pub rerank: usize,
    /// Default lists probed per partition (`None`: what each partition
    /// calibrated for `target_recall`).
    pub nprobe: Option<usize>,
    /// Recall@10 a search at the defaults should reach: each partition
    /// calibrates its probes for it when built, and the engine probes more
    /// when the recall it measures on live queries falls short.
    pub target_recall: f32,
    /// Serve the source frozen at this version (time travel: a Delta table
    /// version, an Iceberg snapshot id) instead of following it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Scalar columns of the source kept beside the vectors, by row, so
    /// searches can filter on them and return them. Immutable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payload_columns: Vec<String>,
    /// Only rows matching this filter are kept: files and row groups the
    /// lake's statistics rule out are never read, other rows are dropped
    /// as they are read. Its columns may be any columns of the source.
    /// Immutable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standing_filter: Option<Filter>,
    /// Index build parameters.
    #[serde(skip)]
    pub build: BuildParams,
}

/// Most partitions a collection may have.
pub const MAX_PARTITIONS: u32 = 4096;

impl CollectionSpec {
    /// A spec with defaults: l2, one partition, eventual (30 s), rerank 20.
    pub fn new(name: &str, source: &str, dim: usize) -> Self {
        CollectionSpec {
            name: name.to_owned(),
            source: source.to_owned(),
            dim,
            metric: Metric::L2,
            partitions: 1,
            consistency: Consistency::default(),
            rerank: DEFAULT_RERANK,
            nprobe: None,
            target_recall: DEFAULT_TARGET_RECALL,
            pin: None,
            payload_columns: Vec::new(),
            standing_filter: None,
            build: BuildParams::default(),
        }
    }

    /// Keep these payload columns of the source.
    pub fn payload_columns<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.payload_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Keep only the rows matching `filter` (see [`Self::standing_filter`]).
    pub fn standing_filter(mut self, filter: Filter) -> Self {
        self.standing_filter = Some(filter);
        self
    }

    /// Set the metric.
    pub fn metric(mut self, m: Metric) -> Self {
        self.metric = m;
        self
    }

    /// Set the number of partitions.
    pub fn partitions(mut self, p: u32) -> Self {
        self.partitions = p;
        self
    }

    /// Set the consistency level.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.consistency = c;
        self
    }

    /// Set the default rerank factor.
    pub fn rerank(mut self, r: usize) -> Self {
        self.rerank = r;
        self
    }

    /// Set the default probe count.
    pub fn nprobe(mut self, n: Option<usize>) -> Self {
        self.nprobe = n;
        self
    }

    /// Set the recall the defaults aim for.
    pub fn target_recall(mut self, r: f32) -> Self {
        self.target_recall = r;
        self
    }

    /// Pin the collection to one version of its source: a Delta table
    /// version (`12`, `delta-v12`) or an Iceberg snapshot id.
    pub fn pin(mut self, version: impl Into<String>) -> Self {
        self.pin = Some(version.into());
        self
    }

    /// Check the spec without creating anything (name, dimension,
    /// partitions, rerank, nprobe).
    pub fn validate(&self) -> Result<()> {
        crate::registry::valid_name("collection", &self.name)?;
        let bad = |m: String| Err(EngineError::InvalidArgument(m));
        if self.dim == 0 || self.dim > 65_536 {
            return bad(format!("dimension must be in 1..=65536, got {}", self.dim));
        }
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return bad(format!(
                "partitions must be in 1..={MAX_PARTITIONS}, got {}",
                self.partitions
            ));
        }
        if self.rerank == 0 {
            return bad("rerank factor must be at least 1".into());
        }
        if self.nprobe == Some(0) {
            return bad("nprobe must be at least 1".into());
        }
        if !(self.target_recall > 0.0 && self.target_recall <= 1.0) {
            return bad(format!(
                "target recall must be in (0, 1], got {}",
                self.target_recall
            ));
        }
        check_payload_columns(&self.payload_columns)?;
        if let Some(f) = &self.standing_filter {
            check_standing_filter(f)?;
        }
        Ok(())
    }
}

/// Payload column names: at most [`MAX_PAYLOAD_COLUMNS`], each non-empty,
/// at most 256 bytes, without control characters, and each once.
pub fn check_payload_columns(columns: &[String]) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidArgument(m));
    if columns.len() > MAX_PAYLOAD_COLUMNS {
        return bad(format!(
            "at most {MAX_PAYLOAD_COLUMNS} payload columns, got {}",
            columns.len()
        ));
    }
    for (i, c) in columns.iter().enumerate() {
        if c.trim().is_empty() || c.len() > 256 || c.chars().any(char::is_control) {
            return bad(format!(
                "payload column {c:?} must be 1-256 bytes without control characters"
            ));
        }
        if columns[..i].contains(c) {
            return bad(format!("payload column {c:?} is named twice"));
        }
    }
    Ok(())
}

/// A standing filter's shape (depth, terms, ranges with a bound); which
/// columns exist, and of which type, is the source's to say, at load.
pub fn check_standing_filter(f: &Filter) -> Result<()> {
    let columns: Vec<String> = f.columns().into_iter().map(str::to_owned).collect();
    f.check_columns(&columns)
        .map_err(|e| EngineError::InvalidArgument(format!("standing filter: {e}")))
}

/// Answer to a single-collection search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchResponse {
    /// Nearest first, exact distances.
    pub hits: Vec<Hit>,
    /// Source generation the answer was served from.
    pub generation: Generation,
    /// A newer generation of a `fresh` collection's source that was still
    /// loading when the deadline left no more time to wait for it: the
    /// answer is from `generation`, the one warm, and a later query gets
    /// this one.
    pub loading: Option<Generation>,
    /// Partitions that answered.
    pub partitions_answered: u32,
    /// Partitions of the collection.
    pub partitions_total: u32,
}

/// One hit of a federated search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FederatedHit {
    /// Collection the hit came from.
    pub collection: String,
    /// Generation of that collection's source it was served from.
    pub generation: Generation,
    /// Id.
    pub id: VectorId,
    /// Exact distance.
    pub distance: f32,
    /// The payload columns the search asked for.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, Value>,
}

/// Answer to a federated search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FederatedResponse {
    /// Nearest first over all collections.
    pub hits: Vec<FederatedHit>,
    /// Generation served per collection.
    pub generations: BTreeMap<String, Generation>,
    /// Per collection that answered from an older generation while a
    /// newer one loads (see [`SearchResponse::loading`]), the newer one.
    pub loading: BTreeMap<String, Generation>,
    /// Partitions that answered.
    pub partitions_answered: u32,
    /// Partitions over all collections.
    pub partitions_total: u32,
}

/// A collection's spec and state.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionInfo {
    /// The spec.
    pub spec: CollectionSpec,
    /// Generation serving now (none before the first load).
    pub generation: Option<Generation>,
    /// Rows the source listed at that generation.
    pub source_rows: u64,
    /// Live vectors in cached partitions.
    pub vectors_cached: u64,
    /// Partitions in the cache.
    pub partitions_warm: u32,
    /// Last refresh error, if unresolved.
    pub last_error: Option<String>,
    /// The factor live re-tuning puts on the calibrated probes (1 until
    /// measured recall falls below `spec.target_recall`).
    pub probe_factor: f32,
}

/// Changes to a collection that need no rebuild. `None` keeps a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alter {
    /// New consistency level.
    pub consistency: Option<Consistency>,
    /// New default rerank factor.
    pub rerank: Option<usize>,
    /// New default nprobe (`Some(None)` returns to the index's default).
    pub nprobe: Option<Option<usize>>,
}

impl Alter {
    /// Apply the changes to a spec.
    pub fn apply_to(&self, spec: &mut CollectionSpec) {
        if let Some(c) = self.consistency {
            spec.consistency = c;
        }
        if let Some(r) = self.rerank {
            spec.rerank = r;
        }
        if let Some(n) = self.nprobe {
            spec.nprobe = n;
        }
    }
}
