//! Conversions between the wire types of `rulake.v1` and the engine's.
//!
//! Validation that only concerns the wire form (a missing required
//! message, an unknown enum value, an id without a value) happens here and
//! becomes `INVALID_ARGUMENT`; everything about meaning (dimension, names,
//! limits) is the catalog's and the engine's to check, so it is checked once.
//!
//! Source options are write-only. They may hold credentials (a key, a
//! token, a SAS string), and whoever may read a collection need not hold
//! those, so every answer that shows a source ([`view_to`]: create,
//! describe, list, alter) shows each option's key with [`REDACTED`] for its
//! value, whoever asks, and scrubs the values, and a managed collection's
//! location on the server, out of the collection's last error.

use crate::status::invalid;
use rulake_catalog::{CollectionRecord, SourceKind};
use rulake_coordinator::{CollectionDef, CollectionView};
use rulake_proto::v1 as pb;
use rulake_types::{Consistency, Hit, Metric, SearchParams, VectorId};
use std::collections::BTreeMap;
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
        columns: rulake_coordinator::wire::columns_to(h.columns),
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

pub(crate) fn id_from(id: Option<pb::VectorId>) -> Result<VectorId, Status> {
    match id.and_then(|i| i.id) {
        Some(pb::vector_id::Id::Num(n)) => Ok(VectorId::U64(n)),
        Some(pb::vector_id::Id::Str(s)) if !s.is_empty() => Ok(VectorId::Str(s)),
        Some(pb::vector_id::Id::Str(_)) => Err(invalid("a string id must not be empty")),
        None => Err(invalid("every record and delete needs an id")),
    }
}

fn source_from(source: pb::Source) -> Result<(SourceKind, BTreeMap<String, String>), Status> {
    let opts = |m: std::collections::HashMap<String, String>| m.into_iter().collect();
    Ok(match source.kind {
        Some(pb::source::Kind::Parquet(p)) => (
            SourceKind::Parquet {
                url: p.url,
                id_column: p.id_column,
                vector_column: p.vector_column,
            },
            opts(p.options),
        ),
        Some(pb::source::Kind::Delta(d)) => (
            SourceKind::Delta {
                url: d.table_url,
                id_column: d.id_column,
                vector_column: d.vector_column,
                version: d.version,
            },
            opts(d.options),
        ),
        Some(pb::source::Kind::Iceberg(i)) => {
            let mut sql_catalog = None;
            let url = match i.table {
                Some(pb::iceberg_source::Table::MetadataLocation(m)) => m,
                Some(pb::iceberg_source::Table::CatalogTable(t)) if !t.uri.is_empty() => {
                    sql_catalog = Some(rulake_catalog::IcebergSqlCatalog {
                        uri: t.uri,
                        catalog: t.catalog,
                        namespace: t.namespace,
                        table: t.table,
                    });
                    String::new()
                }
                Some(pb::iceberg_source::Table::CatalogTable(t)) => {
                    return Err(Status::failed_precondition(format!(
                        "Iceberg catalog {:?} is not configured on this server; give the table's metadata_location",
                        t.catalog
                    )))
                }
                None => return Err(invalid("an iceberg source needs metadata_location")),
            };
            (
                SourceKind::Iceberg {
                    url,
                    id_column: i.id_column,
                    vector_column: i.vector_column,
                    snapshot_id: i.snapshot_id,
                    sql_catalog,
                },
                opts(i.options),
            )
        }
        Some(pb::source::Kind::Managed(_)) => (
            SourceKind::Managed {
                prefix: String::new(),
            },
            BTreeMap::new(),
        ),
        None => return Err(invalid("source kind is required")),
    })
}

/// What an answer shows in place of a source option's value.
pub(crate) const REDACTED: &str = "<redacted>";

/// What a managed collection's location on the server reads as in an error.
const MANAGED_LOCATION: &str = "<managed data>";

/// Option values shorter than this are flags and short names, not secrets:
/// scrubbing them out of an error would garble its words.
const MIN_SCRUBBED: usize = 4;

/// `text` with every option value (of at least [`MIN_SCRUBBED`] bytes)
/// replaced by [`REDACTED`], and a managed source's location on the server
/// by [`MANAGED_LOCATION`]: an error may quote either.
fn scrub(text: &str, kind: &SourceKind, options: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    // Longest first, so a value that contains another is replaced whole.
    let mut values: Vec<&str> = options
        .values()
        .map(String::as_str)
        .filter(|v| v.len() >= MIN_SCRUBBED)
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        out = out.replace(v, REDACTED);
    }
    if let SourceKind::Managed { prefix } = kind {
        // As a URL, a path, or an object-store path (no leading slash).
        let bare = prefix.trim_start_matches("file://").trim_matches('/');
        if !bare.is_empty() {
            out = out.replace(prefix.as_str(), MANAGED_LOCATION);
            out = out.replace(bare, MANAGED_LOCATION);
        }
    }
    out
}

