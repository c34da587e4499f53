//! Filters, payload values and selections to and from `rulake.v1`'s
//! messages.
//!
//! Why here and not in the API crate: the same messages cross two wires.
//! The public API takes a `rulake.v1.Filter`, and the coordinator's router
//! forwards it to shard nodes inside the internal `ScanRequest`, whose
//! hits come back with `rulake.v1.Value`s. The coordinator is the lowest
//! crate that speaks both, so one conversion serves the API, the router
//! and the shard service.

use crate::{CoordinatorError, Result};
use rulake_proto::v1 as pb;
use rulake_proto::v1::filter::Kind;
use rulake_types::{Filter, Selection, Value};
use std::collections::{BTreeMap, HashMap};

fn invalid(m: String) -> CoordinatorError {
    CoordinatorError::InvalidArgument(m)
}

/// A wire value as a payload value.
pub fn value_from(v: pb::Value) -> Result<Value> {
    use pb::value::Kind as V;
    Ok(match v.kind {
        None => return Err(invalid("a value is empty (set one of its fields)".into())),
        Some(V::NullValue(_)) => Value::Null,
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::IntValue(i)) => Value::Int(i),
        Some(V::FloatValue(x)) => Value::Float(x),
        Some(V::StringValue(s)) => Value::String(s),
        Some(V::TimestampMicros(t)) => Value::Timestamp(t),
        Some(V::DateDays(d)) => Value::Date(d),
        Some(V::StringList(l)) => Value::StringList(l.values),
    })
}

/// A payload value on the wire.
pub fn value_to(v: Value) -> pb::Value {
    use pb::value::Kind as V;
    pb::Value {
        kind: Some(match v {
            Value::Null => V::NullValue(true),
            Value::Bool(b) => V::BoolValue(b),
            Value::Int(i) => V::IntValue(i),
            Value::Float(x) => V::FloatValue(x),
            Value::String(s) => V::StringValue(s),
            Value::Timestamp(t) => V::TimestampMicros(t),
            Value::Date(d) => V::DateDays(d),
            Value::StringList(values) => V::StringList(pb::StringList { values }),
        }),
    }
}

/// A hit's columns on the wire.
pub fn columns_to(columns: BTreeMap<String, Value>) -> HashMap<String, pb::Value> {
    columns.into_iter().map(|(k, v)| (k, value_to(v))).collect()
}

/// A hit's columns from the wire (a value that does not decode is null).
pub fn columns_from(columns: HashMap<String, pb::Value>) -> BTreeMap<String, Value> {
    columns
        .into_iter()
        .map(|(k, v)| (k, value_from(v).unwrap_or(Value::Null)))
        .collect()
}

/// A wire filter as a [`Filter`], refusing an empty one, with at most
/// [`rulake_types::filter::MAX_FILTER_DEPTH`] levels (checked while
/// converting, so a hostile nesting cannot exhaust the stack later).
pub fn filter_from(f: pb::Filter) -> Result<Filter> {
    filter_at(f, 0)
}

