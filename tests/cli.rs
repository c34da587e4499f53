//! The `rulake` client commands against a live `rulake serve` process:
//! create a collection, ingest JSON Lines, CSV and Parquet, alias, search,
//! stats; a file with a bad line ingests nothing.

use rulake_tests as support;

use std::process::Command;

fn rulake(addr: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(support::rulake_bin())
        .args(args)
        .env("RULAKE_ADDR", format!("http://{addr}"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run rulake");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(addr: &str, args: &[&str]) -> String {
    let (success, text) = rulake(addr, args);
    assert!(success, "rulake {args:?} failed:\n{text}");
    text
}

#[test]
fn collections_ingest_alias_search_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Served::start(&dir.path().join("data"));
    let addr = &server.addr;
    let vec = |i: usize| -> Vec<f32> { (0..4).map(|d| ((i * 7 + d * 3) % 11) as f32).collect() };
    let jsonl: String = (0..300)
        .map(|i| format!("{{\"id\": {i}, \"vector\": {:?}}}\n", vec(i)))
        .collect();
    std::fs::write(dir.path().join("a.jsonl"), jsonl).unwrap();
    let csv: String = std::iter::once("id,a,b,c,d\n".to_string())
        .chain((300..400).map(|i| {
            let v: Vec<String> = vec(i).iter().map(|x| x.to_string()).collect();
            format!("{i},{}\n", v.join(","))
        }))
        .collect();
    std::fs::write(dir.path().join("b.csv"), csv).unwrap();
    let ids: Vec<u64> = (400..450).collect();
    let flat: Vec<f32> = (400..450).flat_map(vec).collect();
    rulake_lake::write_parquet_file(
        &dir.path().join("c.parquet"),
        rulake_lake::IdsRef::U64(&ids),
        &flat,
        4,
        20,
    )
    .unwrap();
    let bad = "{\"id\": 900, \"vector\": [1,2,3,4]}\n{\"id\": 901, \"vector\": [1,2]}\n";
    std::fs::write(dir.path().join("bad.jsonl"), bad).unwrap();

    ok(
        addr,
        &[
            "collections",
            "create",
            "docs",
            "--dim",
            "4",
            "--partitions",
            "2",
        ],
    );
    for f in ["a.jsonl", "b.csv", "c.parquet"] {
        let path = dir.path().join(f);
        let text = ok(
            addr,
            &[
                "ingest",
                path.to_str().unwrap(),
                "--collection",
                "docs",
                "--batch",
                "64",
            ],
        );
        assert!(text.contains("ingested"), "{text}");
    }
    let (success, text) = rulake(
        addr,
        &[
            "ingest",
            dir.path().join("bad.jsonl").to_str().unwrap(),
            "--collection",
            "docs",
        ],
    );
    assert!(!success, "a bad file was ingested:\n{text}");
    assert!(
        text.contains("INVALID_ARGUMENT") || text.contains("Invalid"),
        "{text}"
    );
    ok(addr, &["alias", "create", "live", "docs"]);
    let list = ok(addr, &["collections", "list"]);
    assert!(
        list.contains("docs") && list.contains(" 450 ") && list.contains("live"),
        "{list}"
    );
    let hits = ok(
        addr,
        &[
            "search",
            "--collection",
            "live",
            "--vector",
            &format!("{:?}", vec(123)).replace(['[', ']', ' '], ""),
            "-k",
            "1",
            "--nprobe",
            "1000",
            "--rerank",
            "1000",
        ],
    );
    let first = hits.lines().nth(2).unwrap_or_default();
    assert!(
        first.split_whitespace().nth(1).is_some_and(|id| {
            let id: usize = id.parse().unwrap();
            vec(id) == vec(123)
        }),
        "{hits}"
    );
    let stats = ok(addr, &["stats"]);
    assert!(stats.contains("meta: leader 1"), "{stats}");
    ok(addr, &["alias", "delete", "live"]);
    ok(addr, &["collections", "drop", "docs"]);
    let (success, text) = rulake(addr, &["collections", "describe", "docs"]);
    assert!(
        !success && text.contains("NOT_FOUND") || text.contains("not found"),
        "{text}"
    );
}