fn source_to(kind: &SourceKind, options: &BTreeMap<String, String>) -> pb::Source {
    let opts = || {
        options
            .keys()
            .map(|k| (k.clone(), REDACTED.to_owned()))
            .collect()
    };
    pb::Source {
        kind: Some(match kind {
            SourceKind::Parquet {
                url,
                id_column,
                vector_column,
            } => pb::source::Kind::Parquet(pb::ParquetSource {
                url: url.clone(),
                id_column: id_column.clone(),
                vector_column: vector_column.clone(),
                options: opts(),
            }),
            SourceKind::Delta {
                url,
                id_column,
                vector_column,
                version,
            } => pb::source::Kind::Delta(pb::DeltaSource {
                table_url: url.clone(),
                id_column: id_column.clone(),
                vector_column: vector_column.clone(),
                version: *version,
                options: opts(),
            }),
            SourceKind::Iceberg {
                url,
                id_column,
                vector_column,
                snapshot_id,
                sql_catalog,
            } => pb::source::Kind::Iceberg(pb::IcebergSource {
                table: Some(match sql_catalog {
                    Some(c) => {
                        pb::iceberg_source::Table::CatalogTable(pb::iceberg_source::CatalogTable {
                            catalog: c.catalog.clone(),
                            namespace: c.namespace.clone(),
                            table: c.table.clone(),
                            uri: c.uri.clone(),
                        })
                    }
                    None => pb::iceberg_source::Table::MetadataLocation(url.clone()),
                }),
                id_column: id_column.clone(),
                vector_column: vector_column.clone(),
                snapshot_id: *snapshot_id,
                options: opts(),
            }),
            SourceKind::Managed { .. } => pb::source::Kind::Managed(pb::ManagedSource {}),
        }),
    }
}

/// A client's collection spec as the coordinator takes it. Defaults:
/// one partition, one replica, fresh, rerank 40.
pub(crate) fn def_from(spec: pb::CollectionSpec) -> Result<CollectionDef, Status> {
    let source = spec.source.ok_or_else(|| invalid("source is required"))?;
    let (source, options) = source_from(source)?;
    let record = CollectionRecord {
        name: spec.name.clone(),
        source: spec.name,
        dim: spec.dimension,
        metric: metric_from(spec.metric)?,
        partitions: spec.partitions.max(1),
        replication: spec.replication_factor.max(1),
        consistency: consistency_from(spec.consistency)?,
        rerank: spec.rerank.unwrap_or(rulake_engine::DEFAULT_RERANK as u32),
        nprobe: spec.nprobe,
        target_recall: spec.target_recall,
        payload_columns: spec.payload_columns,
        standing_filter: Some(spec.standing_filter).filter(|f| !f.trim().is_empty()),
    };
    Ok(CollectionDef {
        record,
        source,
        options,
    })
}

