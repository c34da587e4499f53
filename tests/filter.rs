//! Filtered search end to end, as a user runs it: a Delta table with
//! `lang`, `year` and `title` written by deltalake, a collection created
//! with `rulake collections create --payload-columns`, and `rulake search
//! --filter ... --output-columns ... --format json`, against `rulake
//! serve` and against a cluster (meta group, two shard nodes, a
//! coordinator: the filter travels in the shard scans). Every answer is
//! checked against a brute-force filtered scan of the rows.

use rulake_tests as support;

use rulake_client::{proto, Client};
use rulake_datasets::ReferenceWriters;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::distributed::Distributed;
use support::process::cli;

const DIM: usize = 8;
const ROWS: usize = 3000;

struct Row {
    id: u64,
    vector: Vec<f32>,
    lang: Option<&'static str>,
    year: i64,
    title: String,
}

fn rows() -> Vec<Row> {
    (0..ROWS)
        .map(|i| Row {
            id: i as u64,
            vector: (0..DIM)
                .map(|d| ((i * 37 + d * 11) % 101) as f32 / 10.0 + (i % 5) as f32)
                .collect(),
            lang: match i % 10 {
                0 => None,
                1..=4 => Some("en"),
                5..=7 => Some("de"),
                _ => Some("fr"),
            },
            year: 2018 + (i % 9) as i64,
            title: format!("doc {i}"),
        })
        .collect()
}

/// The rows as a Delta table of four commits, written by deltalake.
fn write_table(w: &ReferenceWriters, dir: &Path, rows: &[Row]) -> String {
    let jsonl = dir.join("rows.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    for r in rows {
        let v = serde_json::json!({
            "id": r.id, "vector": r.vector, "lang": r.lang, "year": r.year, "title": r.title,
        });
        writeln!(f, "{v}").unwrap();
    }
    let table = dir.join("docs");
    w.payload_write(true, &table, &jsonl, 4).unwrap();
    format!("file://{}", table.display())
}

fn matches(r: &Row) -> bool {
    r.lang == Some("en") && r.year >= 2024
}

/// The exact filtered top-k as (id, distance).
fn exact(rows: &[Row], q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut d: Vec<(u64, f32)> = rows
        .iter()
        .filter(|r| matches(r))
        .map(|r| {
            let d = r.vector.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (r.id, d)
        })
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d.truncate(k);
    d
}

const FILTER: &str = r#"lang = "en" and year >= 2024"#;

fn ok(addr: &str, args: &[&str]) -> String {
    let (success, text) = cli(Some(addr), &[], args);
    assert!(success, "rulake {args:?} failed:\n{text}");
    text
}

/// The JSON `rulake search --format json` printed.
fn json_of(text: &str) -> serde_json::Value {
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in:\n{text}"));
    serde_json::from_str(line).unwrap()
}

/// Run the issue's search through the command line at `addr` and check
/// it: k hits, all matching, with their title and year, nearest first
/// and equal to the exact filtered scan.
fn search_cli(addr: &str, rows: &[Row], q: &[f32]) {
    let vector = q.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    let out = ok(
        addr,
        &[
            "search",
            "--collection",
            "docs",
            "--vector",
            &vector,
            "-k",
            "10",
            "--filter",
            FILTER,
            "--output-columns",
            "title,year",
            "--format",
            "json",
        ],
    );
    let v = json_of(&out);
    let hits = v["hits"].as_array().unwrap();
    let want = exact(rows, q, 10);
    assert_eq!(hits.len(), 10, "{out}");
    for (h, (_, d)) in hits.iter().zip(&want) {
        let got = h["id"].as_u64().unwrap();
        let row = &rows[got as usize];
        assert!(matches(row), "hit {got} does not match: {out}");
        assert_eq!(h["columns"]["title"], row.title.as_str(), "{out}");
        assert_eq!(h["columns"]["year"], row.year, "{out}");
        // The exact scan's answer, up to ties at equal distance.
        let got_d = h["distance"].as_f64().unwrap() as f32;
        assert!(
            (got_d - d).abs() <= 1e-3 * d.max(1.0),
            "{got_d} vs {d}: {out}"
        );
    }
    // A filter on a column the collection does not keep: refused, named.
    let (success, text) = cli(
        Some(addr),
        &[],
        &[
            "search",
            "--collection",
            "docs",
            "--vector",
            &vector,
            "--filter",
            "score > 1",
        ],
    );
    assert!(
        !success && text.contains("\"score\"") && text.contains("InvalidArgument"),
        "{text}"
    );
}

