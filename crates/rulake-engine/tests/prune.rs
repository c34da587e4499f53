//! A standing filter prunes by the lake's own statistics: Parquet files
//! with small row groups (pyarrow), a Delta table partitioned by a
//! column with nulls (deltalake) and an Iceberg table partitioned by
//! another (pyiceberg), each written by its reference writer with rows
//! sorted so that files and row groups hold narrow ranges.
//!
//! The property that matters: pruning never drops a matching row. Random
//! filters (every operator, nulls, negations) as standing filters give
//! collections holding exactly the rows the oracle says match; the lake
//! metrics show that files and row groups were indeed left unread.

#[path = "filter/payload.rs"]
mod payload;

use payload::*;
use rulake_datasets::{Layout, ReferenceWriters, TableFormat};
use rulake_engine::*;
use rulake_lake::io::{snapshot, LakeKind};
use rulake_lake::{
    DeltaSource, DeltaSourceConfig, IcebergSource, IcebergSourceConfig, ParquetSource,
    ParquetSourceConfig, Source,
};
use rulake_types::{filter::parse, Filter, SearchParams, Selection, Value, VectorId};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// Rows sorted by year, then language, so pieces of the table hold
/// narrow ranges of both.
fn sorted_rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rows = rows(n, seed);
    rows.sort_by_key(|r| (r.year, r.lang.clone(), r.id));
    rows
}

/// `rows` as a table of `format` under `dir`, opened as a source: Parquet
/// in 4 files of 100-row groups, Delta partitioned by `lang`, Iceberg
/// partitioned by `year`.
fn table(w: &ReferenceWriters, dir: &Path, format: TableFormat, rows: &[Row]) -> Arc<dyn Source> {
    let jsonl = dir.join("rows.jsonl");
    write_rows(&jsonl, rows);
    let out = dir.join("table");
    let layout = match format {
        TableFormat::Parquet => Layout {
            row_group_rows: Some(100),
            ..Layout::default()
        },
        TableFormat::Delta => Layout {
            partition_by: Some("lang".into()),
            ..Layout::default()
        },
        TableFormat::Iceberg => Layout {
            partition_by: Some("year".into()),
            ..Layout::default()
        },
    };
    let url = w.payload_table(format, &out, &jsonl, 4, &layout).unwrap();
    match format {
        TableFormat::Parquet => {
            Arc::new(ParquetSource::open(ParquetSourceConfig::new(url, "id", "vector")).unwrap())
        }
        TableFormat::Delta => {
            Arc::new(DeltaSource::open(DeltaSourceConfig::new(url, "id", "vector")).unwrap())
        }
        TableFormat::Iceberg => {
            Arc::new(IcebergSource::open(IcebergSourceConfig::new(url, "id", "vector")).unwrap())
        }
    }
}

fn kind(format: TableFormat) -> LakeKind {
    match format {
        TableFormat::Parquet => LakeKind::Parquet,
        TableFormat::Delta => LakeKind::Delta,
        TableFormat::Iceberg => LakeKind::Iceberg,
    }
}

