//! Filtered search over Parquet files and Delta tables written by the
//! reference writers (pyarrow, deltalake), with payload columns of every
//! type: each operator against an oracle written here, nulls, empty
//! answers, output columns, deletes of both kinds, bad filters, and a
//! property test of random filters against an exact filtered scan.

use rulake_datasets::{ClusteredGaussian, Layout, ReferenceWriters, TableFormat};
use rulake_engine::*;
use rulake_lake::{
    DeltaSource, DeltaSourceConfig, IcebergSource, IcebergSourceConfig, ParquetSource,
    ParquetSourceConfig,
};
use rulake_types::{filter::parse, Consistency, SearchParams, Selection, VectorId};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

#[path = "filter/payload.rs"]
mod payload;
use payload::*;

/// `rows` written by `format`'s reference writer under `dir` as 8 files,
/// commits or appends, opened as a source; with the table's directory.
fn source(
    w: &ReferenceWriters,
    dir: &Path,
    format: TableFormat,
    rows: &[Row],
) -> (Arc<dyn rulake_lake::Source>, std::path::PathBuf) {
    let jsonl = dir.join("rows.jsonl");
    write_rows(&jsonl, rows);
    let out = dir.join("table");
    let url = w
        .payload_table(format, &out, &jsonl, 8, &Layout::default())
        .unwrap();
    let source: Arc<dyn rulake_lake::Source> = match format {
        TableFormat::Parquet => {
            Arc::new(ParquetSource::open(ParquetSourceConfig::new(url, "id", "vector")).unwrap())
        }
        TableFormat::Delta => {
            Arc::new(DeltaSource::open(DeltaSourceConfig::new(url, "id", "vector")).unwrap())
        }
        TableFormat::Iceberg => {
            Arc::new(IcebergSource::open(IcebergSourceConfig::new(url, "id", "vector")).unwrap())
        }
    };
    (source, out)
}

/// Collection `name` of `partitions` over source `name`, keeping every
/// payload column.
fn keep_all(e: &RuLake, name: &str, source: Arc<dyn rulake_lake::Source>, partitions: u32) {
    e.register_source(name, source).unwrap();
    e.create_collection(
        CollectionSpec::new(name, name, DIM)
            .partitions(partitions)
            .consistency(Consistency::Fresh)
            .payload_columns(COLUMNS),
    )
    .unwrap();
}

/// A collection `c` of `partitions` over `rows` written by `format`'s
/// reference writer, keeping every payload column.
fn collection(
    w: &ReferenceWriters,
    dir: &Path,
    format: TableFormat,
    rows: &[Row],
    partitions: u32,
) -> (RuLake, std::path::PathBuf) {
    let (source, out) = source(w, dir, format, rows);
    let e = RuLake::new(CacheConfig::default());
    keep_all(&e, "c", source, partitions);
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

async fn every_operator(kind: TableFormat) {
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
    every_operator(TableFormat::Parquet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_filters_of_every_operator_and_type_match_an_exact_filtered_scan() {
    every_operator(TableFormat::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_filters_of_every_operator_and_type_match_an_exact_filtered_scan() {
    every_operator(TableFormat::Iceberg).await;
}

/// One federated search over a Parquet prefix, a Delta table and an
/// Iceberg table, each holding a third of the rows: under every filter,
/// the merged answer is the exact filtered scan of all the rows, each hit
/// names the collection its row lives in and carries its columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_filters_span_parquet_delta_and_iceberg() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(3000, 13);
    let e = RuLake::new(CacheConfig::default());
    let mut home = std::collections::HashMap::new();
    for (i, (name, format)) in [
        ("p", TableFormat::Parquet),
        ("d", TableFormat::Delta),
        ("i", TableFormat::Iceberg),
    ]
    .into_iter()
    .enumerate()
    {
        let part: Vec<Row> = rows.iter().skip(i).step_by(3).cloned().collect();
        home.extend(part.iter().map(|r| (r.id, name)));
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let (s, _) = source(&w, &sub, format, &part);
        keep_all(&e, name, s, 2);
    }
    let queries = ClusteredGaussian::new(DIM, 12, 0.3, 13).sample(3, 77);
    let by_id: std::collections::HashMap<u64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    let mut total = 0.0;
    let mut n = 0;
    for text in FILTERS {
        let sel = selection(text, &["lang", "year"]);
        let f = sel.filter.clone().unwrap();
        for q in queries.chunks(DIM) {
            let want = exact_filtered(&rows, &f, q, 10);
            let got = e
                .federated_search_selected(&["p", "d", "i"], q, SearchParams::k(10), &sel, None)
                .await
                .unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(got.hits.len(), want.len(), "{text}");
            for h in &got.hits {
                let VectorId::U64(id) = h.id else { panic!() };
                let row = by_id[&id];
                assert!(oracle(&f, row), "{text}: {id} does not match");
                assert_eq!(h.collection, home[&id], "{text}: {id}");
                for c in ["lang", "year"] {
                    assert_eq!(
                        h.columns.get(c),
                        Some(&value(row, c)),
                        "{text}: {c} of {id}"
                    );
                }
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
    }
    let recall = total / n as f64;
    assert!(
        recall >= 0.95,
        "mean recall {recall} over {n} federated searches"
    );
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
    let (e, _) = collection(&w, dir.path(), TableFormat::Parquet, &rows, 3);
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
    let (e, table) = collection(&w, dir.path(), TableFormat::Delta, &rows, 2);
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
    let (e, table) = collection(&w, dir.path(), TableFormat::Parquet, &rows, 2);
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