/// The same through the Rust client: Search, BatchSearch and
/// FederatedSearch all filter and return columns; a literal of the wrong
/// type is INVALID_ARGUMENT naming the column.
async fn search_client(c: &Client, rows: &[Row], q: &[f32]) {
    let filter = rulake_coordinator::wire::filter_to(&rulake_types::filter::parse(FILTER).unwrap());
    let params = proto::SearchParams {
        k: 10,
        filter: Some(filter.clone()),
        output_columns: vec!["lang".into()],
        ..Default::default()
    };
    // Compared by distance (ties at equal distance may order either way),
    // and every hit must match.
    let want: Vec<f32> = exact(rows, q, 10).into_iter().map(|(_, d)| d).collect();
    let same = |got: Vec<(u64, f32)>| {
        assert_eq!(got.len(), want.len());
        for ((id, g), w) in got.iter().zip(&want) {
            assert!(matches(&rows[*id as usize]), "hit {id} does not match");
            assert!((g - w).abs() <= 1e-3 * w.max(1.0), "{g} vs {w}");
        }
        true
    };
    let ids = |hits: &[proto::Hit]| -> Vec<(u64, f32)> {
        hits.iter()
            .map(|h| match h.id.as_ref().and_then(|i| i.id.as_ref()) {
                Some(proto::vector_id::Id::Num(n)) => (*n, h.distance),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let r = c.search_with("docs", q, params.clone()).await.unwrap();
    assert!(same(ids(&r.hits)));
    for h in &r.hits {
        let lang = h.columns["lang"].kind.clone();
        assert_eq!(lang, Some(proto::value::Kind::StringValue("en".into())));
    }
    let b = c
        .batch_search("docs", &[q.to_vec(), q.to_vec()], params.clone())
        .await
        .unwrap();
    assert_eq!(b.results.len(), 2);
    assert!(b.results.iter().all(|res| same(ids(&res.hits))));
    let f = c.federated_search(&["docs"], q, params).await.unwrap();
    let fed: Vec<(u64, f32)> = f
        .hits
        .iter()
        .map(|h| match h.id.as_ref().and_then(|i| i.id.as_ref()) {
            Some(proto::vector_id::Id::Num(n)) => (*n, h.distance),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(same(fed));
    assert!(f.hits.iter().all(|h| h.columns.contains_key("lang")));
    let bad =
        rulake_coordinator::wire::filter_to(&rulake_types::filter::parse("year = \"x\"").unwrap());
    let err = c
        .search_with(
            "docs",
            q,
            proto::SearchParams {
                k: 10,
                filter: Some(bad),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("\"year\""), "{err}");
}

fn create_args(url: &str) -> Vec<&str> {
    vec![
        "collections",
        "create",
        "docs",
        "--dim",
        "8",
        "--source",
        "delta",
        "--url",
        url,
        "--partitions",
        "3",
        "--payload-columns",
        "lang,year,title",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_filters_a_delta_table_and_returns_columns() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let url = write_table(&w, dir.path(), &rows);
    let server = support::Served::start(&dir.path().join("data"));
    ok(&server.addr, &create_args(&url));
    let q = rows[123].vector.clone();
    search_cli(&server.addr, &rows, &q);
    let c = Client::connect(&format!("http://{}", server.addr))
        .await
        .unwrap();
    search_client(&c, &rows, &q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_filters_on_its_shards_and_returns_columns() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let url = write_table(&w, dir.path(), &rows);
    let mut d = Distributed::start(2);
    let addr = d.coordinator();
    ok(&addr, &create_args(&url));
    let c = d.client(&addr).await;
    // Placement and the first loads take a moment after the create.
    let q = rows[123].vector.clone();
    let start = Instant::now();
    loop {
        if let Ok(r) = c.search("docs", &q, 10).await {
            if r.partitions_answered == r.partitions_total {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "docs never answered whole"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    search_cli(&addr, &rows, &q);
    search_client(&c, &rows, &q).await;
}

/// Payload and standing-filter columns are checked against the table's
/// schema when the collection is created (no first load needed), and a
/// standing filter keeps only its rows, end to end through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_are_checked_at_create_and_a_standing_filter_keeps_its_rows() {
    let Some(w) = ReferenceWriters::for_tests() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let url = write_table(&w, dir.path(), &rows);
    let server = support::Served::start(&dir.path().join("data"));
    let c = Client::connect(&format!("http://{}", server.addr))
        .await
        .unwrap();
    for (columns, filter, named) in [
        (&["lang", "nope"][..], "", "\"nope\""),
        (&["lang", "vector"][..], "", "\"vector\""),
        (&["lang"][..], "missing = 1", "\"missing\""),
    ] {
        let spec = proto::CollectionSpec {
            name: "bad".into(),
            source: Some(proto::Source {
                kind: Some(proto::source::Kind::Delta(proto::DeltaSource {
                    table_url: url.clone(),
                    id_column: "id".into(),
                    vector_column: "vector".into(),
                    ..Default::default()
                })),
            }),
            dimension: 8,
            metric: proto::Metric::L2 as i32,
            payload_columns: columns.iter().map(|c| c.to_string()).collect(),
            standing_filter: filter.into(),
            ..Default::default()
        };
        let err = c.create_collection(spec).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
        assert!(
            err.to_string().contains(named),
            "{columns:?} {filter}: {err}"
        );
    }
    // The command line checks the filter's syntax before sending it.
    let mut args = create_args(&url);
    args[2] = "typo";
    args.extend(["--standing-filter", "year >="]);
    let (success, text) = cli(Some(&server.addr), &[], &args);
    assert!(!success && text.contains("--standing-filter"), "{text}");
    let mut args = create_args(&url);
    args[2] = "recent";
    args.extend(["--standing-filter", "year >= 2024"]);
    ok(&server.addr, &args);
    let out = ok(&server.addr, &["collections", "describe", "recent"]);
    assert!(out.contains("standing filter: year >= 2024"), "{out}");
    let q = rows[123].vector.clone();
    let params = proto::SearchParams {
        k: 50,
        output_columns: vec!["year".into()],
        ..Default::default()
    };
    let got = c.search_with("recent", &q, params).await.unwrap();
    assert_eq!(got.hits.len(), 50);
    for h in &got.hits {
        let year = h.columns["year"].kind.clone();
        assert_eq!(
            year.map(|k| matches!(k, proto::value::Kind::IntValue(y) if y >= 2024)),
            Some(true),
            "{h:?}"
        );
    }
}

/// One row of the managed collection: every payload type, nulls, and text
/// that needs CSV quoting.
struct Note {
    id: u64,
    vector: Vec<f32>,
    lang: Option<&'static str>,
    year: i64,
    score: f64,
    /// RFC 3339, whole seconds, UTC: as `--format json` prints it.
    at: String,
    day: Option<&'static str>,
    tags: Vec<String>,
    ok: bool,
    title: String,
}

const NOTES: usize = 900;
const NOTE_COLUMNS: &str =
    "lang:string,year:int,score:float,at:timestamp,day:date,tags:list<string>,ok:bool,title:string";
const NOTE_FILTER: &str = r#"lang = "en" and year >= 2022 and tags contains "news""#;

fn notes() -> Vec<Note> {
    let days = ["2023-06-15", "2024-01-31", "2025-12-01"];
    (0..NOTES)
        .map(|i| Note {
            id: i as u64,
            vector: (0..DIM)
                .map(|d| ((i * 53 + d * 7) % 97) as f32 / 9.0 + (i % 3) as f32)
                .collect(),
            lang: match i % 10 {
                0 => None,
                1..=5 => Some("en"),
                _ => Some("de"),
            },
            year: 2018 + (i % 8) as i64,
            score: i as f64 / 8.0,
            at: format!(
                "{}T{:02}:{:02}:{:02}Z",
                days[i % 3],
                i % 24,
                i % 60,
                (i * 7) % 60
            ),
            day: (i % 11 != 0).then_some(days[(i / 3) % 3]),
            tags: match i % 4 {
                0 => vec![],
                1 => vec!["news".into()],
                2 => vec!["news".into(), "sport".into()],
                _ => vec!["sport".into()],
            },
            ok: i % 2 == 0,
            title: format!("note {i}, \"v{i}\""),
        })
        .collect()
}

fn note_matches(n: &Note) -> bool {
    n.lang == Some("en") && n.year >= 2022 && n.tags.iter().any(|t| t == "news")
}

/// Rows `0..300` as JSON Lines (with a key the collection does not
/// declare), `300..600` as CSV with a header that interleaves the vector's
/// fields with the columns, `600..900` as Parquet.
fn write_note_files(dir: &Path, notes: &[Note]) -> [std::path::PathBuf; 3] {
    use rulake_types::{Column, ColumnType, Value};
    let jsonl = dir.join("a.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    for n in &notes[..300] {
        let v = serde_json::json!({
            "id": n.id, "vector": n.vector, "lang": n.lang, "year": n.year,
            "score": n.score, "at": n.at, "day": n.day, "tags": n.tags, "ok": n.ok,
            "title": n.title, "text": "not a payload column",
        });
        writeln!(f, "{v}").unwrap();
    }
    let csv = dir.join("b.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(
        f,
        "v0,v1,v2,v3,id,lang,year,v4,v5,v6,v7,score,at,day,tags,ok,title"
    )
    .unwrap();
    for n in &notes[300..600] {
        let v: Vec<String> = n.vector.iter().map(f32::to_string).collect();
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\"",
            v[0],
            v[1],
            v[2],
            v[3],
            n.id,
            n.lang.unwrap_or(""),
            n.year,
            v[4],
            v[5],
            v[6],
            v[7],
            n.score,
            n.at,
            n.day.unwrap_or(""),
            n.tags.join("|"),
            n.ok,
            n.title.replace('"', "\"\"")
        )
        .unwrap();
    }
    let rows = &notes[600..];
    let column = |name: &str, ty, values: Vec<Value>| Column {
        name: name.into(),
        ty: Some(ty),
        values,
    };
    let payload = vec![
        column(
            "lang",
            ColumnType::String,
            rows.iter()
                .map(|n| n.lang.map_or(Value::Null, |l| Value::String(l.into())))
                .collect(),
        ),
        column(
            "year",
            ColumnType::Int,
            rows.iter().map(|n| Value::Int(n.year)).collect(),
        ),
        column(
            "score",
            ColumnType::Float,
            rows.iter().map(|n| Value::Float(n.score)).collect(),
        ),
        column(
            "at",
            ColumnType::Timestamp,
            rows.iter()
                .map(|n| Value::Timestamp(rulake_types::payload::parse_instant(&n.at).unwrap()))
                .collect(),
        ),
        column(
            "day",
            ColumnType::Date,
            rows.iter()
                .map(|n| {
                    n.day.map_or(Value::Null, |d| {
                        Value::Date(rulake_types::payload::parse_date(d).unwrap() as i32)
                    })
                })
                .collect(),
        ),
        column(
            "tags",
            ColumnType::StringList,
            rows.iter()
                .map(|n| Value::StringList(n.tags.clone()))
                .collect(),
        ),
        column(
            "ok",
            ColumnType::Bool,
            rows.iter().map(|n| Value::Bool(n.ok)).collect(),
        ),
        column(
            "title",
            ColumnType::String,
            rows.iter()
                .map(|n| Value::String(n.title.clone()))
                .collect(),
        ),
    ];
    let ids: Vec<u64> = rows.iter().map(|n| n.id).collect();
    let vectors: Vec<f32> = rows.iter().flat_map(|n| n.vector.clone()).collect();
    let bytes = rulake_lake::encode_parquet_with(
        rulake_lake::IdsRef::U64(&ids),
        &vectors,
        DIM,
        &payload,
        128,
    )
    .unwrap();
    let parquet = dir.join("c.parquet");
    std::fs::write(&parquet, bytes).unwrap();
    [jsonl, csv, parquet]
}

/// `rulake search` on `notes` with [`NOTE_FILTER`] and every column: the
/// exact filtered top 10 of the rows not in `deleted`, each hit with the
/// values it was ingested with, whatever file it came from.
fn search_notes(addr: &str, notes: &[Note], deleted: &[u64], q: &[f32]) {
    let vector = q.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    let out = ok(
        addr,
        &[
            "search",
            "--collection",
            "notes",
            "--vector",
            &vector,
            "-k",
            "10",
            "--filter",
            NOTE_FILTER,
            "--output-columns",
            "lang,year,score,at,day,tags,ok,title",
            "--format",
            "json",
        ],
    );
    let mut want: Vec<(u64, f32)> = notes
        .iter()
        .filter(|n| note_matches(n) && !deleted.contains(&n.id))
        .map(|n| {
            let d = n.vector.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (n.id, d)
        })
        .collect();
    want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let v = json_of(&out);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10, "{out}");
    for (h, (_, d)) in hits.iter().zip(&want) {
        let id = h["id"].as_u64().unwrap();
        let n = &notes[id as usize];
        assert!(note_matches(n) && !deleted.contains(&id), "hit {id}: {out}");
        let c = &h["columns"];
        assert_eq!(c["lang"], "en", "{out}");
        assert_eq!(c["year"], n.year, "{out}");
        assert_eq!(c["score"].as_f64(), Some(n.score), "{out}");
        assert_eq!(c["at"], n.at.as_str(), "{out}");
        assert_eq!(c["day"], serde_json::json!(n.day), "{out}");
        assert_eq!(c["tags"], serde_json::json!(n.tags), "{out}");
        assert_eq!(c["ok"], n.ok, "{out}");
        assert_eq!(c["title"], n.title.as_str(), "{out}");
        let got = h["distance"].as_f64().unwrap() as f32;
        assert!((got - d).abs() <= 1e-3 * d.max(1.0), "{got} vs {d}: {out}");
    }
}

/// A managed collection declares its columns with their types; `rulake
/// ingest` carries them from JSON Lines, CSV and Parquet; filtered
/// searches return them; a value of the wrong type or an undeclared
/// column refuses the ingest whole; compaction keeps every kept row's
/// values. Declarations that do not fit the source are refused at create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_collection_ingests_and_filters_its_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Served::start_with(
        &dir.path().join("data"),
        &["--compact-every".to_owned(), "0".to_owned()],
    );
    let c = Client::connect(&format!("http://{}", server.addr))
        .await
        .unwrap();
    // Declarations that do not fit their source, refused at create.
    for (args, named) in [
        (&["--payload-columns", "lang,year:int"][..], "\"lang\""),
        (
            &["--payload-columns", "year:integer"][..],
            "\"year:integer\"",
        ),
        (
            &[
                "--source",
                "parquet",
                "--url",
                "file:///nowhere/*.parquet",
                "--payload-columns",
                "year:int",
            ][..],
            "\"year\"",
        ),
    ] {
        let mut create = vec!["collections", "create", "bad", "--dim", "8"];
        create.extend(args);
        let (success, text) = cli(Some(&server.addr), &[], &create);
        assert!(
            !success && text.contains("InvalidArgument") && text.contains(named),
            "{args:?}: {text}"
        );
    }
    ok(
        &server.addr,
        &[
            "collections",
            "create",
            "notes",
            "--dim",
            "8",
            "--partitions",
            "3",
            "--payload-columns",
            NOTE_COLUMNS,
        ],
    );
    let notes = notes();
    let files = write_note_files(dir.path(), &notes);
    for f in &files {
        let out = ok(
            &server.addr,
            &["ingest", f.to_str().unwrap(), "--collection", "notes"],
        );
        assert!(out.contains("ingested 300 records"), "{out}");
        if f.extension().is_some_and(|e| e == "jsonl") {
            assert!(out.contains("\"text\""), "the left-out key is named: {out}");
        }
    }
    let q = notes[421].vector.clone();
    search_notes(&server.addr, &notes, &[], &q);

    // Refused whole: a value of another type, an undeclared column.
    let generation = |info: proto::CollectionInfo| info.generation;
    let before = generation(c.describe_collection("notes").await.unwrap());
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": 5000, \"vector\": [0,0,0,0,0,0,0,0], \"year\": 2024}\n\
         {\"id\": 5001, \"vector\": [0,0,0,0,0,0,0,0], \"year\": \"2024\"}\n",
    )
    .unwrap();
    let (success, text) = cli(
        Some(&server.addr),
        &[],
        &["ingest", bad.to_str().unwrap(), "--collection", "notes"],
    );
    assert!(
        !success && text.contains("InvalidArgument") && text.contains("\"year\""),
        "{text}"
    );
    let undeclared = rulake_client::Record {
        id: rulake_client::Id::Num(5002),
        vector: vec![0.0; DIM],
        columns: [(
            "nope".to_owned(),
            proto::Value {
                kind: Some(proto::value::Kind::IntValue(1)),
            },
        )]
        .into(),
    };
    let err = c
        .ingest("notes", vec![undeclared], 10, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("\"nope\""), "{err}");
    let after = generation(c.describe_collection("notes").await.unwrap());
    assert_eq!(before, after, "a refused ingest committed something");

    // Delete some matching rows, compact: the files are rewritten and the
    // values come along.
    let deleted: Vec<u64> = notes
        .iter()
        .filter(|n| note_matches(n))
        .map(|n| n.id)
        .step_by(3)
        .collect();
    let mut delete = vec!["delete".to_owned(), "--collection".into(), "notes".into()];
    delete.extend(deleted.iter().map(u64::to_string));
    let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
    ok(&server.addr, &delete);
    let out = ok(&server.addr, &["compact", "--collection", "notes"]);
    assert!(out.contains("compacted notes"), "{out}");
    let compacted = generation(c.describe_collection("notes").await.unwrap());
    assert_ne!(
        after, compacted,
        "the compaction committed no new generation: {out}"
    );
    search_notes(&server.addr, &notes, &deleted, &q);
}