/// The ids collection `name` holds (every row, by an exact scan under a
/// filter that matches all).
async fn held(e: &RuLake, name: &str, n: usize, q: &[f32]) -> BTreeSet<u64> {
    let all = Selection {
        filter: Some(Filter::And(vec![])),
        columns: vec![],
    };
    e.search_selected(name, q, SearchParams::k(n), &all, None)
        .await
        .unwrap_or_else(|err| panic!("{name}: {err}"))
        .hits
        .into_iter()
        .map(|h| match h.id {
            VectorId::U64(id) => id,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Filters on the sorted and partitioned columns, which the statistics
/// can rule files out for, and whose negations and null tests they must
/// not get wrong.
const TARGETED: &[&str] = &[
    "year >= 2024",
    "year < 2017",
    "year = 2020",
    "not year >= 2018",
    r#"lang = "en""#,
    r#"lang = "fr" and year in (2016, 2023)"#,
    "lang is null",
    "lang is not null and year > 2022",
    r#"not lang = "de""#,
    r#"lang starts with "f" or year is null"#,
    "year is null",
    r#"lang >= "en" and lang < "fr""#,
];

/// Random and targeted standing filters give collections holding exactly
/// the matching rows, while the statistics leave files (Delta, Iceberg)
/// and row groups (every format) unread.
async fn prunes_only_what_cannot_match(format: TableFormat) {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = sorted_rows(2000, 21);
    let source = table(&w, dir.path(), format, &rows);
    let e = RuLake::new(CacheConfig::default());
    e.register_source("t", source).unwrap();
    let before = snapshot(kind(format));
    let mut r = Rng(0xf11e);
    let filters: Vec<Filter> = TARGETED
        .iter()
        .map(|t| parse(t).unwrap())
        .chain((0..60).map(|_| random_filter(&mut r, 0)))
        .collect();
    let q = &rows[0].vector;
    for (i, f) in filters.iter().enumerate() {
        let name = format!("c{i}");
        // Half keep every column, half only `day` (the filter's columns
        // are then read for it alone).
        let keep: &[&str] = if i % 2 == 0 { &COLUMNS } else { &["day"] };
        e.create_collection(
            CollectionSpec::new(&name, "t", DIM)
                .partitions(3)
                .payload_columns(keep.iter().copied())
                .standing_filter(f.clone()),
        )
        .unwrap();
        let want: BTreeSet<u64> = rows.iter().filter(|r| oracle(f, r)).map(|r| r.id).collect();
        let got = held(&e, &name, rows.len(), q).await;
        assert_eq!(
            got.len(),
            want.len(),
            "{f:?}: held {} rows, {} match",
            got.len(),
            want.len()
        );
        assert_eq!(got, want, "{f:?}");
        e.drop_collection(&name).unwrap();
    }
    let after = snapshot(kind(format));
    let (files, groups) = (
        after.pruned_files - before.pruned_files,
        after.pruned_row_groups - before.pruned_row_groups,
    );
    assert!(
        after.pruned_bytes > before.pruned_bytes,
        "nothing pruned: {files} files, {groups} row groups"
    );
    if format == TableFormat::Parquet {
        assert!(groups > 0, "no row group pruned");
    } else {
        assert!(files > 0, "no file pruned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_row_groups_are_pruned_without_losing_a_matching_row() {
    prunes_only_what_cannot_match(TableFormat::Parquet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_files_are_pruned_without_losing_a_matching_row() {
    prunes_only_what_cannot_match(TableFormat::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_files_are_pruned_without_losing_a_matching_row() {
    prunes_only_what_cannot_match(TableFormat::Iceberg).await;
}

/// The reads saved show: a standing filter on the partition column of a
/// Delta table reads fewer bytes than the same collection without it,
/// the files left out are counted, and the partition column comes back
/// as a payload column (Delta keeps it in the log, not in the files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standing_filter_on_a_partition_column_reads_less_of_the_lake() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = sorted_rows(2000, 22);
    let source = table(&w, dir.path(), TableFormat::Delta, &rows);
    let e = RuLake::new(CacheConfig::default());
    e.register_source("t", source).unwrap();
    let q = &rows[0].vector;
    let mut read = Vec::new();
    for (name, filter) in [("all", None), ("fr", Some(r#"lang = "fr""#))] {
        let before = snapshot(LakeKind::Delta);
        let mut spec = CollectionSpec::new(name, "t", DIM).payload_columns(["lang", "year"]);
        if let Some(f) = filter {
            spec = spec.standing_filter(parse(f).unwrap());
        }
        e.create_collection(spec).unwrap();
        e.refresh(name).await.unwrap();
        let after = snapshot(LakeKind::Delta);
        read.push((
            after.bytes - before.bytes,
            after.pruned_files - before.pruned_files,
            after.pruned_bytes - before.pruned_bytes,
        ));
    }
    let ((all_bytes, all_pruned, _), (fr_bytes, fr_pruned, fr_saved)) = (read[0], read[1]);
    assert_eq!(all_pruned, 0);
    assert!(fr_pruned > 0 && fr_saved > 0, "{read:?}");
    assert!(fr_bytes < all_bytes, "{read:?}");
    let sel = Selection {
        filter: Some(Filter::And(vec![])),
        columns: vec!["lang".into(), "year".into()],
    };
    let got = e
        .search_selected("fr", q, SearchParams::k(rows.len()), &sel, None)
        .await
        .unwrap();
    let fr = rows
        .iter()
        .filter(|r| r.lang.as_deref() == Some("fr"))
        .count();
    assert_eq!(got.hits.len(), fr);
    let by_id: std::collections::HashMap<u64, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    for h in &got.hits {
        let VectorId::U64(id) = h.id else { panic!() };
        assert_eq!(h.columns["lang"], Value::String("fr".into()));
        assert_eq!(h.columns["year"], value(by_id[&id], "year"), "row {id}");
    }
    // Null partition values come back as nulls.
    let got = e
        .search_selected(
            "all",
            q,
            SearchParams::k(rows.len()),
            &Selection {
                filter: Some(parse("lang is null").unwrap()),
                columns: vec!["lang".into()],
            },
            None,
        )
        .await
        .unwrap();
    let nulls = rows.iter().filter(|r| r.lang.is_none()).count();
    assert!(nulls > 0);
    assert_eq!(got.hits.len(), nulls);
}

/// A standing filter whose literal does not fit its column fails the load
/// naming the column, and a malformed one is refused at create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_standing_filters_are_refused_naming_the_column() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = sorted_rows(300, 23);
    let source = table(&w, dir.path(), TableFormat::Parquet, &rows);
    let e = RuLake::new(CacheConfig::default());
    e.register_source("t", source).unwrap();
    e.create_collection(
        CollectionSpec::new("c", "t", DIM).standing_filter(parse(r#"year = "twenty""#).unwrap()),
    )
    .unwrap();
    let err = e.refresh("c").await.unwrap_err();
    assert!(err.to_string().contains("\"year\""), "{err}");
    let empty_range = Filter::Range {
        column: "year".into(),
        gt: None,
        gte: None,
        lt: None,
        lte: None,
    };
    let err = e
        .create_collection(CollectionSpec::new("d", "t", DIM).standing_filter(empty_range))
        .unwrap_err();
    assert_eq!(
        err.code(),
        rulake_types::StatusCode::InvalidArgument,
        "{err}"
    );
}
