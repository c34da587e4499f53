//! Filters over payload columns: the language, its typing and its
//! evaluation.
//!
//! A [`Filter`] is a tree of `and`, `or`, `not` over predicates on one
//! column each. It is checked against the columns a partition actually
//! holds ([`Filter::bind`]), which resolves names to columns once and
//! brings every literal to its column's type (a date string compared with
//! a timestamp column becomes an instant), so a bad filter fails with the
//! column named before any row is read, and evaluating a row is a few
//! comparisons. The wire form (`rulake.v1.Filter`) and the readable form
//! the command line takes ([`parse`]) both produce this tree.
//!
//! Logic is two-valued, as in Qdrant: a predicate on a null value is
//! false, and `not` negates that, so `not lang = "en"` matches rows
//! without a `lang`. `is null` asks for them explicitly.

mod parse;

pub use parse::parse;

use crate::payload::{parse_date, parse_instant, ColumnType, Payload, Value};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Deepest nesting of `and`/`or`/`not` a filter may have.
pub const MAX_FILTER_DEPTH: usize = 32;
/// Most predicates and literals in one filter.
pub const MAX_FILTER_TERMS: usize = 4096;

/// A filter over payload columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Every one matches (an empty list matches every row).
    And(Vec<Filter>),
    /// At least one matches (an empty list matches no row).
    Or(Vec<Filter>),
    /// The inner filter does not match.
    Not(Box<Filter>),
    /// The column equals the value.
    Eq {
        /// Column.
        column: String,
        /// Value.
        value: Value,
    },
    /// The column equals one of the values.
    In {
        /// Column.
        column: String,
        /// Values.
        values: Vec<Value>,
    },
    /// The column lies within the bounds given (at least one).
    Range {
        /// Column.
        column: String,
        /// Exclusive lower bound.
        gt: Option<Value>,
        /// Inclusive lower bound.
        gte: Option<Value>,
        /// Exclusive upper bound.
        lt: Option<Value>,
        /// Inclusive upper bound.
        lte: Option<Value>,
    },
    /// The column is null.
    IsNull {
        /// Column.
        column: String,
    },
    /// The list column holds the string.
    Contains {
        /// Column.
        column: String,
        /// Element.
        value: String,
    },
    /// The string column starts with the prefix.
    Prefix {
        /// Column.
        column: String,
        /// Prefix.
        prefix: String,
    },
}

/// Why a filter cannot be evaluated against a collection. Every variant
/// names the column or the place in the text at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The column is not one of the collection's payload columns.
    #[error("filter column {column:?} is not a payload column of the collection (it keeps: {available})")]
    UnknownColumn {
        /// The column named.
        column: String,
        /// The payload columns there are.
        available: String,
    },
    /// The operator or literal does not fit the column's type.
    #[error("filter on column {column:?} ({ty}): {reason}")]
    Type {
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
        /// What does not fit.
        reason: String,
    },
    /// The filter is malformed (an empty range, too deep).
    #[error("invalid filter: {0}")]
    Invalid(String),
    /// The readable form could not be parsed.
    #[error("cannot parse filter at character {at}: {reason}")]
    Syntax {
        /// Character offset in the text.
        at: usize,
        /// What was expected.
        reason: String,
    },
}

