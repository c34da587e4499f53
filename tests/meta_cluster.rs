//! The catalog's Raft group as real `rulake meta` processes on loopback:
//! crashes, restarts, membership changes, a paused leader, lost quorum.

use rulake_tests as support;

use rulake_catalog::{
    CatalogError, CollectionRecord, Command, ReadConsistency, SourceKind, SourceRecord,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::linearizability::{linearizable, Event, Op};
use support::Cluster;

fn managed(name: &str) -> Command {
    Command::CreateSource(SourceRecord {
        name: name.into(),
        kind: SourceKind::Managed {
            prefix: format!("file:///lake/{name}/"),
        },
        options: Default::default(),
    })
}

fn commit(file: String) -> Command {
    Command::CommitManaged {
        source: "m".into(),
        expected_seq: None,
        files: vec![file],
    }
}

/// Every file of the managed source `m`, in commit order; checks the
/// sequences are gapless.
fn committed_files(cat: &rulake_catalog::Catalog) -> Vec<String> {
    let commits = cat.managed.get("m").cloned().unwrap_or_default();
    for (i, c) in commits.iter().enumerate() {
        assert_eq!(c.seq, i as u64 + 1, "commit sequences have a gap");
    }
    commits.into_iter().flat_map(|c| c.files).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]);
    let (leader, term) = cluster.wait_leader(&[1, 2, 3], 0).await;
    let client = cluster.client(&[1, 2, 3]);
    client.write(&managed("m")).await.unwrap();

    let killed = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = client.clone();
        let killed = killed.clone();
        tokio::spawn(async move {
            let (mut acked, mut unknown, mut after_kill) = (Vec::new(), Vec::new(), 0);
            let mut i = 0u64;
            while after_kill < 30 && i < 2000 {
                i += 1;
                let file = format!("f-{i}");
                match client.write_via(i as usize, &commit(file.clone())).await {
                    Ok(_) => {
                        acked.push(file);
                        if killed.load(Ordering::SeqCst) {
                            after_kill += 1;
                        }
                    }
                    Err(CatalogError::Indeterminate(_)) => unknown.push(file),
                    Err(CatalogError::Unavailable(_)) => {}
                    Err(e) => panic!("unexpected write error: {e}"),
                }
            }
            (acked, unknown)
        })
    };
    // Let some writes land, then kill the leader mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill(leader);
    killed.store(true, Ordering::SeqCst);
    let (acked, unknown) = writer.await.unwrap();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let (new_leader, new_term) = cluster.wait_leader(&others, term).await;
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    assert!(
        acked.len() >= 30,
        "only {} writes acknowledged",
        acked.len()
    );

    let read = cluster
        .client(&others)
        .read(ReadConsistency::Linearizable)
        .await
        .unwrap();
    let files = committed_files(&read.catalog);
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &files {
        *count.entry(f.as_str()).or_default() += 1;
    }
    assert!(count.values().all(|&c| c == 1), "a write appears twice");
    for f in &acked {
        assert_eq!(count.get(f.as_str()), Some(&1), "acknowledged {f} lost");
    }
    // Nothing appears that was never sent; unknown outcomes may go either way.
    assert!(files.len() <= acked.len() + unknown.len());

    // The killed member comes back and catches up to the same catalog.
    cluster.spawn(leader, true);
    let applied = cluster.wait_converged(&[1, 2, 3], read.applied_index).await;
    let back = cluster
        .client(&[leader])
        .read(ReadConsistency::Local)
        .await
        .unwrap();
    assert_eq!(back.applied_index, applied);
    assert_eq!(committed_files(&back.catalog).len(), files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_group_restart_keeps_the_catalog() {
    // Snapshots every 20 entries: the restart exercises snapshot + log replay.
    let mut cluster = Cluster::start(3, &["--snapshot-every", "20", "--keep-logs", "5"]);
    cluster.wait_leader(&[1, 2, 3], 0).await;
    let client = cluster.client(&[1, 2, 3]);
    client.write(&managed("m")).await.unwrap();
    let mut coll = CollectionRecord::new("docs", "m", 16);
    coll.partitions = 4;
    client
        .write(&Command::CreateCollection(coll))
        .await
        .unwrap();
    client
        .write(&Command::CreateAlias {
            alias: "live".into(),
            collection: "docs".into(),
        })
        .await
        .unwrap();
    client
        .write(&Command::AddTombstones {
            collection: "docs".into(),
            ids: vec!["7".into(), "9".into()],
        })
        .await
        .unwrap();
    for i in 0..45 {
        client.write(&commit(format!("g-{i}"))).await.unwrap();
    }
    // A bad command is rejected, not logged.
    let bad = client
        .write(&Command::DropCollection {
            name: "docs".into(),
        })
        .await;
    assert!(matches!(bad, Err(CatalogError::Refused(_))), "{bad:?}");
    // A follower-only client still writes (forwarded to the leader).
    let status = client.status_of(0).await.unwrap();
    let follower = [1, 2, 3].into_iter().find(|&i| i != status.leader).unwrap();
    cluster
        .client(&[follower])
        .write(&commit("via-follower".into()))
        .await
        .unwrap();
    let before = client.read(ReadConsistency::Linearizable).await.unwrap();
    let applied = cluster
        .wait_converged(&[1, 2, 3], before.applied_index)
        .await;

    for id in 1..=3 {
        cluster.kill(id);
    }
    // Same flags again: bootstrap must not re-initialise.
    for id in 1..=3 {
        cluster.spawn(id, true);
    }
    cluster.wait_leader(&[1, 2, 3], 0).await;
    let after = client.read(ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(
        after.catalog, before.catalog,
        "catalog changed across restart"
    );
    assert!(after.applied_index >= applied);
    assert_eq!(committed_files(&after.catalog).len(), 46);
    client.write(&commit("after-restart".into())).await.unwrap();
    for id in 1..=3 {
        let s = cluster.client(&[id]).status_of(0).await.unwrap();
        assert_eq!(s.members.len(), 3, "membership intact on {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_by_snapshot_is_promoted_and_a_member_is_removed() {
    let mut cluster = Cluster::start(3, &["--snapshot-every", "10", "--keep-logs", "0"]);
    cluster.wait_leader(&[1, 2, 3], 0).await;
    let client = cluster.client(&[1, 2, 3]);
    client.write(&managed("m")).await.unwrap();
    for i in 0..40 {
        client.write(&commit(format!("h-{i}"))).await.unwrap();
    }
    // Wait until the leader has purged its log, so a new member cannot be fed from it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader_status = loop {
        let s = client.status_of(0).await.unwrap();
        let l = cluster.client(&[s.leader]).status_of(0).await.unwrap();
        if l.purged_index > 0 {
            break l;
        }
        assert!(Instant::now() < deadline, "leader never purged its log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let addr4 = cluster.add_slot(4);
    cluster.spawn(4, false);
    client.add_learner(4, &addr4).await.unwrap();
    let learner = cluster.client(&[4]);
    let expected = client.read(ReadConsistency::Linearizable).await.unwrap();
    cluster
        .wait_converged(&[1, 2, 3, 4], expected.applied_index)
        .await;
    let s4 = learner.status_of(0).await.unwrap();
    assert_eq!(s4.state, "Learner");
    assert!(
        s4.snapshot_index > 0 && s4.snapshot_index >= leader_status.purged_index,
        "learner did not install a snapshot: {s4:?}"
    );
    let local = learner.read(ReadConsistency::Local).await.unwrap();
    assert_eq!(local.catalog, expected.catalog);

    client.change_membership(&[1, 2, 3, 4]).await.unwrap();
    let s4 = learner.status_of(0).await.unwrap();
    assert!(s4.members.iter().any(|m| m.id == 4 && m.voter), "{s4:?}");

    // Remove member 1 (maybe the leader): the rest carry on.
    let rest = cluster.client(&[2, 3, 4]);
    rest.change_membership(&[2, 3, 4]).await.unwrap();
    cluster.kill(1);
    cluster.wait_leader(&[2, 3, 4], 0).await;
    rest.write(&commit("after-removal".into())).await.unwrap();
    for i in 0..3 {
        let s = rest.status_of(i).await.unwrap();
        let ids: Vec<u64> = s.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![2, 3, 4], "member {} sees {ids:?}", s.id);
    }
}

/// One recorded client operation on an alias (a register).
struct Record {
    key: String,
    event: Event,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_replaced_and_history_is_linearizable() {
    let cluster = Cluster::start(3, &[]);
    let (old, term) = cluster.wait_leader(&[1, 2, 3], 0).await;
    let setup = cluster.client(&[1, 2, 3]);
    setup.write(&managed("m")).await.unwrap();
    for c in 0..4 {
        let rec = CollectionRecord::new(&format!("c{c}"), "m", 8);
        setup.write(&Command::CreateCollection(rec)).await.unwrap();
    }
    let keys = ["a0", "a1"];
    for k in keys {
        setup
            .write(&Command::CreateAlias {
                alias: k.into(),
                collection: "c0".into(),
            })
            .await
            .unwrap();
    }

    let t0 = Instant::now();
    let now = move || t0.elapsed().as_micros() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for w in 0..4usize {
        let mut client = cluster.client(&[1, 2, 3]);
        client.call_timeout = Duration::from_millis(1500);
        client.total_timeout = Duration::from_secs(5);
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut log = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) && n < 400 {
                n += 1;
                let key = keys[(n + w) % 2].to_string();
                let via = n + w;
                let call = now();
                if (n * 7 + w) % 3 == 0 {
                    let target = format!("c{}", (n + w) % 4);
                    let mut switches = BTreeMap::new();
                    switches.insert(key.clone(), target.clone());
                    let r = client
                        .write_via(via, &Command::SwitchAliases { switches })
                        .await;
                    let ret = match r {
                        Ok(_) => Some(now()),
                        Err(CatalogError::Indeterminate(_)) => None,
                        Err(CatalogError::Unavailable(_)) => continue,
                        Err(e) => panic!("switch failed: {e}"),
                    };
                    log.push(Record {
                        key,
                        event: Event {
                            call,
                            ret,
                            op: Op::Write(target),
                        },
                    });
                } else {
                    let r = client.read_via(via, ReadConsistency::Linearizable).await;
                    if let Ok(r) = r {
                        let v = r.catalog.aliases[&key].clone();
                        log.push(Record {
                            key,
                            event: Event {
                                call,
                                ret: Some(now()),
                                op: Op::Read(v),
                            },
                        });
                    }
                }
            }
            log
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.pause(old);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != old).collect();
    let (new, new_term) = cluster.wait_leader(&others, term).await;
    assert_ne!(new, old);
    // Operations keep completing through the new leader.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.resume(old);
    // The old leader learns of the new term and does not lead again by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster.client(&[old]).status_of(0).await;
        if let Ok(s) = s {
            if s.term >= new_term && s.state != "Leader" || s.term > new_term {
                break;
            }
        }
        assert!(Instant::now() < deadline, "old leader never stepped down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut history = Vec::new();
    for c in clients {
        history.extend(c.await.unwrap());
    }
    let completed = history.iter().filter(|r| r.event.ret.is_some()).count();
    assert!(completed > 20, "too few operations completed: {completed}");

    // Every member ends with the same catalog.
    let applied = cluster.wait_converged(&[1, 2, 3], 0).await;
    cluster.assert_same_catalog(&[1, 2, 3], applied).await;

    for k in keys {
        let events: Vec<Event> = history
            .iter()
            .filter(|r| r.key == k)
            .map(|r| r.event.clone())
            .collect();
        assert!(
            linearizable("c0", &events),
            "history of {k} is not linearizable: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_quorum_answers_with_an_error() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_leader(&[1, 2, 3], 0).await;
    cluster
        .client(&[1, 2, 3])
        .write(&managed("m"))
        .await
        .unwrap();
    cluster.kill(2);
    cluster.kill(3);
    let mut client = cluster.client(&[1]);
    client.call_timeout = Duration::from_secs(2);
    client.total_timeout = Duration::from_secs(4);
    // Guard against a hang; the client's own deadlines must fire well before.
    let guard = Duration::from_secs(60);
    let w = tokio::time::timeout(guard, client.write(&commit("no-quorum".into())))
        .await
        .expect("write hung without quorum");
    match w {
        Err(CatalogError::Unavailable(m)) | Err(CatalogError::Indeterminate(m)) => {
            assert!(!m.is_empty())
        }
        other => panic!("write without quorum: {other:?}"),
    }
    let r = tokio::time::timeout(guard, client.read(ReadConsistency::Linearizable))
        .await
        .expect("read hung without quorum");
    assert!(
        matches!(r, Err(CatalogError::Unavailable(_))),
        "linearizable read without quorum: {r:?}"
    );
    // A local read still answers, flagged by its applied index.
    let local = client.read(ReadConsistency::Local).await.unwrap();
    assert!(local.catalog.sources.contains_key("m"));
}

/// `ClusterStatus` (and `rulake stats`) asked member 1 only, so it failed
/// while every other call failed over: the status comes from whichever
/// member answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_status_is_answered_while_its_first_member_is_down() {
    let mut cluster = Cluster::start(3, &[]);
    let client = cluster.client_all();
    client.write(&managed("docs")).await.unwrap();
    cluster.kill(1);
    assert!(client.status_of(0).await.is_err(), "member 1 is down");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.status().await {
            Ok(s) if s.leader == 2 || s.leader == 3 => break,
            r if Instant::now() < deadline => {
                let _ = r;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => panic!("no status with a live leader: {r:?}"),
        }
    }
}

/// A member whose Raft log append fails (an fsync error, injected through
/// the `catalog-log-append` failpoint) stops and exits non-zero instead of
/// acknowledging what it did not store; the other two keep committing, and
/// once started again the member catches up to the same catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_log_fsync_fails_exits_and_catches_up_when_restarted() {
    let points = tempfile::tempdir().unwrap();
    // Every member watches a file of its own (see rulake-server's failpoints).
    std::env::set_var(
        "RULAKE_FAILPOINTS",
        points.path().join("fp-{pid}").display().to_string(),
    );
    let mut cluster = Cluster::start(3, &[]);
    let (leader, _) = cluster.wait_leader(&[1, 2, 3], 0).await;
    let client = cluster.client(&[1, 2, 3]);
    client.write(&managed("m")).await.unwrap();
    let victim = leader % 3 + 1;
    let pid = cluster.member_proc(victim).unwrap().pid();
    std::fs::write(
        points.path().join(format!("fp-{pid}")),
        "catalog-log-append=return\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if client.write(&commit(format!("f-{acked}"))).await.is_ok() {
            acked += 1;
        }
        if let Some(s) = cluster.exited(victim) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "member {victim} kept running after its log append failed"
        );
    };
    assert!(!status.success(), "a failed fsync is not a clean exit");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != victim).collect();
    for i in 0..5 {
        client
            .write(&commit(format!("g-{i}")))
            .await
            .expect("two of three members commit");
    }
    let read = cluster
        .client(&others)
        .read(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(committed_files(&read.catalog).len(), acked + 5);

    std::fs::remove_file(points.path().join(format!("fp-{pid}"))).unwrap();
    cluster.spawn(victim, false);
    let applied = cluster.wait_converged(&[1, 2, 3], read.applied_index).await;
    let back = cluster
        .client(&[victim])
        .read(ReadConsistency::Local)
        .await
        .unwrap();
    assert!(back.applied_index >= applied);
    assert_eq!(
        committed_files(&back.catalog),
        committed_files(&read.catalog)
    );
}
