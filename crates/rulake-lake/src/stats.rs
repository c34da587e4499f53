//! The lake's own statistics as zone maps ([`rulake_types::ZoneMap`]), so
//! a standing filter can leave out files and row groups none of whose
//! rows match, without reading them.
//!
//! Three places hold statistics, each read here into the same shape:
//! - a Parquet footer: per row group and column chunk, min, max and null
//!   count (every format's data files, so every format's row groups);
//! - a Delta `add` action: its partition values (one value for the whole
//!   file) and its `stats` JSON (`numRecords`, `minValues`, `maxValues`,
//!   `nullCount`), read without opening the file;
//! - an Iceberg manifest entry: record count, lower and upper bounds and
//!   null counts by field id (decoded in `iceberg/manifests.rs`, where the
//!   `iceberg` crate's types stay).
//!
//! What is trusted, and how far: min and max are always taken as bounds
//! (pruning by them never drops a matching row), and as exact values only
//! where the format promises it (Parquet's `min_is_exact`/`max_is_exact`
//! on integer, date, timestamp, boolean and string chunks; Delta partition
//! values). Floats are never exact (NaN is left out of their statistics),
//! Delta and Iceberg promise bounds only (Iceberg truncates strings, Delta
//! writes timestamps in milliseconds: the upper bound is widened by a
//! millisecond). A statistic this module cannot read is left out, which
//! means "unknown", never "no rows".

use crate::payload_conv::payload_type;
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::file::statistics::Statistics;
use rulake_types::{ColumnType, ColumnZone, Value, ZoneMap};

/// The zone map of row group `rg` of a Parquet file: every top-level
/// column whose type RuLake keeps as payload and whose chunk has
/// statistics.
pub(crate) fn row_group_zone(md: &ArrowReaderMetadata, rg: usize) -> ZoneMap {
    let mut zone = ZoneMap::default();
    let Some(group) = md.metadata().row_groups().get(rg) else {
        return zone;
    };
    zone.rows = u64::try_from(group.num_rows()).ok();
    let schema = md.schema();
    for chunk in group.columns() {
        let parts = chunk.column_path().parts();
        let [name] = parts else {
            continue; // nested (lists): no bounds kept
        };
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        let Some(stats) = chunk.statistics() else {
            continue;
        };
        zone.columns
            .insert(name.clone(), chunk_zone(field.data_type(), stats));
    }
    zone
}

/// One column chunk's statistics, read by the column's Arrow type.
fn chunk_zone(t: &DataType, stats: &Statistics) -> ColumnZone {
    let mut zone = ColumnZone {
        ty: payload_type(t),
        nulls: stats.null_count_opt(),
        ..ColumnZone::default()
    };
    if zone.ty == Some(ColumnType::StringList) {
        zone.ty = None;
        zone.nulls = None; // counts list elements, not rows
        return zone;
    }
    let int = |v: i64| -> Option<Value> {
        Some(match t {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Value::Int(v),
            DataType::Date32 => Value::Date(i32::try_from(v).ok()?),
            DataType::Date64 => Value::Date(i32::try_from(v / 86_400_000).ok()?),
            DataType::Timestamp(unit, _) => Value::Timestamp(match unit {
                TimeUnit::Second => v.saturating_mul(1_000_000),
                TimeUnit::Millisecond => v.saturating_mul(1_000),
                TimeUnit::Microsecond => v,
                TimeUnit::Nanosecond => v / 1_000,
            }),
            // Unsigned integers are ordered as unsigned in their
            // statistics but stored in signed physical types: left out.
            _ => return None,
        })
    };
    let (min, max, exact) = match stats {
        Statistics::Boolean(s) => (
            s.min_opt().map(|v| Value::Bool(*v)),
            s.max_opt().map(|v| Value::Bool(*v)),
            true,
        ),
        Statistics::Int32(s) => (
            s.min_opt().and_then(|v| int(i64::from(*v))),
            s.max_opt().and_then(|v| int(i64::from(*v))),
            s.min_is_exact() && s.max_is_exact(),
        ),
        Statistics::Int64(s) => (
            s.min_opt().and_then(|v| int(*v)),
            s.max_opt().and_then(|v| int(*v)),
            s.min_is_exact() && s.max_is_exact(),
        ),
        Statistics::Float(s) if zone.ty == Some(ColumnType::Float) => (
            s.min_opt().map(|v| Value::Float(f64::from(*v))),
            s.max_opt().map(|v| Value::Float(f64::from(*v))),
            false,
        ),
        Statistics::Double(s) if zone.ty == Some(ColumnType::Float) => (
            s.min_opt().map(|v| Value::Float(*v)),
            s.max_opt().map(|v| Value::Float(*v)),
            false,
        ),
        // Strings: only bounds written in the unsigned byte order (which
        // is UTF-8 string order), not the deprecated signed ones.
        Statistics::ByteArray(s)
            if zone.ty == Some(ColumnType::String) && !stats.is_min_max_deprecated() =>
        {
            let text = |v: &parquet::data_type::ByteArray| {
                std::str::from_utf8(v.data())
                    .ok()
                    .map(|s| Value::String(s.to_owned()))
            };
            (
                s.min_opt().and_then(text),
                s.max_opt().and_then(text),
                s.min_is_exact() && s.max_is_exact(),
            )
        }
        _ => (None, None, false),
    };
    // A bound of another type than the column's would only confuse the
    // filter: keep both or neither.
    let fits = |v: &Option<Value>| v.as_ref().and_then(Value::column_type) == zone.ty;
    if fits(&min) && fits(&max) {
        zone.min = min;
        zone.max = max;
        zone.exact = exact;
    }
    zone
}

