//! The backup and restore drill on a live `rulake serve`, as an operator
//! would run it: load, ingest, delete, alias, back up; destroy the server
//! and its data directory; restore into a new one; the same collections,
//! aliases, tombstones and answers. A backup that was tampered with or is
//! missing a file is refused whole and leaves no directory behind; backups
//! go only where the server allows them. The same backup restores online
//! into an empty multi-process cluster.

use rulake_client::{proto, Client, Id};
use rulake_tests as support;
use std::path::Path;
use std::time::Duration;

const DIM: usize = 8;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i * 31 + j * 7) % 97) as f32 * 0.37 + (i % 5) as f32)
        .collect()
}

/// An external Parquet table of 300 rows, ids 10_000..
fn write_lake(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ids: Vec<u64> = (10_000..10_300).collect();
    let vectors: Vec<f32> = (0..300).flat_map(vector).collect();
    let bytes =
        rulake_lake::encode_parquet(rulake_lake::IdsRef::U64(&ids), &vectors, DIM, 100).unwrap();
    std::fs::write(dir.join("part-0.parquet"), bytes).unwrap();
}

fn cli(addr: Option<&str>, args: &[&str]) -> (bool, String) {
    support::cli(addr, &[], args)
}

fn ok(addr: Option<&str>, args: &[&str]) -> String {
    let (good, text) = cli(addr, args);
    assert!(good, "rulake {args:?}:\n{text}");
    text
}

/// What a client sees of a server: collections (name, dim, source kind,
/// generation), aliases, and answers with their generation.
async fn observe(addr: &str) -> (Vec<String>, Vec<(String, String)>, Vec<String>) {
    let c = Client::connect(&format!("http://{addr}")).await.unwrap();
    // Searches first: a collection's generation is empty until it loads.
    let mut answers = Vec::new();
    for name in ["m", "live", "ext"] {
        for q in (0..400).step_by(23) {
            // An error is part of what is seen (a cluster still loading).
            let r: proto::SearchResponse = match c.search(name, &vector(q), 5).await {
                Ok(r) => r,
                Err(e) => {
                    answers.push(format!("{name} {q} {e}"));
                    continue;
                }
            };
            let hits: Vec<String> = r
                .hits
                .iter()
                .map(|h| format!("{:?}@{:.4}", h.id, h.distance))
                .collect();
            answers.push(format!("{name} {q} {} {}", r.generation, hits.join(" ")));
        }
    }
    let mut collections: Vec<String> = c
        .list_collections()
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            let spec = i.spec.unwrap_or_default();
            format!(
                "{} dim {} generation {}",
                spec.name, spec.dimension, i.generation
            )
        })
        .collect();
    collections.sort();
    let mut aliases: Vec<(String, String)> = c
        .list_aliases()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.alias, a.collection))
        .collect();
    aliases.sort();
    (collections, aliases, answers)
}

