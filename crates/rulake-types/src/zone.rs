//! Zone maps: what statistics say about a run of rows, and what they
//! let a filter conclude without reading the rows.
//!
//! A zone map is min, max and null count per column over a run of rows:
//! a Parquet row group (its footer's statistics), a lake file (a Delta
//! `add` action's `stats` and partition values, an Iceberg manifest's
//! bounds), or a cached partition (computed from its payload). The lake
//! prunes files and row groups whose zone map a collection's standing
//! filter cannot match, and a search skips a partition whose zone map its
//! filter cannot match.
//!
//! The one rule: a verdict may be wrong only in the safe direction.
//! [`Verdict::None`] must mean no row matches, whatever the rows are; so
//! a column without statistics, a literal that does not fit the column,
//! or a bound that cannot be compared answers "may match". Lake bounds
//! are bounds, not values (Iceberg truncates strings to a prefix and
//! rounds the upper bound up; Delta writes timestamps in milliseconds),
//! so they decide that *no* row matches but decide that *every* row
//! matches ([`Verdict::All`]) only when the zone map says its min and max
//! are values the rows hold ([`ColumnZone::exact`]).

use crate::filter::{coerce, compare};
use crate::payload::{ColumnType, Payload, Value};
use crate::Filter;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What statistics say about one column over a run of rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnZone {
    /// The column's type, which literals are brought to; `None` when not
    /// known (then only null counts are used).
    pub ty: Option<ColumnType>,
    /// At most the least non-null value (`None`: unknown).
    pub min: Option<Value>,
    /// At least the greatest non-null value (`None`: unknown).
    pub max: Option<Value>,
    /// Null values (`None`: unknown).
    pub nulls: Option<u64>,
    /// `min` and `max` are values the rows hold and every non-null value
    /// is ordered between them (no NaN): then a predicate true of both
    /// ends of a range-shaped set is true of every non-null row.
    pub exact: bool,
}

/// What statistics say about a run of rows, per column. A column absent
/// from the map is unknown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZoneMap {
    /// Rows in the run (`None`: unknown).
    pub rows: Option<u64>,
    /// Statistics by column name.
    pub columns: BTreeMap<String, ColumnZone>,
}

/// What a zone map lets a filter conclude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No row of the run matches: it need not be read.
    None,
    /// Some rows may match: read them and evaluate the filter.
    Some,
    /// Every row matches.
    All,
}

impl ZoneMap {
    /// The zone map of a partition's payload: exact min and max of every
    /// ordered column (NaN left out, and then not exact), null counts of
    /// every column.
    pub fn of_payload(payload: &Payload) -> ZoneMap {
        let mut columns = BTreeMap::new();
        for c in &payload.columns {
            let mut zone = ColumnZone {
                ty: c.ty,
                exact: true,
                nulls: Some(0),
                ..ColumnZone::default()
            };
            let mut nulls = 0u64;
            for v in &c.values {
                match v {
                    Value::Null => nulls += 1,
                    Value::StringList(_) => zone.exact = false,
                    Value::Float(x) if x.is_nan() => zone.exact = false,
                    v => {
                        if zone
                            .min
                            .as_ref()
                            .is_none_or(|m| compare(v, m) == Some(Ordering::Less))
                        {
                            zone.min = Some(v.clone());
                        }
                        if zone
                            .max
                            .as_ref()
                            .is_none_or(|m| compare(v, m) == Some(Ordering::Greater))
                        {
                            zone.max = Some(v.clone());
                        }
                    }
                }
            }
            zone.nulls = Some(nulls);
            columns.insert(c.name.clone(), zone);
        }
        ZoneMap {
            // Without columns the payload holds no rows whatever the
            // partition holds: unknown, not zero.
            rows: (!payload.columns.is_empty()).then(|| payload.rows() as u64),
            columns,
        }
    }

    /// Narrow this zone map with `other`'s facts about the same rows (a
    /// file's metadata and one of its row groups' footer): a column
    /// `other` knows and this one does not is taken from `other`.
    pub fn fill_from(&mut self, other: &ZoneMap) {
        if self.rows.is_none() {
            self.rows = other.rows;
        }
        for (name, zone) in &other.columns {
            self.columns
                .entry(name.clone())
                .or_insert_with(|| zone.clone());
        }
    }
}

/// `(may be true of some row, may be false of some row)`.
type Maybe = (bool, bool);

const UNKNOWN: Maybe = (true, true);

impl Filter {
    /// What `zone` lets this filter conclude about its rows (see the
    /// module docs: [`Verdict::None`] never drops a matching row).
    pub fn prune(&self, zone: &ZoneMap) -> Verdict {
        if zone.rows == Some(0) {
            return Verdict::None;
        }
        match self.maybe(zone) {
            (false, _) => Verdict::None,
            (true, false) => Verdict::All,
            (true, true) => Verdict::Some,
        }
    }

