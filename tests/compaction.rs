//! The erasure drill on a live `rulake serve`: rows deleted from a managed
//! collection are, after `rulake compact`, in no file under the data
//! directory (managed Parquet files, persisted partitions, catalog) — the
//! test reads the bytes — while every other row still answers, the deleted
//! ids can be ingested again, and all of it holds across a restart.

use rulake_client::{Client, Id};
use rulake_tests as support;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const DIM: usize = 16;
const ROWS: usize = 600;

/// Row `i`'s vector: pseudo-random values no two rows share, so its
/// bytes name it and its nearest row is itself.
fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| {
            // splitmix64 of (i, j)
            let mut z = (i as u64) << 8 | j as u64;
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 10.0
        })
        .collect()
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    support::files_in(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .map(|p| p.display().to_string())
        .collect()
}

/// Every file under `dir`, by file name, with its size.
fn files_under(dir: &Path) -> HashMap<String, u64> {
    support::files_in(dir)
        .into_iter()
        .map(|p| {
            let size = std::fs::metadata(&p).map_or(0, |m| m.len());
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, size)
        })
        .collect()
}

fn id(i: usize) -> String {
    format!("doc-{i:05}")
}

/// The top `k` ids of `docs` for row `i`'s vector.
async fn nearest(client: &Client, i: usize, k: u32) -> Vec<String> {
    nearest_in(client, "docs", i, k).await
}

/// The top `k` ids of `collection` for row `i`'s vector, as text.
async fn nearest_in(client: &Client, collection: &str, i: usize, k: u32) -> Vec<String> {
    use rulake_client::proto::vector_id::Id as Pb;
    let r = client
        .search(collection, &vector(i), k)
        .await
        .expect("search");
    r.hits
        .iter()
        .map(|h| match h.id.as_ref().and_then(|i| i.id.clone()) {
            Some(Pb::Str(s)) => s,
            Some(Pb::Num(n)) => n.to_string(),
            other => panic!("an id, got {other:?}"),
        })
        .collect()
}

/// The exact `k` nearest of `live` rows to row `q`'s vector (L2).
fn exact(q: usize, k: usize, live: &[usize]) -> Vec<String> {
    let query = vector(q);
    let mut d: Vec<(f32, usize)> = live
        .iter()
        .map(|&i| {
            let v = vector(i);
            let s = v.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum();
            (s, i)
        })
        .collect();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    d.iter().take(k).map(|&(_, i)| id(i)).collect()
}

/// Top-5 answers for every 7th row, checked against the exact answer over
/// `live` (recall@5 at least 0.8 over all of them, on uniform random
/// vectors, the hardest case for the index: it is
/// approximate, and a compaction rebuilds it).
async fn answers(client: &Client, live: &[usize]) -> Vec<Vec<String>> {
    let (mut all, mut found, mut wanted) = (Vec::new(), 0, 0);
    for i in (0..ROWS).step_by(7) {
        let got = nearest(client, i, 5).await;
        let truth = exact(i, 5, live);
        found += got.iter().filter(|g| truth.contains(g)).count();
        wanted += truth.len();
        all.push(got);
    }
    assert!(
        found as f64 >= 0.8 * wanted as f64,
        "recall@5 {found}/{wanted}"
    );
    all
}