fn filter_at(f: pb::Filter, depth: usize) -> Result<Filter> {
    if depth > rulake_types::filter::MAX_FILTER_DEPTH {
        return Err(invalid(format!(
            "filter nested deeper than {} levels",
            rulake_types::filter::MAX_FILTER_DEPTH
        )));
    }
    let value = |v: Option<pb::Value>, column: &str| -> Result<Value> {
        value_from(v.ok_or_else(|| invalid(format!("filter on {column:?} has no value")))?)
    };
    let bound = |v: Option<pb::Value>| v.map(value_from).transpose();
    let list = |l: pb::filter::FilterList| -> Result<Vec<Filter>> {
        l.filters
            .into_iter()
            .map(|f| filter_at(f, depth + 1))
            .collect()
    };
    Ok(match f.kind {
        None => return Err(invalid("a filter is empty (set one of its fields)".into())),
        Some(Kind::All(l)) => Filter::And(list(l)?),
        Some(Kind::Any(l)) => Filter::Or(list(l)?),
        Some(Kind::Negate(inner)) => Filter::Not(Box::new(filter_at(*inner, depth + 1)?)),
        Some(Kind::Eq(e)) => Filter::Eq {
            value: value(e.value, &e.column)?,
            column: e.column,
        },
        Some(Kind::InSet(i)) => Filter::In {
            values: i
                .values
                .into_iter()
                .map(value_from)
                .collect::<Result<_>>()?,
            column: i.column,
        },
        Some(Kind::Range(r)) => Filter::Range {
            gt: bound(r.gt)?,
            gte: bound(r.gte)?,
            lt: bound(r.lt)?,
            lte: bound(r.lte)?,
            column: r.column,
        },
        Some(Kind::IsNull(n)) => Filter::IsNull { column: n.column },
        Some(Kind::Contains(c)) => Filter::Contains {
            column: c.column,
            value: c.value,
        },
        Some(Kind::Prefix(p)) => Filter::Prefix {
            column: p.column,
            prefix: p.prefix,
        },
    })
}

/// A [`Filter`] on the wire.
pub fn filter_to(f: &Filter) -> pb::Filter {
    let list = |v: &[Filter]| pb::filter::FilterList {
        filters: v.iter().map(filter_to).collect(),
    };
    let v = |x: &Option<Value>| x.clone().map(value_to);
    pb::Filter {
        kind: Some(match f {
            Filter::And(x) => Kind::All(list(x)),
            Filter::Or(x) => Kind::Any(list(x)),
            Filter::Not(x) => Kind::Negate(Box::new(filter_to(x))),
            Filter::Eq { column, value } => Kind::Eq(pb::filter::Equals {
                column: column.clone(),
                value: Some(value_to(value.clone())),
            }),
            Filter::In { column, values } => Kind::InSet(pb::filter::InSet {
                column: column.clone(),
                values: values.iter().cloned().map(value_to).collect(),
            }),
            Filter::Range {
                column,
                gt,
                gte,
                lt,
                lte,
            } => Kind::Range(pb::filter::Range {
                column: column.clone(),
                gt: v(gt),
                gte: v(gte),
                lt: v(lt),
                lte: v(lte),
            }),
            Filter::IsNull { column } => Kind::IsNull(pb::filter::IsNull {
                column: column.clone(),
            }),
            Filter::Contains { column, value } => Kind::Contains(pb::filter::Contains {
                column: column.clone(),
                value: value.clone(),
            }),
            Filter::Prefix { column, prefix } => Kind::Prefix(pb::filter::Prefix {
                column: column.clone(),
                prefix: prefix.clone(),
            }),
        }),
    }
}

/// A request's filter and output columns as a [`Selection`].
pub fn selection_from(filter: Option<pb::Filter>, columns: Vec<String>) -> Result<Selection> {
    Ok(Selection {
        filter: filter.map(filter_from).transpose()?,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip() {
        let f = rulake_types::filter::parse(
            r#"(lang = "en" or lang in ("de", "fr")) and not year < 2020 and tags contains "x" and title starts with "A" and note is null and at >= 5 and at <= 9"#,
        )
        .unwrap();
        assert_eq!(filter_from(filter_to(&f)).unwrap(), f);
        let v = Value::StringList(vec!["a".into()]);
        assert_eq!(value_from(value_to(v.clone())).unwrap(), v);
    }

    #[test]
    fn empty_and_deep_filters_are_refused() {
        assert!(filter_from(pb::Filter { kind: None }).is_err());
        let mut f = pb::Filter {
            kind: Some(Kind::IsNull(pb::filter::IsNull { column: "a".into() })),
        };
        for _ in 0..100 {
            f = pb::Filter {
                kind: Some(Kind::Negate(Box::new(f))),
            };
        }
        assert!(filter_from(f).is_err());
    }
}
