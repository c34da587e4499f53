//! Failpoints switched while the process runs (feature `failpoints`, which
//! only the tests' build turns on). A fault scenario needs a disk that
//! turns slow, or an fsync that fails, in one member of a running cluster
//! and for a bounded time; restarting the member to set `FAILPOINTS` would
//! add a second fault to the one under test.
//!
//! `RULAKE_FAILPOINTS` names a file (`{pid}` in it stands for this
//! process's id, so a harness can aim at one process). Every line is
//! `name=actions` in the `fail` crate's syntax (`sleep(300)`, `return`,
//! `50%return`, `off`). The file is read every 100 ms; a failpoint whose
//! line is gone, or the whole file gone, is switched off.
//!
//! The points: `catalog-log-append` (the Raft log's durable append, meta
//! members) and `managed-fsync` (a managed collection's new file,
//! coordinators).

use std::collections::BTreeMap;
use std::time::Duration;

/// Start watching the file `RULAKE_FAILPOINTS` names, if it is set.
pub fn watch() {
    let Ok(template) = std::env::var("RULAKE_FAILPOINTS") else {
        return;
    };
    let path = template.replace("{pid}", &std::process::id().to_string());
    std::thread::Builder::new()
        .name("failpoints".into())
        .spawn(move || {
            let mut active = BTreeMap::new();
            loop {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                apply(&mut active, parse(&text));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .expect("spawn the failpoint watcher");
}

/// `name=actions` lines; blank lines and `#` comments skipped.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(n, a)| (n.trim().to_owned(), a.trim().to_owned()))
        .collect()
}

/// Make the process's failpoints `wanted`, changing only what differs.
fn apply(active: &mut BTreeMap<String, String>, wanted: BTreeMap<String, String>) {
    for name in active.keys().filter(|n| !wanted.contains_key(*n)) {
        fail::remove(name);
        eprintln!("failpoint {name} off");
    }
    for (name, actions) in &wanted {
        if active.get(name) != Some(actions) {
            match fail::cfg(name.as_str(), actions) {
                Ok(()) => eprintln!("failpoint {name}={actions}"),
                Err(e) => eprintln!("failpoint {name}={actions} refused: {e}"),
            }
        }
    }
    *active = wanted;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_failpoints_and_removed_lines_switch_them_off() {
        let wanted = parse("# slow disk\n catalog-log-append = sleep(5)\n\nbad line\n");
        assert_eq!(
            wanted,
            BTreeMap::from([("catalog-log-append".into(), "sleep(5)".into())])
        );
        let mut active = BTreeMap::new();
        apply(&mut active, parse("test-point=return"));
        let hit = || {
            fail::fail_point!("test-point", |_| true);
            false
        };
        assert!(hit(), "the point is on");
        apply(&mut active, parse(""));
        assert!(!hit(), "the point is off once its line is gone");
        assert!(active.is_empty());
    }
}