pub(crate) fn view_to(v: CollectionView) -> pb::CollectionInfo {
    let info = &v.info;
    let state = match (&info.generation, &info.last_error) {
        (None, None) => pb::CollectionState::Loading,
        (None, Some(_)) => pb::CollectionState::Failed,
        (Some(_), Some(_)) => pb::CollectionState::Degraded,
        (Some(_), None) => pb::CollectionState::Ready,
    };
    let r = &v.record;
    pb::CollectionInfo {
        spec: Some(pb::CollectionSpec {
            name: r.name.clone(),
            source: Some(source_to(&v.source.kind, &v.source.options)),
            dimension: r.dim,
            metric: metric_to(r.metric) as i32,
            partitions: r.partitions,
            replication_factor: r.replication,
            consistency: Some(consistency_to(r.consistency)),
            rerank: Some(r.rerank),
            nprobe: r.nprobe,
            target_recall: Some(
                r.target_recall
                    .unwrap_or(rulake_engine::DEFAULT_TARGET_RECALL),
            ),
            payload_columns: r.payload_columns.clone(),
            standing_filter: r.standing_filter.clone().unwrap_or_default(),
        }),
        state: state as i32,
        generation: info
            .generation
            .as_ref()
            .map(|g| g.0.clone())
            .unwrap_or_default(),
        vector_count: info.vectors_cached,
        partitions_warm: info.partitions_warm,
        last_error: info
            .last_error
            .as_deref()
            .map(|e| scrub(e, &v.source.kind, &v.source.options))
            .unwrap_or_default(),
        aliases: v.aliases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Iceberg table named through a SQL catalog survives the trip
    /// through the catalog model and back; a catalog without a URI still
    /// needs server configuration.
    #[test]
    fn iceberg_sql_catalog_sources_round_trip() {
        let table = pb::iceberg_source::CatalogTable {
            catalog: "default".into(),
            namespace: "db".into(),
            table: "emb".into(),
            uri: "sqlite:////data/catalog.db".into(),
        };
        let source = pb::Source {
            kind: Some(pb::source::Kind::Iceberg(pb::IcebergSource {
                table: Some(pb::iceberg_source::Table::CatalogTable(table.clone())),
                id_column: "id".into(),
                vector_column: "vector".into(),
                snapshot_id: None,
                options: Default::default(),
            })),
        };
        let (kind, options) = source_from(source.clone()).unwrap();
        let SourceKind::Iceberg {
            sql_catalog: Some(c),
            ..
        } = &kind
        else {
            panic!("{kind:?}")
        };
        assert_eq!(
            (c.uri.as_str(), c.table.as_str()),
            (table.uri.as_str(), "emb")
        );
        assert_eq!(source_to(&kind, &options), source);
        let mut no_uri = source;
        if let Some(pb::source::Kind::Iceberg(i)) = &mut no_uri.kind {
            i.table = Some(pb::iceberg_source::Table::CatalogTable(
                pb::iceberg_source::CatalogTable {
                    uri: String::new(),
                    ..table
                },
            ));
        }
        let err = source_from(no_uri).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }

    /// Options show their keys, never their values, for every source kind.
    #[test]
    fn option_values_are_never_shown() {
        let options: BTreeMap<String, String> = [
            ("aws_secret_access_key", "AKIA-very-secret-value"),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let kinds = [
            SourceKind::Parquet {
                url: "s3://lake/emb/".into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
            },
            SourceKind::Delta {
                url: "s3://lake/delta/".into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                version: None,
            },
            SourceKind::Iceberg {
                url: "s3://lake/ice/metadata.json".into(),
                id_column: "id".into(),
                vector_column: "vector".into(),
                snapshot_id: None,
                sql_catalog: None,
            },
        ];
        for kind in kinds {
            let shown = source_to(&kind, &options);
            let text = format!("{shown:?}");
            assert!(!text.contains("very-secret"), "{text}");
            let shown_options = match shown.kind {
                Some(pb::source::Kind::Parquet(p)) => p.options,
                Some(pb::source::Kind::Delta(d)) => d.options,
                Some(pb::source::Kind::Iceberg(i)) => i.options,
                other => panic!("{other:?}"),
            };
            let mut keys: Vec<_> = shown_options.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["aws_allow_http", "aws_secret_access_key"]);
            assert!(shown_options.values().all(|v| v == REDACTED));
        }
    }

    /// A last error that quotes an option value or a managed collection's
    /// place on the server shows neither.
    #[test]
    fn last_errors_are_scrubbed_of_secrets_and_server_paths() {
        let options: BTreeMap<String, String> =
            [("sas".to_owned(), "sv=2024&sig=SECRETSIG".to_owned())].into();
        let parquet = SourceKind::Parquet {
            url: "az://c/emb/".into(),
            id_column: "id".into(),
            vector_column: "vector".into(),
        };
        let e = scrub(
            "GET https://acct.blob/c/emb/x.parquet?sv=2024&sig=SECRETSIG failed: 403",
            &parquet,
            &options,
        );
        assert!(!e.contains("SECRETSIG"), "{e}");
        assert!(e.contains("403") && e.contains(REDACTED), "{e}");
        let managed = SourceKind::Managed {
            prefix: "file:///srv/rulake/managed/docs/18f3a/".into(),
        };
        for text in [
            "object file:///srv/rulake/managed/docs/18f3a/part-1.parquet is missing",
            "open /srv/rulake/managed/docs/18f3a/part-1.parquet: no such file",
            "not found: srv/rulake/managed/docs/18f3a/part-1.parquet",
        ] {
            let e = scrub(text, &managed, &BTreeMap::new());
            assert!(!e.contains("/srv") && !e.contains("18f3a"), "{e}");
            assert!(e.contains(MANAGED_LOCATION) && e.contains("part-1"), "{e}");
        }
    }
}