impl Filter {
    /// The columns the filter reads, each once, in order of appearance.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.visit(&mut |f| {
            if let Some(c) = f.column() {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        });
        out
    }

    fn column(&self) -> Option<&str> {
        match self {
            Filter::And(_) | Filter::Or(_) | Filter::Not(_) => None,
            Filter::Eq { column, .. }
            | Filter::In { column, .. }
            | Filter::Range { column, .. }
            | Filter::IsNull { column }
            | Filter::Contains { column, .. }
            | Filter::Prefix { column, .. } => Some(column),
        }
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Filter)) {
        f(self);
        match self {
            Filter::And(v) | Filter::Or(v) => v.iter().for_each(|x| x.visit(f)),
            Filter::Not(x) => x.visit(f),
            _ => {}
        }
    }

    /// Check the filter's shape and that every column it names is one of
    /// `names` (before any partition is loaded: a coordinator refuses an
    /// unknown column without asking a shard).
    pub fn check_columns(&self, names: &[String]) -> Result<(), FilterError> {
        self.check_shape(0, &mut 0)?;
        for c in self.columns() {
            if !names.iter().any(|n| n == c) {
                return Err(unknown(c, names));
            }
        }
        Ok(())
    }

    fn check_shape(&self, depth: usize, terms: &mut usize) -> Result<(), FilterError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(FilterError::Invalid(format!(
                "nested deeper than {MAX_FILTER_DEPTH} levels"
            )));
        }
        *terms += match self {
            Filter::In { values, .. } => values.len().max(1),
            _ => 1,
        };
        if *terms > MAX_FILTER_TERMS {
            return Err(FilterError::Invalid(format!(
                "more than {MAX_FILTER_TERMS} terms"
            )));
        }
        match self {
            Filter::And(v) | Filter::Or(v) => {
                v.iter().try_for_each(|x| x.check_shape(depth + 1, terms))
            }
            Filter::Not(x) => x.check_shape(depth + 1, terms),
            Filter::Range {
                column,
                gt,
                gte,
                lt,
                lte,
            } if gt.is_none() && gte.is_none() && lt.is_none() && lte.is_none() => Err(
                FilterError::Invalid(format!("range on {column:?} has no bound")),
            ),
            _ => Ok(()),
        }
    }

    /// Resolve the filter against `payload`'s columns: names to columns,
    /// literals to the column's type. A column every row of which is null
    /// (its type unknown) takes any literal and matches only `is null`.
    pub fn bind<'p>(&self, payload: &'p Payload) -> Result<Bound<'p>, FilterError> {
        self.check_columns(&payload.names())?;
        self.bind_in(payload)
    }

    fn bind_in<'p>(&self, payload: &'p Payload) -> Result<Bound<'p>, FilterError> {
        let col = |name: &str| {
            payload
                .column(name)
                .ok_or_else(|| unknown(name, &payload.names()))
        };
        Ok(match self {
            Filter::And(v) => Bound::And(
                v.iter()
                    .map(|x| x.bind_in(payload))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Or(v) => Bound::Or(
                v.iter()
                    .map(|x| x.bind_in(payload))
                    .collect::<Result<_, _>>()?,
            ),
            Filter::Not(x) => Bound::Not(Box::new(x.bind_in(payload)?)),
            Filter::IsNull { column } => Bound::IsNull(&col(column)?.values),
            Filter::Eq { column, value } => {
                let c = col(column)?;
                match c.ty {
                    Some(ColumnType::StringList) => {
                        return Err(type_error(
                            column,
                            ColumnType::StringList,
                            "a list column takes `contains` and `is null`, not `=`",
                        ))
                    }
                    Some(ty) => Bound::In(&c.values, vec![coerce(column, ty, value)?]),
                    None => Bound::Never,
                }
            }
            Filter::In { column, values } => {
                let c = col(column)?;
                match c.ty {
                    Some(ColumnType::StringList) => {
                        return Err(type_error(
                            column,
                            ColumnType::StringList,
                            "a list column takes `contains` and `is null`, not `in`",
                        ))
                    }
                    Some(ty) => Bound::In(
                        &c.values,
                        values
                            .iter()
                            .map(|v| coerce(column, ty, v))
                            .collect::<Result<_, _>>()?,
                    ),
                    None => Bound::Never,
                }
            }
            Filter::Range {
                column,
                gt,
                gte,
                lt,
                lte,
            } => {
                let c = col(column)?;
                let Some(ty) = c.ty else {
                    return Ok(Bound::Never);
                };
                if matches!(ty, ColumnType::Bool | ColumnType::StringList) {
                    return Err(type_error(column, ty, "has no order for a range"));
                }
                let mut bounds = Vec::new();
                for (v, below, inclusive) in [
                    (gt, false, false),
                    (gte, false, true),
                    (lt, true, false),
                    (lte, true, true),
                ] {
                    if let Some(v) = v {
                        bounds.push((coerce(column, ty, v)?, below, inclusive));
                    }
                }
                Bound::Range(&c.values, bounds)
            }
            Filter::Contains { column, value } => {
                let c = col(column)?;
                match c.ty {
                    Some(ColumnType::StringList) | None => {
                        Bound::Contains(&c.values, value.clone())
                    }
                    Some(ty) => {
                        return Err(type_error(
                            column,
                            ty,
                            "`contains` needs a list<string> column",
                        ))
                    }
                }
            }
            Filter::Prefix { column, prefix } => {
                let c = col(column)?;
                match c.ty {
                    Some(ColumnType::String) | None => Bound::Prefix(&c.values, prefix.clone()),
                    Some(ty) => {
                        return Err(type_error(
                            column,
                            ty,
                            "`starts with` needs a string column",
                        ))
                    }
                }
            }
        })
    }
}

