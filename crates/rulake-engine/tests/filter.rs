//! Filtered search over Parquet files and Delta tables written by the
//! reference writers (pyarrow, deltalake), with payload columns of every
//! type: each operator against an oracle written here, nulls, empty
//! answers, output columns, deletes of both kinds, bad filters, and a
//! property test of random filters against an exact filtered scan.

use rulake_datasets::{ClusteredGaussian, ReferenceWriters};
use rulake_engine::*;
use rulake_lake::{DeltaSource, DeltaSourceConfig, ParquetSource, ParquetSourceConfig};
use rulake_types::{
    filter::parse, Consistency, Filter, Metric, SearchParams, Selection, Value, VectorId,
};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const DIM: usize = 16;
const COLUMNS: [&str; 8] = [
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
const BASE_MICROS: i64 = 1_672_531_200_000_000;

/// One row as the test knows it: the oracle's view.
#[derive(Clone, Debug)]
struct Row {
    id: u64,
    vector: Vec<f32>,
    lang: Option<String>,
    year: Option<i64>,
    score: Option<f64>,
    flag: Option<bool>,
    published: Option<i64>,
    day: Option<i64>,
    tags: Option<Vec<String>>,
    title: Option<String>,
}

/// A small deterministic generator (xorshift), so the rows are the same
/// on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rows(n: usize, seed: u64) -> Vec<Row> {
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
fn write_rows(path: &Path, rows: &[Row]) {
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
fn value(r: &Row, column: &str) -> Value {
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
fn oracle(f: &Filter, r: &Row) -> bool {
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
fn exact_filtered(rows: &[Row], f: &Filter, q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut d: Vec<(u64, f32)> = rows
        .iter()
        .filter(|r| oracle(f, r))
        .map(|r| (r.id, Metric::L2.distance(q, &r.vector)))
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.truncate(k);
    d
}

enum Kind {
    Parquet,
    Delta,
}

/// A collection `c` of `partitions` over `rows` written by the reference
/// writer as `pieces` files or commits, keeping every payload column.
fn collection(
    w: &ReferenceWriters,
    dir: &Path,
    kind: Kind,
    rows: &[Row],
    partitions: u32,
) -> (RuLake, std::path::PathBuf) {
    let jsonl = dir.join("rows.jsonl");
    write_rows(&jsonl, rows);
    let out = dir.join("table");
    w.payload_write(matches!(kind, Kind::Delta), &out, &jsonl, 8)
        .unwrap();
    let url = out.to_str().unwrap();
    let source: Arc<dyn rulake_lake::Source> = match kind {
        Kind::Parquet => {
            Arc::new(ParquetSource::open(ParquetSourceConfig::new(url, "id", "vector")).unwrap())
        }
        Kind::Delta => {
            Arc::new(DeltaSource::open(DeltaSourceConfig::new(url, "id", "vector")).unwrap())
        }
    };
    let e = RuLake::new(CacheConfig::default());
    e.register_source("c", source).unwrap();
    e.create_collection(
        CollectionSpec::new("c", "c", DIM)
            .partitions(partitions)
            .consistency(Consistency::Fresh)
            .payload_columns(COLUMNS),
    )
    .unwrap();
    (e, out)
}

fn selection(text: &str, columns: &[&str]) -> Selection {
    Selection {
        filter: Some(parse(text).unwrap()),
        columns: columns.iter().map(|c| c.to_string()).collect(),
    }
}

/// Search with `text` and check the answer against the exact filtered
/// scan: every hit matches, `min(k, matches)` hits, the columns asked for
/// are the rows' own, and recall@k by distance is returned.
async fn check(e: &RuLake, rows: &[Row], text: &str, q: &[f32], k: usize) -> f64 {
    let sel = selection(text, &["lang", "year", "tags", "published"]);
    let f = sel.filter.clone().unwrap();
    let want = exact_filtered(rows, &f, q, k);
    let got = e
        .search_selected("c", q, SearchParams::k(k), &sel, None)
        .await
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    assert_eq!(got.hits.len(), want.len(), "{text}: hits vs matching rows");
    let by_id: std::collections::HashMap<u64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    for h in &got.hits {
        let VectorId::U64(id) = h.id else {
            panic!("{:?}", h.id)
        };
        let row = by_id[&id];
        assert!(oracle(&f, row), "{text}: hit {id} does not match: {row:?}");
        for c in ["lang", "year", "tags", "published"] {
            assert_eq!(
                h.columns.get(c),
                Some(&value(row, c)),
                "{text}: column {c} of {id}"
            );
        }
    }
    if want.is_empty() {
        return 1.0;
    }
    let kth = want.last().unwrap().1;
    let found = got
        .hits
        .iter()
        .filter(|h| h.distance <= kth * (1.0 + 1e-4) + 1e-6)
        .count();
    found as f64 / want.len() as f64
}

/// Every operator on every type, the readable form of each.
const FILTERS: &[&str] = &[
    r#"lang = "en" and year >= 2024"#,
    r#"lang != "en""#,
    r#"lang in ("de", "fr")"#,
    "lang is null",
    "lang is not null and year is null",
    "year > 2016 and year < 2019",
    "year <= 2015 or year = 2025",
    "score >= 99",
    "score < 12.5 and score > 3",
    "flag = true",
    "flag = false and not lang = \"de\"",
    r#"published >= "2024-06-01T00:00:00Z""#,
    r#"published < "2023-01-05""#,
    r#"day >= "2022-01-01" and day <= "2022-01-31""#,
    r#"tags contains "tech""#,
    r#"tags contains "art" and tags contains "news""#,
    "tags is null",
    r#"title starts with "T3""#,
    r#"title starts with "T3-1" or title starts with "T5-2""#,
    r#"lang = "xx""#,
    "year in (1999, 2000)",
];

async fn every_operator(kind: Kind) {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(3000, 7);
    let (e, _) = collection(&w, dir.path(), kind, &rows, 4);
    let queries = ClusteredGaussian::new(DIM, 12, 0.3, 7).sample(5, 99);
    for text in FILTERS {
        let matches = rows
            .iter()
            .filter(|r| oracle(&parse(text).unwrap(), r))
            .count();
        let mut recall = 0.0;
        for q in queries.chunks(DIM) {
            recall += check(&e, &rows, text, q, 10).await;
        }
        recall /= 5.0;
        assert!(
            recall >= 0.95,
            "{text}: recall@10 {recall} against the exact filtered scan ({matches} rows match)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_filters_of_every_operator_and_type_match_an_exact_filtered_scan() {
    every_operator(Kind::Parquet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_filters_of_every_operator_and_type_match_an_exact_filtered_scan() {
    every_operator(Kind::Delta).await;
}

/// Random filter trees (every operator, random literals of every type),
/// random queries and `k`: every answer is the exact filtered scan's, up
/// to the index's recall, and never short while enough rows match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_filters_agree_with_an_exact_filtered_scan() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(4000, 11);
    let (e, _) = collection(&w, dir.path(), Kind::Parquet, &rows, 3);
    let mut r = Rng(0x5eed);
    let queries = ClusteredGaussian::new(DIM, 12, 0.3, 11).sample(200, 5);
    let (mut total, mut n) = (0.0, 0);
    for case in 0..200 {
        let f = random_filter(&mut r, 0);
        let text = format!("{f:?}");
        let q = &queries[case * DIM..(case + 1) * DIM];
        let k = [1, 5, 10, 50][r.below(4) as usize];
        let want = exact_filtered(&rows, &f, q, k);
        let sel = Selection {
            filter: Some(f.clone()),
            columns: vec![],
        };
        let got = e
            .search_selected("c", q, SearchParams::k(k), &sel, None)
            .await
            .unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(got.hits.len(), want.len(), "{text}: short answer");
        let allowed: HashSet<u64> = rows
            .iter()
            .filter(|x| oracle(&f, x))
            .map(|x| x.id)
            .collect();
        for h in &got.hits {
            let VectorId::U64(id) = h.id else { panic!() };
            assert!(allowed.contains(&id), "{text}: {id} does not match");
        }
        if let Some(kth) = want.last().map(|w| w.1) {
            let found = got
                .hits
                .iter()
                .filter(|h| h.distance <= kth * (1.0 + 1e-4) + 1e-6)
                .count();
            total += found as f64 / want.len() as f64;
            n += 1;
        }
    }
    let recall = total / n as f64;
    assert!(n > 100, "too few non-empty cases: {n}");
    assert!(
        recall >= 0.95,
        "mean recall {recall} over {n} filtered searches"
    );
}

fn random_filter(r: &mut Rng, depth: usize) -> Filter {
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
fn scalar(r: &mut Rng) -> (String, Value) {
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
fn ordered(r: &mut Rng) -> (String, Value) {
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
fn iso_date(days: i64) -> String {
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
fn iso(micros: i64) -> String {
    let secs = micros / 1_000_000;
    format!(
        "{}T{:02}:00:00Z",
        iso_date(secs.div_euclid(86_400)),
        secs.rem_euclid(86_400) / 3600
    )
}

/// Deletes of both kinds under a filter: a Delta delete (a new table
/// version without the rows) and RuLake tombstones; neither deleted row
/// comes back, and the answer stays full while enough rows match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_with_table_deletes_and_tombstones() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rows = rows(2000, 3);
    let (e, table) = collection(&w, dir.path(), Kind::Delta, &rows, 2);
    let text = r#"lang = "en" and year >= 2020"#;
    let f = parse(text).unwrap();
    let q = ClusteredGaussian::new(DIM, 12, 0.3, 3).sample(1, 8);
    // The nearest matching rows: delete half of them in the table, the
    // other half by tombstone.
    let first = exact_filtered(&rows, &f, &q, 20);
    let (by_table, by_tombstone): (Vec<_>, Vec<_>) =
        first.iter().map(|(id, _)| *id).partition(|id| id % 2 == 0);
    let predicate = format!(
        "id in ({})",
        by_table
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    w.delta_delete(&table, &predicate).unwrap();
    e.set_deleted(
        "c",
        by_tombstone.iter().map(|&i| VectorId::U64(i)).collect(),
    )
    .unwrap();
    let gone: HashSet<u64> = by_table.iter().chain(&by_tombstone).copied().collect();
    rows.retain(|r| !gone.contains(&r.id));
    let recall = check(&e, &rows, text, &q, 10).await;
    assert!(recall >= 0.95, "recall {recall}");
    let got = e
        .search_selected("c", &q, SearchParams::k(10), &selection(text, &[]), None)
        .await
        .unwrap();
    assert_eq!(got.hits.len(), 10);
    for h in &got.hits {
        let VectorId::U64(id) = h.id else { panic!() };
        assert!(!gone.contains(&id), "deleted row {id} came back");
    }
    assert_eq!(got.generation.0, "delta-v8");
}

/// Bad filters and columns are refused naming the column; a filter
/// nothing matches answers nothing; a column the table lacks fails the
/// first load naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_and_columns_are_refused_naming_the_column() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(500, 5);
    let (e, table) = collection(&w, dir.path(), Kind::Parquet, &rows, 2);
    let q = &rows[0].vector;
    for (text, column) in [
        ("nope = 1", "nope"),
        (r#"year = "twenty""#, "year"),
        (r#"tags = "tech""#, "tags"),
        (r#"lang > 3"#, "lang"),
        (r#"year starts with "2""#, "year"),
        (r#"title contains "x""#, "title"),
        (r#"published >= "not a date""#, "published"),
    ] {
        let err = e
            .search_selected("c", q, SearchParams::k(5), &selection(text, &[]), None)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            rulake_types::StatusCode::InvalidArgument,
            "{text}: {err}"
        );
        assert!(
            err.to_string().contains(&format!("{column:?}")),
            "{text}: {err}"
        );
    }
    let err = e
        .search_selected(
            "c",
            q,
            SearchParams::k(5),
            &selection("year = 2020", &["nope"]),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    let none = e
        .search_selected(
            "c",
            q,
            SearchParams::k(5),
            &selection("year = 1900", &[]),
            None,
        )
        .await
        .unwrap();
    assert!(none.hits.is_empty());

    // A payload column the files lack: the first load fails naming it.
    let e2 = RuLake::new(CacheConfig::default());
    e2.register_source(
        "m",
        Arc::new(
            ParquetSource::open(ParquetSourceConfig::new(
                table.to_str().unwrap(),
                "id",
                "vector",
            ))
            .unwrap(),
        ),
    )
    .unwrap();
    e2.create_collection(CollectionSpec::new("m", "m", DIM).payload_columns(["lang", "missing"]))
        .unwrap();
    let err = e2.search("m", q, SearchParams::k(5)).await.unwrap_err();
    assert!(err.to_string().contains("\"missing\""), "{err}");
    // A vector column as a payload column: its type is refused, named.
    let e3 = RuLake::new(CacheConfig::default());
    e3.register_source(
        "v",
        Arc::new(
            ParquetSource::open(ParquetSourceConfig::new(
                table.to_str().unwrap(),
                "id",
                "vector",
            ))
            .unwrap(),
        ),
    )
    .unwrap();
    e3.create_collection(CollectionSpec::new("v", "v", DIM).payload_columns(["vector"]))
        .unwrap();
    let err = e3.search("v", q, SearchParams::k(5)).await.unwrap_err();
    assert!(err.to_string().contains("\"vector\""), "{err}");
    // Names are checked when the collection is created.
    let bad = CollectionSpec::new("b", "v", DIM).payload_columns(["lang", "lang"]);
    assert!(e3.create_collection(bad).is_err());
}