#[test]
fn compaction_erases_deleted_rows_from_every_file_and_frees_their_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let flags = ["--compact-every".to_owned(), "0".to_owned()];
    let mut server = support::Served::start_with(&data, &flags);
    let cli = |addr: &str, args: &[&str]| {
        let (ok, text) = support::cli(Some(addr), &[], args);
        assert!(ok, "rulake {args:?}:\n{text}");
        text
    };
    let dim = DIM.to_string();
    cli(
        &server.addr,
        &[
            "collections",
            "create",
            "docs",
            "--dim",
            &dim,
            "--partitions",
            "4",
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async {
        let c = Client::connect(&format!("http://{}", server.addr))
            .await
            .unwrap();
        // Three ingests: three commits, three files.
        for part in 0..3 {
            let rows: Vec<(Id, Vec<f32>)> = (part * ROWS / 3..(part + 1) * ROWS / 3)
                .map(|i| (Id::Str(id(i)), vector(i)))
                .collect();
            c.ingest("docs", rows, 100, |_| {}).await.expect("ingest");
        }
        c
    });
    let victims: Vec<usize> = (0..ROWS).step_by(37).collect();
    let kept = |i: &usize| !victims.contains(i);
    rt.block_on(async {
        for &v in &victims {
            assert_eq!(nearest(&client, v, 1).await, [id(v)], "before the delete");
        }
    });
    let mut delete = vec!["delete", "--collection", "docs", "--string-ids"];
    let victim_ids: Vec<String> = victims.iter().map(|&v| id(v)).collect();
    delete.extend(victim_ids.iter().map(String::as_str));
    let text = cli(&server.addr, &delete);
    assert!(
        text.contains(&format!("deleted {} ids", victims.len())),
        "{text}"
    );

    // Tombstoned: gone from answers, still in the files and the cache.
    let live: Vec<usize> = (0..ROWS).filter(kept).collect();
    let answers_after_delete = rt.block_on(answers(&client, &live));
    for got in &answers_after_delete {
        assert!(
            got.iter().all(|g| !victim_ids.contains(g)),
            "a deleted id answered: {got:?}"
        );
    }
    let probe = bytes_of(&vector(victims[3]));
    let before = files_holding(&data, &probe);
    assert!(
        before.iter().any(|f| f.ends_with(".parquet")) && before.iter().any(|f| f.ends_with(".rlk")),
        "the scan must see a deleted row in a managed file and a persisted partition before compaction: {before:?}"
    );

    // Lineage names the three ingests' files and the tombstones.
    let lineage = |addr: &str| -> serde_json::Value {
        let text = cli(addr, &["lineage", "docs", "--format", "json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let before_lineage = lineage(&server.addr);
    assert_eq!(before_lineage["generation"], "m-3", "{before_lineage}");
    assert_eq!(before_lineage["source_kind"], "managed");
    assert_eq!(before_lineage["rows"], ROWS as u64);
    assert_eq!(before_lineage["tombstones"], victims.len() as u64);
    let objects = before_lineage["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 3, "{before_lineage}");
    let on_disk = files_under(&data.join("managed"));
    for o in objects {
        let name = o["path"].as_str().unwrap().rsplit('/').next().unwrap();
        assert_eq!(on_disk.get(name), o["size_bytes"].as_u64().as_ref(), "{o}");
    }

    let text = cli(&server.addr, &["compact", "--collection", "docs"]);
    assert!(text.contains("compacted docs"), "{text}");
    assert!(
        text.contains(&format!("{} deleted rows dropped", victims.len())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} tombstones retired", victims.len())),
        "{text}"
    );
    assert!(
        !text.contains("sweeper"),
        "old files deleted at once: {text}"
    );

    for &v in &victims {
        let held = files_holding(&data, &bytes_of(&vector(v)));
        assert!(
            held.is_empty(),
            "deleted row {v} is still on disk: {held:?}"
        );
        let named = files_holding(&data.join("managed"), id(v).as_bytes());
        assert!(
            named.is_empty(),
            "deleted id {v} is still in a file: {named:?}"
        );
    }
    let after = lineage(&server.addr);
    assert_eq!(after["generation"], "m-4", "{after}");
    assert_eq!(after["tombstones"], 0);
    assert_eq!(after["rows"], (ROWS - victims.len()) as u64);
    assert_eq!(after["objects"].as_array().unwrap().len(), 1, "{after}");
    let (ok, text) = support::cli(
        Some(&server.addr),
        &[],
        &["lineage", "docs", "--generation", "m-3"],
    );
    assert!(
        !ok && text.contains("NotFound") && text.contains("m-4"),
        "{text}"
    );

    // Every row kept is still there and finds itself first. The
    // compaction's one new file can land in a partition that held nothing
    // before: that partition gets a full build, never an extension of its
    // untrained empty index (where a row could miss its own vector).
    let held = files_holding(&data.join("managed"), &bytes_of(&vector(1)));
    assert_eq!(held.len(), 1, "{held:?}");
    rt.block_on(answers(&client, &live));
    rt.block_on(async {
        for i in (0..ROWS).filter(kept).step_by(11) {
            assert_eq!(nearest(&client, i, 1).await, [id(i)]);
        }
    });

    // A deleted id may be written again; one never deleted may not.
    rt.block_on(async {
        let again = vec![(Id::Str(id(victims[0])), vector(ROWS + 1))];
        client
            .ingest("docs", again, 10, |_| {})
            .await
            .expect("a compacted-away id is free again");
        assert_eq!(nearest(&client, ROWS + 1, 1).await, [id(victims[0])]);
        let dup = vec![(Id::Str(id(1)), vector(ROWS + 2))];
        let e = client.ingest("docs", dup, 10, |_| {}).await.unwrap_err();
        assert!(e.to_string().contains("AlreadyExists"), "{e}");
    });
    // Nothing left to do: a second run says so.
    let text = cli(&server.addr, &["compact", "--collection", "docs"]);
    assert!(text.contains("nothing to compact"), "{text}");

    // The same after a restart, from the catalog and the persisted cache.
    server.stop(Duration::from_secs(20));
    let server = support::Served::start_with(&data, &flags);
    rt.block_on(async {
        let client = Client::connect(&format!("http://{}", server.addr))
            .await
            .unwrap();
        assert_eq!(nearest(&client, ROWS + 1, 1).await, [id(victims[0])]);
        for &v in &victims[1..] {
            let got = nearest(&client, v, 3).await;
            assert!(!got.contains(&id(v)), "{v} came back: {got:?}");
        }
        for i in (0..ROWS).filter(kept).step_by(13) {
            assert_eq!(nearest(&client, i, 1).await, [id(i)]);
        }
    });
}

/// Writes `ids` (rows of [`vector`]) as the external table's only file.
fn write_table(lake: &Path, file: &str, ids: &[u64]) {
    for old in support::files_in(lake) {
        std::fs::remove_file(old).unwrap();
    }
    let vectors: Vec<f32> = ids.iter().flat_map(|&i| vector(i as usize)).collect();
    let bytes =
        rulake_lake::encode_parquet(rulake_lake::IdsRef::U64(ids), &vectors, DIM, 50).unwrap();
    std::fs::write(lake.join(file), bytes).unwrap();
}

/// A collection over an external lake source is never rewritten: deleted
/// rows stay hidden by their tombstones while the table holds them, and
/// compacting it retires a tombstone only once the table dropped the row.
#[test]
fn compacting_an_external_source_retires_only_the_tombstones_its_table_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let all: Vec<u64> = (0..200).collect();
    write_table(&lake, "part-0.parquet", &all);
    let flags = ["--compact-every".to_owned(), "0".to_owned()];
    let mut server = support::Served::start_with(&tmp.path().join("data"), &flags);
    let cli = |args: &[&str]| {
        let (ok, text) = support::cli(Some(&server.addr), &[], args);
        assert!(ok, "rulake {args:?}:\n{text}");
        text
    };
    let url = format!("file://{}/", lake.display());
    let dim = DIM.to_string();
    cli(&[
        "collections",
        "create",
        "ext",
        "--dim",
        &dim,
        "--source",
        "parquet",
        "--url",
        &url,
        "--consistency",
        "fresh",
    ]);
    let text = cli(&["delete", "--collection", "ext", "3", "7", "11"]);
    assert!(text.contains("deleted 3 ids"), "{text}");
    let tombstones = || {
        let text = cli(&["lineage", "ext", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["tombstones"].as_u64().unwrap()
    };
    // The table still holds every row: nothing to retire.
    let text = cli(&["compact", "--collection", "ext"]);
    assert!(text.contains("nothing to compact"), "{text}");
    assert_eq!(tombstones(), 3);

    // The table's owner drops rows 3 and 11 (and only those).
    let kept: Vec<u64> = all.iter().copied().filter(|&i| i != 3 && i != 11).collect();
    write_table(&lake, "part-1.parquet", &kept);
    let text = cli(&["compact", "--collection", "ext"]);
    assert!(text.contains("2 tombstones retired"), "{text}");
    assert_eq!(tombstones(), 1);
    let text = cli(&["compact", "--collection", "ext"]);
    assert!(text.contains("nothing to compact"), "{text}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Client::connect(&format!("http://{}", server.addr))
            .await
            .unwrap();
        // 7 is still in the table and still deleted; 3 and 11 are gone.
        for i in [3, 7, 11] {
            let near = nearest_in(&client, "ext", i, 3).await;
            assert!(!near.contains(&i.to_string()), "{i} answered: {near:?}");
        }
        assert_eq!(nearest_in(&client, "ext", 8, 1).await, ["8"]);
    });

    // The owner writes 3 again: with its tombstone retired, it answers.
    write_table(&lake, "part-2.parquet", &all);
    rt.block_on(async {
        let client = Client::connect(&format!("http://{}", server.addr))
            .await
            .unwrap();
        assert_eq!(nearest_in(&client, "ext", 3, 1).await, ["3"]);
        assert!(!nearest_in(&client, "ext", 7, 3)
            .await
            .contains(&"7".to_owned()));
    });
    server.stop(Duration::from_secs(20));
}