    fn maybe(&self, zone: &ZoneMap) -> Maybe {
        match self {
            Filter::And(v) => v.iter().fold((true, false), |(t, f), x| {
                let (xt, xf) = x.maybe(zone);
                (t && xt, f || xf)
            }),
            Filter::Or(v) => v.iter().fold((false, true), |(t, f), x| {
                let (xt, xf) = x.maybe(zone);
                (t || xt, f && xf)
            }),
            Filter::Not(x) => {
                let (t, f) = x.maybe(zone);
                (f, t)
            }
            leaf => {
                let column = leaf.columns()[0];
                match zone.columns.get(column) {
                    Some(c) => leaf_maybe(leaf, column, c, zone.rows),
                    None => UNKNOWN,
                }
            }
        }
    }
}

/// A predicate on one column against that column's zone.
fn leaf_maybe(leaf: &Filter, column: &str, c: &ColumnZone, rows: Option<u64>) -> Maybe {
    let some_null = c.nulls != Some(0);
    let some_value = match (c.nulls, rows) {
        (Some(n), Some(r)) => n < r,
        _ => true,
    };
    if let Filter::IsNull { .. } = leaf {
        return (some_null, some_value);
    }
    // Every other predicate is false on a null.
    if !some_value {
        return (false, true);
    }
    let Some(ty) = c.ty else {
        return UNKNOWN;
    };
    let lit = |v: &Value| coerce(column, ty, v).ok();
    // (some non-null value may satisfy it, every non-null value does)
    let (may, all) = match leaf {
        Filter::Eq { value, .. } => match lit(value) {
            Some(v) => (within(&v, c), point(c).is_some_and(|p| same(p, &v))),
            None => return UNKNOWN,
        },
        Filter::In { values, .. } => {
            let Some(vs) = values.iter().map(lit).collect::<Option<Vec<_>>>() else {
                return UNKNOWN;
            };
            (
                vs.iter().any(|v| within(v, c)),
                point(c).is_some_and(|p| vs.iter().any(|v| same(p, v))),
            )
        }
        Filter::Range {
            gt, gte, lt, lte, ..
        } => {
            let mut bounds = Vec::new();
            for (b, below, inclusive) in [
                (gt, false, false),
                (gte, false, true),
                (lt, true, false),
                (lte, true, true),
            ] {
                if let Some(b) = b {
                    match lit(b) {
                        Some(v) => bounds.push((v, below, inclusive)),
                        None => return UNKNOWN,
                    }
                }
            }
            // Some value may satisfy every bound: the greatest possible
            // value clears each lower bound, the least each upper one.
            let may = bounds.iter().all(|(b, below, inclusive)| {
                let end = if *below { &c.min } else { &c.max };
                end.as_ref()
                    .is_none_or(|e| satisfies(e, b, *below, *inclusive) != Some(false))
            });
            // A range is convex: both exact ends inside means all inside.
            let all = c.exact
                && [c.min.as_ref(), c.max.as_ref()].into_iter().all(|e| {
                    e.is_some_and(|e| {
                        bounds
                            .iter()
                            .all(|(b, below, inc)| satisfies(e, b, *below, *inc) == Some(true))
                    })
                });
            (may, all)
        }
        Filter::Prefix { prefix, .. } if ty == ColumnType::String => {
            let s = |v: &Option<Value>| match v {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let (min, max) = (s(&c.min), s(&c.max));
            // Strings starting with `prefix` are one interval from
            // `prefix` up: the zone meets it unless it ends below
            // `prefix` or starts above every string with the prefix.
            let may = max.as_ref().is_none_or(|m| m.as_str() >= prefix.as_str())
                && min.as_ref().is_none_or(|m| {
                    m.as_str() <= prefix.as_str() || m.starts_with(prefix.as_str())
                });
            let all = c.exact
                && min.is_some_and(|m| m.starts_with(prefix.as_str()))
                && max.is_some_and(|m| m.starts_with(prefix.as_str()));
            (may, all)
        }
        _ => (true, false),
    };
    (may, some_null || !all)
}

/// `v` may lie within the zone's bounds (unknown bounds or incomparable
/// values: it may).
fn within(v: &Value, c: &ColumnZone) -> bool {
    let above_min = c
        .min
        .as_ref()
        .is_none_or(|m| !matches!(compare(v, m), Some(Ordering::Less)));
    let below_max = c
        .max
        .as_ref()
        .is_none_or(|m| !matches!(compare(v, m), Some(Ordering::Greater)));
    above_min && below_max
}

/// The one value every non-null row holds, when the zone says so exactly.
fn point(c: &ColumnZone) -> Option<&Value> {
    match (&c.min, &c.max) {
        (Some(a), Some(b)) if c.exact && same(a, b) => Some(a),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

/// Whether `v` satisfies one range bound (`None`: incomparable).
fn satisfies(v: &Value, bound: &Value, below: bool, inclusive: bool) -> Option<bool> {
    Some(match compare(v, bound)? {
        Ordering::Equal => inclusive,
        Ordering::Less => below,
        Ordering::Greater => !below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse;
    use crate::payload::Column;

    fn zone(rows: u64, cols: &[(&str, ColumnType, Value, Value, u64, bool)]) -> ZoneMap {
        ZoneMap {
            rows: Some(rows),
            columns: cols
                .iter()
                .map(|(n, ty, min, max, nulls, exact)| {
                    (
                        n.to_string(),
                        ColumnZone {
                            ty: Some(*ty),
                            min: Some(min.clone()),
                            max: Some(max.clone()),
                            nulls: Some(*nulls),
                            exact: *exact,
                        },
                    )
                })
                .collect(),
        }
    }

    fn verdict(text: &str, z: &ZoneMap) -> Verdict {
        parse(text).unwrap().prune(z)
    }

    #[test]
    fn bounds_decide_ranges_sets_and_prefixes() {
        let z = zone(
            10,
            &[
                (
                    "year",
                    ColumnType::Int,
                    Value::Int(2020),
                    Value::Int(2022),
                    0,
                    true,
                ),
                (
                    "lang",
                    ColumnType::String,
                    Value::String("de".into()),
                    Value::String("en".into()),
                    2,
                    true,
                ),
            ],
        );
        assert_eq!(verdict("year >= 2023", &z), Verdict::None);
        assert_eq!(verdict("year > 2022", &z), Verdict::None);
        assert_eq!(verdict("year >= 2022", &z), Verdict::Some);
        assert_eq!(verdict("year >= 2020", &z), Verdict::All);
        assert_eq!(verdict("year in (2019, 2023)", &z), Verdict::None);
        assert_eq!(verdict("not year >= 2023", &z), Verdict::All);
        assert_eq!(verdict(r#"lang = "fr""#, &z), Verdict::None);
        assert_eq!(verdict(r#"lang starts with "f""#, &z), Verdict::None);
        assert_eq!(verdict(r#"lang starts with "d""#, &z), Verdict::Some);
        assert_eq!(verdict(r#"lang starts with "a""#, &z), Verdict::None);
        // Two nulls: `lang >= "a"` is false on them.
        assert_eq!(verdict(r#"lang >= "a""#, &z), Verdict::Some);
        assert_eq!(verdict("lang is null", &z), Verdict::Some);
        assert_eq!(verdict("year is null", &z), Verdict::None);
        assert_eq!(verdict(r#"year >= 2023 or lang = "fr""#, &z), Verdict::None);
        assert_eq!(
            verdict(r#"year >= 2023 and lang = "en""#, &z),
            Verdict::None
        );
        // Unknown columns and literals that do not fit may match.
        assert_eq!(verdict("score > 1", &z), Verdict::Some);
        assert_eq!(verdict(r#"year = "x""#, &z), Verdict::Some);
    }

    #[test]
    fn inexact_bounds_never_decide_that_every_row_matches() {
        let z = zone(
            5,
            &[(
                "t",
                ColumnType::String,
                Value::String("ab".into()),
                Value::String("ab".into()),
                0,
                false,
            )],
        );
        assert_eq!(verdict(r#"t = "ab""#, &z), Verdict::Some);
        assert_eq!(verdict(r#"not t = "ab""#, &z), Verdict::Some);
        assert_eq!(verdict(r#"t = "ac""#, &z), Verdict::None);
    }

    #[test]
    fn all_null_columns_match_only_is_null() {
        let z = ZoneMap {
            rows: Some(3),
            columns: [(
                "lang".to_string(),
                ColumnZone {
                    nulls: Some(3),
                    ..Default::default()
                },
            )]
            .into(),
        };
        assert_eq!(verdict(r#"lang = "en""#, &z), Verdict::None);
        assert_eq!(verdict("lang is null", &z), Verdict::All);
        assert_eq!(verdict(r#"not lang = "en""#, &z), Verdict::All);
    }

    #[test]
    fn a_payloads_zone_map_is_exact() {
        let p = Payload {
            columns: vec![Column {
                name: "score".into(),
                ty: Some(ColumnType::Float),
                values: vec![Value::Float(2.0), Value::Null, Value::Float(-1.0)],
            }],
        };
        let z = ZoneMap::of_payload(&p);
        let c = &z.columns["score"];
        assert_eq!(
            (c.min.clone(), c.max.clone()),
            (Some(Value::Float(-1.0)), Some(Value::Float(2.0)))
        );
        assert_eq!(c.nulls, Some(1));
        assert!(c.exact);
        assert_eq!(verdict("score > 2", &z), Verdict::None);
        assert_eq!(verdict("score >= -1", &z), Verdict::Some);
        // Nulls satisfy a negation; each predicate is judged on its own
        // (`score >= -1 or score is null` is true of every row, but "may
        // be false" is judged per operand), never wrongly.
        assert_eq!(verdict("not score > 2", &z), Verdict::All);
        assert_eq!(verdict("score >= -1 or score is null", &z), Verdict::Some);
    }
}