/// A Delta value as its column's payload type: partition values are
/// strings in the log whatever the column's type (`None`: a value this
/// does not read; the caller then knows nothing of the column).
#[cfg(feature = "delta")]
pub(crate) fn delta_partition_value(ty: ColumnType, text: Option<&str>) -> Option<Value> {
    // The protocol writes a null as null or as an empty string.
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Some(Value::Null);
    };
    Some(match ty {
        ColumnType::Bool => Value::Bool(text.parse().ok()?),
        ColumnType::Int => Value::Int(text.parse().ok()?),
        ColumnType::Float => Value::Float(text.parse().ok()?),
        ColumnType::String => Value::String(text.to_owned()),
        ColumnType::Date => {
            Value::Date(i32::try_from(rulake_types::payload::parse_date(text)?).ok()?)
        }
        ColumnType::Timestamp => Value::Timestamp(rulake_types::payload::parse_instant(text)?),
        ColumnType::StringList => return None,
    })
}

/// The zone map of one Delta data file: its partition values (exact, one
/// value for every row) and its `stats` JSON, for the columns `types`
/// names (the table schema's payload-typed top-level columns).
#[cfg(feature = "delta")]
pub(crate) fn delta_file_zone(
    types: &std::collections::HashMap<String, ColumnType>,
    partition_values: &std::collections::HashMap<String, Option<String>>,
    stats: Option<&str>,
) -> ZoneMap {
    let mut zone = ZoneMap::default();
    let stats: Option<serde_json::Value> = stats.and_then(|s| serde_json::from_str(s).ok());
    if let Some(s) = &stats {
        zone.rows = s.get("numRecords").and_then(serde_json::Value::as_u64);
        for (name, &ty) in types {
            // Partition values say more; a list's counts are its
            // elements', not its rows'.
            if partition_values.contains_key(name) || ty == ColumnType::StringList {
                continue;
            }
            let mut zone_c = ColumnZone {
                ty: Some(ty),
                nulls: s
                    .pointer(&pointer("nullCount", name))
                    .and_then(serde_json::Value::as_u64),
                ..ColumnZone::default()
            };
            let min = s
                .pointer(&pointer("minValues", name))
                .and_then(|v| delta_stat(ty, v, false));
            let max = s
                .pointer(&pointer("maxValues", name))
                .and_then(|v| delta_stat(ty, v, true));
            if min.is_some() && max.is_some() {
                zone_c.min = min;
                zone_c.max = max;
                // The protocol promises bounds; only partition values
                // below are values every row holds.
                zone_c.exact = false;
            }
            if zone_c.nulls.is_some() || zone_c.min.is_some() {
                zone.columns.insert(name.clone(), zone_c);
            }
        }
    }
    for (name, text) in partition_values {
        let Some(&ty) = types.get(name) else {
            continue;
        };
        let Some(v) = delta_partition_value(ty, text.as_deref()) else {
            continue;
        };
        let c = match v {
            Value::Null => ColumnZone {
                ty: Some(ty),
                nulls: zone.rows,
                ..ColumnZone::default()
            },
            v => ColumnZone {
                ty: Some(ty),
                min: Some(v.clone()),
                max: Some(v),
                nulls: Some(0),
                exact: true,
            },
        };
        zone.columns.insert(name.clone(), c);
    }
    zone
}

/// The JSON pointer of column `name` in a `stats` section (RFC 6901:
/// `~` and `/` escaped).
#[cfg(feature = "delta")]
fn pointer(section: &str, name: &str) -> String {
    format!("/{section}/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// One `minValues`/`maxValues` entry (`upper`: a max, which a timestamp
/// written in milliseconds is widened for).
#[cfg(feature = "delta")]
fn delta_stat(ty: ColumnType, v: &serde_json::Value, upper: bool) -> Option<Value> {
    Some(match ty {
        ColumnType::Int => Value::Int(v.as_i64()?),
        ColumnType::Float => Value::Float(v.as_f64()?),
        ColumnType::Bool => Value::Bool(v.as_bool()?),
        ColumnType::String => Value::String(v.as_str()?.to_owned()),
        ColumnType::Date => {
            Value::Date(i32::try_from(rulake_types::payload::parse_date(v.as_str()?)?).ok()?)
        }
        ColumnType::Timestamp => {
            let t = rulake_types::payload::parse_instant(v.as_str()?)?;
            Value::Timestamp(if upper { t.saturating_add(999) } else { t })
        }
        ColumnType::StringList => return None,
    })
}
