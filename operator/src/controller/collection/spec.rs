//! A collection's spec as the cluster's `rulake.v1` API sees it: the checks
//! the schema cannot make, the conversion to the API's types, and which
//! differences between the cluster's copy and ours may be altered in place.
//! Pure functions, so they are tested without a cluster and shared with
//! the example-manifest tests.

use crate::crd::{
    CollectionSource, Consistency, ConsistencyMode, Metric, RuLakeCluster, RuLakeCollectionSpec,
};
use rulake_proto::v1 as pb;

/// Why a spec cannot be served: a CamelCase reason and a message.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

/// Checks what the schema cannot (or what a cluster without CEL support
/// would let through).
pub fn validate(spec: &RuLakeCollectionSpec, cluster: &RuLakeCluster) -> Result<(), Invalid> {
    let invalid = |reason, message: String| Err(Invalid { reason, message });
    if spec.dimension == 0 {
        return invalid("InvalidDimension", "dimension must be > 0".into());
    }
    if !(1..=4096).contains(&spec.partitions) {
        return invalid(
            "InvalidPartitions",
            format!("partitions must be 1..=4096, not {}", spec.partitions),
        );
    }
    let shards = u32::try_from(cluster.spec.shards.replicas).unwrap_or(0);
    if spec.replication_factor == 0 || spec.replication_factor > shards {
        return invalid(
            "ReplicationExceedsShards",
            format!(
                "replicationFactor {} must be between 1 and the cluster's {shards} shard replicas",
                spec.replication_factor
            ),
        );
    }
    let s = &spec.source;
    let kinds = [
        s.parquet.is_some(),
        s.delta.is_some(),
        s.iceberg.is_some(),
        s.managed.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return invalid(
            "InvalidSource",
            "set exactly one of parquet, delta, iceberg, managed".into(),
        );
    }
    if let Some(ice) = &s.iceberg {
        if ice.metadata_location.is_some() == ice.catalog_table.is_some() {
            return invalid(
                "InvalidSource",
                "iceberg: set exactly one of metadataLocation, catalogTable".into(),
            );
        }
    }
    if spec.consistency.mode == ConsistencyMode::Eventual
        && spec.consistency.max_staleness_seconds.unwrap_or(0) == 0
    {
        return invalid(
            "InvalidConsistency",
            "eventual consistency needs maxStalenessSeconds > 0".into(),
        );
    }
    Ok(())
}

/// The `rulake.v1` spec of a collection named `name`.
pub fn to_proto(name: &str, spec: &RuLakeCollectionSpec) -> pb::CollectionSpec {
    pb::CollectionSpec {
        name: name.to_string(),
        source: Some(pb::Source {
            kind: source_kind(&spec.source),
        }),
        dimension: spec.dimension,
        metric: metric(spec.metric) as i32,
        partitions: spec.partitions,
        replication_factor: spec.replication_factor,
        consistency: Some(consistency(&spec.consistency)),
        rerank: spec.rerank,
        nprobe: spec.nprobe,
        target_recall: spec.target_recall,
        payload_columns: spec.payload_columns.clone(),
        standing_filter: spec.standing_filter.clone().unwrap_or_default(),
    }
}

