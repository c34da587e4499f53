//! Rows with payload columns of every type, the reference writers' JSON
//! input for them, an oracle evaluating filters over them written apart
//! from the engine's evaluator, and random filters: shared by the filter
//! and pruning tests.

#![allow(dead_code)] // each test binary uses its own share

use rulake_datasets::ClusteredGaussian;
use rulake_types::{Filter, Metric, Value};
use std::io::Write;
use std::path::Path;

pub const DIM: usize = 16;
pub const COLUMNS: [&str; 8] = [
    "lang",
    "year",
    "score",
    "flag",
    "published",
    "day",
    "tags",
    "title",
];
/// 2023-01-01T00:00:00Z in microseconds.
pub const BASE_MICROS: i64 = 1_672_531_200_000_000;

/// One row as the test knows it: the oracle's view.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: u64,
    pub vector: Vec<f32>,
    pub lang: Option<String>,
    pub year: Option<i64>,
    pub score: Option<f64>,
    pub flag: Option<bool>,
    pub published: Option<i64>,
    pub day: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub title: Option<String>,
}

/// A small deterministic generator (xorshift), so the rows are the same
/// on every run.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn rows(n: usize, seed: u64) -> Vec<Row> {
    let vectors = ClusteredGaussian::new(DIM, 12, 0.3, seed).sample(n, 1);
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let tags = ["news", "sport", "tech", "art"];
    (0..n)
        .map(|i| {
            let lang = match r.below(20) {
                0 => None,
                1..=10 => Some("en"),
                11..=16 => Some("de"),
                _ => Some("fr"),
            };
            let null = |r: &mut Rng| r.below(25) == 0;
            Row {
                id: i as u64,
                vector: vectors[i * DIM..(i + 1) * DIM].to_vec(),
                lang: lang.map(str::to_owned),
                year: (!null(&mut r)).then(|| 2015 + r.below(11) as i64),
                score: (!null(&mut r)).then(|| r.below(10_000) as f64 / 100.0),
                flag: (!null(&mut r)).then(|| r.below(3) == 0),
                published: (!null(&mut r))
                    .then(|| BASE_MICROS + r.below(2 * 365 * 24) as i64 * 3_600_000_000),
                day: (!null(&mut r)).then(|| 19_000 + r.below(1000) as i64),
                tags: (!null(&mut r)).then(|| {
                    let bits = r.below(16);
                    (0..4)
                        .filter(|b| bits & (1 << b) != 0)
                        .map(|b| tags[b].to_owned())
                        .collect()
                }),
                title: (!null(&mut r)).then(|| format!("T{}-{i}", r.below(7))),
            }
        })
        .collect()
}

/// The rows as the writer script's JSON lines.
pub fn write_rows(path: &Path, rows: &[Row]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for r in rows {
        let v = serde_json::json!({
            "id": r.id, "vector": r.vector, "lang": r.lang, "year": r.year,
            "score": r.score, "flag": r.flag, "published": r.published,
            "day": r.day, "tags": r.tags, "title": r.title,
        });
        writeln!(f, "{v}").unwrap();
    }
}

/// A row's value of `column`, as the engine reads it.
pub fn value(r: &Row, column: &str) -> Value {
    let v = match column {
        "lang" => r.lang.clone().map(Value::String),
        "year" => r.year.map(Value::Int),
        "score" => r.score.map(Value::Float),
        "flag" => r.flag.map(Value::Bool),
        "published" => r.published.map(Value::Timestamp),
        "day" => r.day.map(|d| Value::Date(d as i32)),
        "tags" => r.tags.clone().map(Value::StringList),
        "title" => r.title.clone().map(Value::String),
        c => panic!("no column {c}"),
    };
    v.unwrap_or(Value::Null)
}

/// The oracle: an evaluator of filters over [`Row`]s written apart from
/// the engine's, with the documented two-valued logic (a predicate on a
/// null is false).
pub fn oracle(f: &Filter, r: &Row) -> bool {
    use std::cmp::Ordering::*;
    let cmp = |column: &str, lit: &Value| -> Option<std::cmp::Ordering> {
        match (value(r, column), lit) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Float(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::String(b)) => {
                Some(a.cmp(&rulake_types::payload::parse_instant(b).unwrap()))
            }
            (Value::Date(a), Value::String(b)) => {
                Some((a as i64).cmp(&rulake_types::payload::parse_date(b).unwrap()))
            }
            _ => None,
        }
    };
    match f {
        Filter::And(v) => v.iter().all(|x| oracle(x, r)),
        Filter::Or(v) => v.iter().any(|x| oracle(x, r)),
        Filter::Not(x) => !oracle(x, r),
        Filter::Eq { column, value } => cmp(column, value) == Some(Equal),
        Filter::In { column, values } => values.iter().any(|v| cmp(column, v) == Some(Equal)),
        Filter::Range {
            column,
            gt,
            gte,
            lt,
            lte,
        } => {
            let ok = |b: &Option<Value>, want: &[std::cmp::Ordering]| {
                b.as_ref()
                    .is_none_or(|b| cmp(column, b).is_some_and(|o| want.contains(&o)))
            };
            value(r, column) != Value::Null
                && ok(gt, &[Greater])
                && ok(gte, &[Greater, Equal])
                && ok(lt, &[Less])
                && ok(lte, &[Less, Equal])
        }
        Filter::IsNull { column } => value(r, column) == Value::Null,
        Filter::Contains { column, value: s } => {
            matches!(value(r, column), Value::StringList(l) if l.contains(s))
        }
        Filter::Prefix { column, prefix } => {
            matches!(value(r, column), Value::String(s) if s.starts_with(prefix.as_str()))
        }
    }
}