fn unknown(column: &str, names: &[String]) -> FilterError {
    FilterError::UnknownColumn {
        column: column.to_owned(),
        available: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
    }
}

fn type_error(column: &str, ty: ColumnType, reason: &str) -> FilterError {
    FilterError::Type {
        column: column.to_owned(),
        ty,
        reason: reason.to_owned(),
    }
}

/// A literal brought to column type `ty`: integers widen to floats,
/// strings and integers become instants and dates; anything else that
/// differs is refused.
pub(crate) fn coerce(column: &str, ty: ColumnType, v: &Value) -> Result<Value, FilterError> {
    let bad = || type_error(column, ty, &format!("cannot compare with {v}"));
    Ok(match (ty, v) {
        (_, Value::Null) => {
            return Err(type_error(
                column,
                ty,
                "compare with null through `is null`",
            ))
        }
        (ColumnType::Float, Value::Int(i)) => Value::Float(*i as f64),
        (ColumnType::Timestamp, Value::String(s)) => {
            Value::Timestamp(parse_instant(s).ok_or_else(bad)?)
        }
        (ColumnType::Timestamp, Value::Int(i)) => Value::Timestamp(*i),
        (ColumnType::Date, Value::String(s)) => {
            Value::Date(i32::try_from(parse_date(s).ok_or_else(bad)?).map_err(|_| bad())?)
        }
        (ColumnType::Date, Value::Int(i)) => Value::Date(i32::try_from(*i).map_err(|_| bad())?),
        (ty, v) if v.column_type() == Some(ty) => v.clone(),
        _ => return Err(bad()),
    })
}