/// The one source kind set (validation made sure there is one).
fn source_kind(s: &CollectionSource) -> Option<pb::source::Kind> {
    if let Some(p) = &s.parquet {
        Some(pb::source::Kind::Parquet(pb::ParquetSource {
            url: p.url.clone(),
            id_column: p.id_column.clone(),
            vector_column: p.vector_column.clone(),
            options: p.options.clone().into_iter().collect(),
        }))
    } else if let Some(d) = &s.delta {
        Some(pb::source::Kind::Delta(pb::DeltaSource {
            table_url: d.table_url.clone(),
            id_column: d.id_column.clone(),
            vector_column: d.vector_column.clone(),
            version: d.version,
            options: d.options.clone().into_iter().collect(),
        }))
    } else if let Some(i) = &s.iceberg {
        let table = match (&i.metadata_location, &i.catalog_table) {
            (Some(location), _) => Some(pb::iceberg_source::Table::MetadataLocation(
                location.clone(),
            )),
            (None, Some(t)) => Some(pb::iceberg_source::Table::CatalogTable(
                pb::iceberg_source::CatalogTable {
                    catalog: t.catalog.clone(),
                    namespace: t.namespace.clone(),
                    table: t.table.clone(),
                    uri: t.uri.clone().unwrap_or_default(),
                },
            )),
            (None, None) => None,
        };
        Some(pb::source::Kind::Iceberg(pb::IcebergSource {
            table,
            id_column: i.id_column.clone(),
            vector_column: i.vector_column.clone(),
            snapshot_id: i.snapshot_id,
            options: i.options.clone().into_iter().collect(),
        }))
    } else {
        s.managed
            .as_ref()
            .map(|_| pb::source::Kind::Managed(pb::ManagedSource {}))
    }
}

fn metric(m: Metric) -> pb::Metric {
    match m {
        Metric::L2 => pb::Metric::L2,
        Metric::Cosine => pb::Metric::Cosine,
        Metric::InnerProduct => pb::Metric::InnerProduct,
    }
}

fn consistency(c: &Consistency) -> pb::Consistency {
    let level = match c.mode {
        ConsistencyMode::Fresh => pb::consistency::Level::Fresh(pb::consistency::Fresh {}),
        ConsistencyMode::Eventual => pb::consistency::Level::Eventual(pb::consistency::Eventual {
            max_staleness_ms: c.max_staleness_seconds.unwrap_or(0).saturating_mul(1000),
        }),
    };
    pb::Consistency { level: Some(level) }
}

/// The fields that cannot change, by name, where `have` and `want` differ.
/// The cluster never shows source option values (they may be secrets), so
/// options are compared by key only.
pub(super) fn immutable_differences(
    have: &pb::CollectionSpec,
    want: &pb::CollectionSpec,
) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if option_keys_only(&have.source) != option_keys_only(&want.source) {
        differ.push("source");
    }
    if have.dimension != want.dimension {
        differ.push("dimension");
    }
    if have.metric != want.metric {
        differ.push("metric");
    }
    if have.partitions != want.partitions {
        differ.push("partitions");
    }
    differ
}

/// `source` with every option value blanked, as the cluster shows it.
fn option_keys_only(source: &Option<pb::Source>) -> Option<pb::Source> {
    let mut source = source.clone();
    let options = match source.as_mut().and_then(|s| s.kind.as_mut()) {
        Some(pb::source::Kind::Parquet(p)) => Some(&mut p.options),
        Some(pb::source::Kind::Delta(d)) => Some(&mut d.options),
        Some(pb::source::Kind::Iceberg(i)) => Some(&mut i.options),
        Some(pb::source::Kind::Managed(_)) | None => None,
    };
    for v in options.into_iter().flat_map(|o| o.values_mut()) {
        v.clear();
    }
    source
}

/// The AlterCollection call that turns `have` into `want`, if any field that
/// may change differs. Unset rerank/nprobe in `want` mean "server default"
/// and are left alone.
pub fn alter_request(
    have: &pb::CollectionSpec,
    want: &pb::CollectionSpec,
) -> Option<pb::AlterCollectionRequest> {
    let mut req = pb::AlterCollectionRequest {
        name: want.name.clone(),
        ..Default::default()
    };
    let mut changed = false;
    if have.consistency != want.consistency {
        req.consistency = want.consistency;
        changed = true;
    }
    if want.rerank.is_some() && have.rerank != want.rerank {
        req.rerank = want.rerank;
        changed = true;
    }
    if want.nprobe.is_some() && have.nprobe != want.nprobe {
        req.nprobe = want.nprobe;
        changed = true;
    }
    if have.replication_factor != want.replication_factor {
        req.replication_factor = Some(want.replication_factor);
        changed = true;
    }
    changed.then_some(req)
}