/// The exact filtered top-k: (id, distance) of the nearest matching rows.
pub fn exact_filtered(rows: &[Row], f: &Filter, q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut d: Vec<(u64, f32)> = rows
        .iter()
        .filter(|r| oracle(f, r))
        .map(|r| (r.id, Metric::L2.distance(q, &r.vector)))
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.truncate(k);
    d
}

pub fn random_filter(r: &mut Rng, depth: usize) -> Filter {
    let col = |r: &mut Rng| COLUMNS[r.below(COLUMNS.len() as u64) as usize].to_string();
    let pick = if depth >= 3 {
        3 + r.below(6)
    } else {
        r.below(9)
    };
    match pick {
        0 => Filter::And(
            (0..1 + r.below(3))
                .map(|_| random_filter(r, depth + 1))
                .collect(),
        ),
        1 => Filter::Or(
            (0..1 + r.below(3))
                .map(|_| random_filter(r, depth + 1))
                .collect(),
        ),
        2 => Filter::Not(Box::new(random_filter(r, depth + 1))),
        3 => Filter::IsNull { column: col(r) },
        4 => Filter::Contains {
            column: "tags".into(),
            value: ["news", "sport", "tech", "art", "none"][r.below(5) as usize].into(),
        },
        5 => Filter::Prefix {
            column: "title".into(),
            prefix: format!("T{}", r.below(8)),
        },
        6 => {
            let (column, value) = scalar(r);
            Filter::Eq { column, value }
        }
        7 => {
            let (column, a) = scalar(r);
            let values = (0..r.below(4))
                .map(|_| loop {
                    let (c, v) = scalar(r);
                    if c == column {
                        break v;
                    }
                })
                .chain([a])
                .collect();
            Filter::In { column, values }
        }
        _ => {
            let (column, a) = ordered(r);
            let (_, b) = loop {
                let (c, v) = ordered(r);
                if c == column {
                    break (c, v);
                }
            };
            let (lo, hi) = (Some(a), Some(b));
            match r.below(4) {
                0 => Filter::Range {
                    column,
                    gt: lo,
                    gte: None,
                    lt: None,
                    lte: None,
                },
                1 => Filter::Range {
                    column,
                    gt: None,
                    gte: lo,
                    lt: hi,
                    lte: None,
                },
                2 => Filter::Range {
                    column,
                    gt: None,
                    gte: None,
                    lt: None,
                    lte: hi,
                },
                _ => Filter::Range {
                    column,
                    gt: lo,
                    gte: None,
                    lt: None,
                    lte: hi,
                },
            }
        }
    }
}

/// A column with equality and a literal of its type.
pub fn scalar(r: &mut Rng) -> (String, Value) {
    match r.below(6) {
        0 => (
            "lang".into(),
            Value::String(["en", "de", "fr", "es"][r.below(4) as usize].into()),
        ),
        1 => ("flag".into(), Value::Bool(r.below(2) == 0)),
        2 => (
            "title".into(),
            Value::String(format!("T{}-{}", r.below(7), r.below(3000))),
        ),
        _ => ordered(r),
    }
}

/// An ordered column and a literal of its type.
pub fn ordered(r: &mut Rng) -> (String, Value) {
    match r.below(5) {
        0 => ("year".into(), Value::Int(2014 + r.below(13) as i64)),
        1 => ("score".into(), Value::Float(r.below(10_000) as f64 / 100.0)),
        2 => {
            let micros = BASE_MICROS + r.below(2 * 365 * 24) as i64 * 3_600_000_000;
            ("published".into(), Value::String(iso(micros)))
        }
        3 => (
            "day".into(),
            Value::String(iso_date(19_000 + r.below(1000) as i64)),
        ),
        _ => (
            "lang".into(),
            Value::String(["d", "en", "f", "zz"][r.below(4) as usize].into()),
        ),
    }
}

/// `YYYY-MM-DD` of days since the epoch.
pub fn iso_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 of whole-hour microseconds.
pub fn iso(micros: i64) -> String {
    let secs = micros / 1_000_000;
    format!(
        "{}T{:02}:00:00Z",
        iso_date(secs.div_euclid(86_400)),
        secs.rem_euclid(86_400) / 3600
    )
}