#[test]
fn a_backup_restores_the_same_collections_aliases_tombstones_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let lake = tmp.path().join("lake");
    let backups = tmp.path().join("backups");
    write_lake(&lake);
    std::fs::create_dir_all(&backups).unwrap();
    let lake_url = format!("file://{}/", lake.display());
    let flags = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            "--source-allow".to_owned(),
            lake_url.clone(),
            "--compact-every".to_owned(),
            "0".to_owned(),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    let allow = ["--backup-allow".to_owned(), backups.display().to_string()];
    let mut server = support::Served::start_with(&data, &flags(&allow));
    let addr = server.addr.clone();
    let a = Some(addr.as_str());
    let dim = DIM.to_string();
    ok(
        a,
        &[
            "collections",
            "create",
            "m",
            "--dim",
            &dim,
            "--partitions",
            "2",
        ],
    );
    ok(
        a,
        &[
            "collections",
            "create",
            "ext",
            "--dim",
            &dim,
            "--source",
            "parquet",
            "--url",
            &lake_url,
        ],
    );
    ok(a, &["alias", "create", "live", "m"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::connect(&format!("http://{addr}")).await.unwrap();
        for batch in 0..2 {
            let rows: Vec<(Id, Vec<f32>)> = (batch * 200..(batch + 1) * 200)
                .map(|i| (Id::Num(i as u64), vector(i)))
                .collect();
            c.ingest("m", rows, 50, |_| {}).await.unwrap();
        }
    });
    ok(
        a,
        &["delete", "--collection", "live", "3", "26", "49", "250"],
    );
    let before = rt.block_on(observe(&addr));
    // Hits print as `Some(VectorId { id: Some(Num(26)) })@distance`.
    assert!(before.2.iter().all(|l| !l.contains("Num(26))")));
    assert!(
        before.2.iter().any(|l| l.contains("Num(23))")),
        "{:?}",
        before.2
    );

    let b1 = backups.join("b1").display().to_string();
    let text = ok(a, &["backup", "create", "--to", &b1]);
    assert!(text.contains("backed up 2 collections"), "{text}");
    let (good, text) = cli(a, &["backup", "create", "--to", &b1]);
    assert!(!good && text.contains("AlreadyExists"), "{text}");
    // Only where --backup-allow says, and never into the server's own files.
    for elsewhere in [
        tmp.path().join("elsewhere"),
        data.join("inside"),
        backups.join("..").join("escape"),
    ] {
        let to = elsewhere.display().to_string();
        let (good, text) = cli(a, &["backup", "create", "--to", &to]);
        assert!(!good && text.contains("PermissionDenied"), "{to}: {text}");
        assert!(!elsewhere.exists(), "{to} was written");
    }
    let text = ok(
        None,
        &["backup", "list", "--from", &backups.display().to_string()],
    );
    assert!(
        text.contains("b1") && text.contains("2 collections (ext, m)"),
        "{text}"
    );
    let text = ok(None, &["backup", "verify", "--from", &b1]);
    assert!(text.contains("every checksum matches"), "{text}");

    // Destroy the server and everything it had.
    server.stop(Duration::from_secs(20));
    std::fs::remove_dir_all(&data).unwrap();

    // A damaged backup is refused whole: nothing is restored.
    let damaged = |name: &str, harm: &dyn Fn(&Path)| -> String {
        let copy = backups.join(name);
        copy_dir(&backups.join("b1"), &copy);
        harm(&copy);
        let into = tmp.path().join(format!("restored-{name}"));
        let (good, text) = cli(
            None,
            &[
                "backup",
                "restore",
                "--from",
                &copy.display().to_string(),
                "--data-dir",
                &into.display().to_string(),
            ],
        );
        assert!(!good, "{name} restored:\n{text}");
        assert!(!into.exists(), "{name}: a half-restored directory was left");
        text
    };
    let first_managed = |b: &Path| {
        support::files_in(&b.join("managed"))
            .into_iter()
            .next()
            .expect("a managed file in the backup")
    };
    let text = damaged("flipped", &|b| {
        let f = first_managed(b);
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&f, bytes).unwrap();
    });
    assert!(text.contains("checksum"), "{text}");
    let text = damaged("partial", &|b| {
        std::fs::remove_file(first_managed(b)).unwrap()
    });
    assert!(text.contains("missing"), "{text}");
    let text = damaged("unfinished", &|b| {
        std::fs::remove_file(b.join("MANIFEST.json")).unwrap()
    });
    assert!(text.contains("MANIFEST"), "{text}");
    let text = damaged("catalog", &|b| {
        let f = b.join("catalog.json");
        let t = std::fs::read_to_string(&f)
            .unwrap()
            .replacen("\"m\"", "\"n\"", 1);
        std::fs::write(&f, t).unwrap();
    });
    assert!(text.contains("checksum"), "{text}");

    // Restore into a new directory and serve it.
    let restored = tmp.path().join("restored");
    let text = ok(
        None,
        &[
            "backup",
            "restore",
            "--from",
            &b1,
            "--data-dir",
            &restored.display().to_string(),
        ],
    );
    assert!(text.contains("restored 2 collections"), "{text}");
    let mut server = support::Served::start_with(&restored, &flags(&[]));
    let after = rt.block_on(observe(&server.addr));
    assert_eq!(after.0, before.0, "collections");
    assert_eq!(after.1, before.1, "aliases");
    assert_eq!(after.2, before.2, "answers");
    // The tombstones came back too: a deleted id is still not free, and
    // lineage counts them.
    let text = ok(Some(&server.addr), &["lineage", "m", "--format", "json"]);
    let lineage: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(lineage["tombstones"], 4, "{lineage}");
    rt.block_on(async {
        let c = Client::connect(&format!("http://{}", server.addr))
            .await
            .unwrap();
        let e = c
            .ingest("m", vec![(Id::Num(26), vector(26))], 10, |_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("AlreadyExists"), "{e}");
    });
    server.stop(Duration::from_secs(20));

    // The same backup into an empty cluster (a 3-member meta group, two
    // shard nodes, a coordinator), online through the admin API.
    let lake_allow = vec!["--source-allow".to_owned(), lake_url.clone()];
    let mut cluster = support::Distributed::start(0);
    for id in 1..=2 {
        cluster.spawn_shard_with(id, &lake_allow);
    }
    let coordinator_flags: Vec<String> = lake_allow.iter().chain(&allow).cloned().collect();
    let caddr = cluster.coordinator_with(&coordinator_flags);
    let c = Some(caddr.as_str());
    let outside = tmp.path().join("elsewhere").display().to_string();
    let (good, text) = cli(c, &["backup", "restore", "--from", &outside]);
    assert!(!good && text.contains("PermissionDenied"), "{text}");
    let flipped = backups.join("flipped").display().to_string();
    let (good, text) = cli(c, &["backup", "restore", "--from", &flipped]);
    assert!(!good && text.contains("checksum"), "{text}");
    let text = ok(c, &["collections", "list"]);
    assert!(!text.contains("ext"), "a refused restore wrote:\n{text}");
    let text = ok(c, &["backup", "restore", "--from", &b1]);
    assert!(text.contains("restored 2 collections (ext, m)"), "{text}");
    let (good, text) = cli(c, &["backup", "restore", "--from", &b1]);
    assert!(!good && text.contains("empty catalog"), "{text}");
    // The shard nodes load what placement gives them; until every
    // partition is warm and reported, answers may be partial.
    let in_cluster = rt.block_on(async {
        let start = std::time::Instant::now();
        loop {
            let seen = observe(&caddr).await;
            if seen == before || start.elapsed() > Duration::from_secs(90) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert_eq!(in_cluster.0, before.0, "collections in the cluster");
    assert_eq!(in_cluster.1, before.1, "aliases in the cluster");
    assert_eq!(in_cluster.2, before.2, "answers in the cluster");
    let text = ok(c, &["lineage", "m", "--format", "json"]);
    let lineage: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(lineage["tombstones"], 4, "{lineage}");

    // A compaction in the cluster: the shard nodes load and persist the
    // new generation, and the deleted rows and tombstones are gone.
    let text = ok(c, &["compact", "--collection", "live"]);
    assert!(
        text.contains("compacted live") && text.contains("4 deleted rows dropped"),
        "{text}"
    );
    assert!(!text.contains("sweeper"), "every shard reloaded: {text}");
    let text = ok(c, &["lineage", "m", "--format", "json"]);
    let lineage: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(lineage["tombstones"], 0, "{lineage}");
    assert_eq!(lineage["rows"], 396, "{lineage}");
    let compacted = rt.block_on(observe(&caddr));
    for deleted in [3, 26, 49, 250] {
        assert!(
            compacted
                .2
                .iter()
                .all(|l| !l.contains(&format!("Num({deleted}))"))),
            "{deleted} answered after the compaction"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for f in support::files_in(from) {
        let rel = f.strip_prefix(from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, to.join(rel)).unwrap();
    }
}
