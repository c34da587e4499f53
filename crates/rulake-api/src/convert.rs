//! Conversions between the wire types of `rulake.v1` and the engine's.
//!
//! Validation that only concerns the wire form (a missing required
//! message, an unknown enum value, an id without a value) happens here and
//! becomes `INVALID_ARGUMENT`; everything about meaning (dimension, names,
//! limits) is the engine's to check, so it is checked once.

use crate::status::invalid;
use rulake_engine::{CollectionInfo, CollectionSpec};
use rulake_proto::v1 as pb;
use rulake_types::{Consistency, Hit, Metric, SearchParams, VectorId};
use std::time::Duration;
use tonic::Status;

pub(crate) fn metric_from(m: i32) -> Result<Metric, Status> {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::L2) => Ok(Metric::L2),
        Ok(pb::Metric::Cosine) => Ok(Metric::Cosine),
        Ok(pb::Metric::InnerProduct) => Ok(Metric::InnerProduct),
        Ok(pb::Metric::Unspecified) => Err(invalid(
            "metric is required: METRIC_L2, METRIC_COSINE or METRIC_INNER_PRODUCT",
        )),
        Err(_) => Err(invalid(format!("unknown metric value {m}"))),
    }
}

pub(crate) fn metric_to(m: Metric) -> pb::Metric {
    match m {
        Metric::L2 => pb::Metric::L2,
        Metric::Cosine => pb::Metric::Cosine,
        Metric::InnerProduct => pb::Metric::InnerProduct,
    }
}

pub(crate) fn consistency_from(c: Option<pb::Consistency>) -> Result<Consistency, Status> {
    match c.and_then(|c| c.level) {
        None | Some(pb::consistency::Level::Fresh(_)) => Ok(Consistency::Fresh),
        Some(pb::consistency::Level::Eventual(e)) if e.max_staleness_ms > 0 => {
            Ok(Consistency::Eventual {
                max_staleness: Duration::from_millis(e.max_staleness_ms),
            })
        }
        Some(pb::consistency::Level::Eventual(_)) => Err(invalid(
            "eventual consistency needs max_staleness_ms greater than 0",
        )),
    }
}

pub(crate) fn consistency_to(c: Consistency) -> pb::Consistency {
    pb::Consistency {
        level: Some(match c {
            Consistency::Fresh => pb::consistency::Level::Fresh(pb::consistency::Fresh {}),
            Consistency::Eventual { max_staleness } => {
                pb::consistency::Level::Eventual(pb::consistency::Eventual {
                    max_staleness_ms: max_staleness.as_millis() as u64,
                })
            }
        }),
    }
}

pub(crate) fn id_to(id: VectorId) -> pb::VectorId {
    pb::VectorId {
        id: Some(match id {
            VectorId::U64(v) => pb::vector_id::Id::Num(v),
            VectorId::Str(s) => pb::vector_id::Id::Str(s),
        }),
    }
}

pub(crate) fn hit_to(h: Hit) -> pb::Hit {
    pb::Hit {
        id: Some(id_to(h.id)),
        distance: h.distance,
    }
}

pub(crate) fn query_from(v: Option<pb::Vector>) -> Result<Vec<f32>, Status> {
    v.map(|v| v.values)
        .ok_or_else(|| invalid("query vector is required"))
}

pub(crate) fn params_from(p: Option<pb::SearchParams>) -> Result<SearchParams, Status> {
    let p = p.ok_or_else(|| invalid("params with k is required"))?;
    Ok(SearchParams {
        k: p.k as usize,
        nprobe: p.nprobe.map(|n| n as usize),
        rerank: p.rerank.map(|r| r as usize),
    })
}

/// The engine-side spec of a collection and the source it reads. Each
/// collection gets a source of its own, registered under the collection's
/// name, so dropping one never affects another.
pub(crate) fn spec_from(spec: pb::CollectionSpec) -> Result<(CollectionSpec, pb::Source), Status> {
    let source = spec
        .source
        .clone()
        .ok_or_else(|| invalid("source is required"))?;
    let mut s = CollectionSpec::new(&spec.name, &spec.name, spec.dimension as usize)
        .metric(metric_from(spec.metric)?)
        .partitions(spec.partitions.max(1))
        .consistency(consistency_from(spec.consistency)?)
        .nprobe(spec.nprobe.map(|n| n as usize));
    if let Some(r) = spec.rerank {
        s = s.rerank(r as usize);
    }
    if spec.replication_factor > 1 {
        return Err(Status::failed_precondition(format!(
            "replication factor {} needs the distributed shard role; a single-process server holds one replica",
            spec.replication_factor
        )));
    }
    Ok((s, source))
}

pub(crate) fn info_to(info: CollectionInfo, source: Option<pb::Source>) -> pb::CollectionInfo {
    let spec = &info.spec;
    let state = match (&info.generation, &info.last_error) {
        (None, None) => pb::CollectionState::Loading,
        (None, Some(_)) => pb::CollectionState::Failed,
        (Some(_), Some(_)) => pb::CollectionState::Degraded,
        (Some(_), None) => pb::CollectionState::Ready,
    };
    pb::CollectionInfo {
        spec: Some(pb::CollectionSpec {
            name: spec.name.clone(),
            source,
            dimension: spec.dim as u32,
            metric: metric_to(spec.metric) as i32,
            partitions: spec.partitions,
            replication_factor: 1,
            consistency: Some(consistency_to(spec.consistency)),
            rerank: Some(spec.rerank as u32),
            nprobe: spec.nprobe.map(|n| n as u32),
        }),
        state: state as i32,
        generation: info.generation.map(|g| g.0).unwrap_or_default(),
        vector_count: info.vectors_cached,
        partitions_warm: info.partitions_warm,
        last_error: info.last_error.unwrap_or_default(),
        aliases: Vec::new(),
    }
}
