//! The catalog group under faults: clients switch and read aliases through
//! every member while the leader (or a follower) is killed, paused or
//! restarted, round after round, for the profile's length.
//! Checked at the end: every alias's history is linearizable, the members
//! converge on one catalog within 10 s of the last healing, work resumes
//! after every fault, and no member panicked or failed a clean stop.

use rulake_chaos::{workload, Fault, Profile};
use rulake_tests::history::History;
use rulake_tests::Cluster;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_stays_linearizable_through_kills_pauses_and_restarts() {
    let profile = Profile::from_env();
    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_leader(&[1, 2, 3], 0).await;
    workload::setup(&cluster).await.expect("setup");

    let history = History::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = workload::start(&cluster, 4, &history, &stop);

    let start = Instant::now();
    let mut round = 0usize;
    let mut term = 0;
    while start.elapsed() < profile.duration {
        tokio::time::sleep(profile.calm).await;
        let (leader, t) = cluster.wait_leader(&[1, 2, 3], term).await;
        term = t.saturating_sub(1);
        let fault = Fault::ALL[round % Fault::ALL.len()];
        // Every fourth round hits a follower instead of the leader.
        let target = if round % 4 == 3 {
            leader % 3 + 1
        } else {
            leader
        };
        eprintln!("round {round}: {fault:?} on member {target} (leader {leader})");
        fault.apply(&mut cluster, target, profile.fault).await;
        round += 1;
        // Liveness: once the fault is healed, operations complete again
        // (a generous bound: this checks progress, not speed).
        let before = history.completed();
        let deadline = Instant::now() + Duration::from_secs(30);
        while history.completed() == before {
            assert!(
                Instant::now() < deadline,
                "no operation completed within 30 s of healing {fault:?} of member {target}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client panicked");
    }

    // Every fault is healed and the load has stopped: the members agree
    // on the applied index within 10 s.
    let healed = Instant::now();
    let applied = cluster.wait_converged(&[1, 2, 3], 0).await;
    assert!(
        healed.elapsed() < Duration::from_secs(10),
        "members took {:?} to converge after healing",
        healed.elapsed()
    );
    cluster.assert_same_catalog(&[1, 2, 3], applied).await;
    if let Some((key, events)) = history.first_violation(&workload::KEYS, workload::INITIAL) {
        panic!("history of {key} is not linearizable: {events:?}");
    }
    eprintln!(
        "{round} fault rounds, {} operations completed, applied index {applied}",
        history.completed()
    );
    for id in 1..=3 {
        cluster.stop(id, Duration::from_secs(20));
    }
}