/// Order two values of one column type (`None` for NaN or mixed types).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A filter resolved against one partition's payload ([`Filter::bind`]).
#[derive(Debug)]
pub enum Bound<'p> {
    /// All match.
    And(Vec<Bound<'p>>),
    /// One matches.
    Or(Vec<Bound<'p>>),
    /// Negation.
    Not(Box<Bound<'p>>),
    /// Matches no row (a predicate on a column with no values).
    Never,
    /// Value is null.
    IsNull(&'p [Value]),
    /// Value equals one of the literals.
    In(&'p [Value], Vec<Value>),
    /// Value within every bound: `(literal, value must be below it,
    /// inclusive)`.
    Range(&'p [Value], Vec<(Value, bool, bool)>),
    /// List holds the string.
    Contains(&'p [Value], String),
    /// String starts with the prefix.
    Prefix(&'p [Value], String),
}

impl Bound<'_> {
    /// Whether row `pos` matches.
    pub fn matches(&self, pos: usize) -> bool {
        fn value_at(values: &[Value], pos: usize) -> Option<&Value> {
            values.get(pos).filter(|v| !matches!(v, Value::Null))
        }
        match self {
            Bound::And(v) => v.iter().all(|b| b.matches(pos)),
            Bound::Or(v) => v.iter().any(|b| b.matches(pos)),
            Bound::Not(b) => !b.matches(pos),
            Bound::Never => false,
            Bound::IsNull(values) => value_at(values, pos).is_none(),
            Bound::In(values, set) => value_at(values, pos)
                .is_some_and(|v| set.iter().any(|s| compare(v, s) == Some(Ordering::Equal))),
            Bound::Range(values, bounds) => value_at(values, pos).is_some_and(|v| {
                bounds
                    .iter()
                    .all(|(b, below, inclusive)| match compare(v, b) {
                        Some(Ordering::Equal) => *inclusive,
                        Some(Ordering::Less) => *below,
                        Some(Ordering::Greater) => !*below,
                        None => false,
                    })
            }),
            Bound::Contains(values, s) => {
                matches!(value_at(values, pos), Some(Value::StringList(l)) if l.iter().any(|x| x == s))
            }
            Bound::Prefix(values, p) => {
                matches!(value_at(values, pos), Some(Value::String(x)) if x.starts_with(p.as_str()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Column;

    fn payload() -> Payload {
        let col = |name: &str, ty, values| Column {
            name: name.into(),
            ty: Some(ty),
            values,
        };
        Payload {
            columns: vec![
                col(
                    "lang",
                    ColumnType::String,
                    vec![
                        Value::String("en".into()),
                        Value::String("de".into()),
                        Value::Null,
                    ],
                ),
                col(
                    "year",
                    ColumnType::Int,
                    vec![Value::Int(2024), Value::Int(2020), Value::Int(2025)],
                ),
                col(
                    "tags",
                    ColumnType::StringList,
                    vec![
                        Value::StringList(vec!["a".into()]),
                        Value::StringList(vec![]),
                        Value::Null,
                    ],
                ),
                col(
                    "at",
                    ColumnType::Timestamp,
                    vec![
                        Value::Timestamp(parse_instant("2024-05-01").unwrap()),
                        Value::Null,
                        Value::Timestamp(0),
                    ],
                ),
            ],
        }
    }

    fn rows(text: &str) -> Vec<usize> {
        let p = payload();
        let b = parse(text).unwrap().bind(&p).unwrap();
        (0..3).filter(|&i| b.matches(i)).collect()
    }

    #[test]
    fn operators_match_as_documented() {
        assert_eq!(rows(r#"lang = "en" and year >= 2024"#), vec![0]);
        assert_eq!(rows(r#"not lang = "en""#), vec![1, 2]);
        assert_eq!(rows("lang is null"), vec![2]);
        assert_eq!(rows("lang is not null"), vec![0, 1]);
        assert_eq!(rows("year in (2020, 2025)"), vec![1, 2]);
        assert_eq!(rows("year > 2020 and year < 2025"), vec![0]);
        assert_eq!(rows(r#"tags contains "a""#), vec![0]);
        assert_eq!(rows(r#"lang starts with "d" or year = 2025"#), vec![1, 2]);
        assert_eq!(rows(r#"at >= "2024-01-01""#), vec![0]);
        assert_eq!(rows(r#"lang != "de""#), vec![0, 2]);
    }

    #[test]
    fn bad_filters_name_the_column() {
        let p = payload();
        let e = parse("title = 1").unwrap().bind(&p).unwrap_err();
        assert!(
            matches!(&e, FilterError::UnknownColumn { column, .. } if column == "title"),
            "{e}"
        );
        let e = parse(r#"year = "x""#).unwrap().bind(&p).unwrap_err();
        assert!(e.to_string().contains("\"year\""), "{e}");
        let e = parse(r#"tags = "a""#).unwrap().bind(&p).unwrap_err();
        assert!(e.to_string().contains("\"tags\""), "{e}");
        let e = parse(r#"year starts with "2""#)
            .unwrap()
            .bind(&p)
            .unwrap_err();
        assert!(e.to_string().contains("\"year\""), "{e}");
    }
}
