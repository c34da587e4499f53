//! The benchmark binary as the README runs it: every `rulake-bench --
//! <command>` the README names is a command of the binary, and a small
//! `filter` run (pyarrow writes its lake) reports RuLake's filter at full
//! recall with no short answer beside both client baselines. The report
//! goes to a temporary file, never to docs/BENCHMARKS.md.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rulake-bench");

#[test]
fn every_command_the_readme_names_exists() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    let mut names: Vec<&str> = readme
        .split("rulake-bench -- ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|word| word.trim_matches('`'))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 5, "the README names too few: {names:?}");
    for name in names {
        let out = Command::new(BIN).args([name, "--help"]).output().unwrap();
        assert!(
            out.status.success(),
            "the README names `rulake-bench -- {name}`, which the binary refuses: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_small_filter_run_reports_full_recall_beside_the_client_baselines() {
    let python = match std::env::var("RULAKE_PYTHON") {
        Ok(p) => p,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true: RULAKE_PYTHON must name a Python with pyarrow")
        }
        Err(_) => {
            eprintln!("skipped: RULAKE_PYTHON (a Python with pyarrow) is not set");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("BENCHMARKS.md");
    let out = Command::new(BIN)
        .args(["filter", "--n", "4000", "--dim", "16", "--queries", "20"])
        .arg("--work")
        .arg(tmp.path().join("work"))
        .arg("--output")
        .arg(&report)
        .args(["--python", &python])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    // | selectivity | matching | method | hits asked | recall | short | q/s | × filter |
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" | RuLake filter | "))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 5, "one row per selectivity and none: {text}");
    for row in &rows {
        let recall: f64 = row[5].parse().unwrap();
        let short: usize = row[6].parse().unwrap();
        assert!(recall >= 0.95 && short == 0, "{row:?}\n{text}");
    }
    for baseline in ["client over-fetch, fixed", "client over-fetch, sized"] {
        assert_eq!(
            text.matches(&format!(" | {baseline} | ")).count(),
            4,
            "{baseline}: one row per filtered selectivity: {text}"
        );
    }
}
