//! A catalog far larger than one gRPC message, through real members on
//! loopback: it is read (linearizable, forwarded and local), polled by a
//! `Follower`, installed on a new member from a snapshot, and emptied
//! again; and commands at the size limit replicate to a member that lags.
//! With one-message reads, about 200k tombstones broke every reader at
//! tonic's 4 MiB default; these 300k (about 20 MiB) pass even the catalog
//! service's own message limit, which only a streamed read survives.

use rulake_catalog::limits::{MAX_CATALOG_MESSAGE, MAX_COMMAND_BYTES, MAX_ID_LEN};
use rulake_catalog::model::batches;
use rulake_catalog::{
    CatalogClient, CatalogConfig, CatalogError, CatalogNode, CollectionRecord, Command,
    CommandError, Follower, ReadConsistency, SourceKind, SourceRecord,
};
use rulake_proto::internal::v1 as pb;
use rulake_proto::internal::v1::catalog_service_client::CatalogServiceClient;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One in-process member serving on a loopback port.
struct Member {
    node: CatalogNode,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Start member `id` in `dir`; `peers` is the initial group (empty for
    /// a learner added later); `tune` adjusts the configuration.
    async fn start(
        id: u64,
        dir: &std::path::Path,
        listener: tokio::net::TcpListener,
        peers: &BTreeMap<u64, String>,
        tune: impl FnOnce(&mut CatalogConfig),
    ) -> Member {
        let addr = listener.local_addr().expect("addr");
        let mut cfg = CatalogConfig::new(id, addr, dir.join(format!("m{id}")));
        cfg.peers = peers.clone();
        // Debug builds parse megabytes of JSON slowly: give every
        // AppendEntries (bounded by the heartbeat interval) time for it.
        cfg.heartbeat = Duration::from_millis(500);
        cfg.election_min = Duration::from_millis(1500);
        cfg.election_max = Duration::from_millis(2000);
        cfg.quorum_timeout = Duration::from_secs(10);
        tune(&mut cfg);
        let node = CatalogNode::start(&cfg).await.expect("start member");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = node.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            server.serve(listener, shutdown).await.expect("serve");
        });
        node.bootstrap(peers).await.expect("bootstrap");
        Member {
            node,
            addr: addr.to_string(),
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
        let _ = self.node.raft().shutdown().await;
    }
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-member group (member 1) with source `s` and collection `c`.
async fn group(
    dir: &std::path::Path,
    tune: impl FnOnce(&mut CatalogConfig),
) -> (Member, CatalogClient) {
    let l = listener().await;
    let addr = l.local_addr().expect("addr").to_string();
    let m1 = Member::start(1, dir, l, &BTreeMap::from([(1, addr.clone())]), tune).await;
    let node = m1.node.clone();
    until("member 1 leads", Duration::from_secs(10), || {
        node.is_leader()
    })
    .await;
    let mut client = CatalogClient::new(&[addr]).expect("client");
    client.call_timeout = Duration::from_secs(30);
    client.total_timeout = Duration::from_secs(60);
    for cmd in [
        Command::CreateSource(SourceRecord {
            name: "s".into(),
            kind: SourceKind::Parquet {
                url: "file:///lake/emb/".into(),
                id_column: "id".into(),
                vector_column: "emb".into(),
            },
            options: Default::default(),
        }),
        Command::CreateCollection(CollectionRecord::new("c", "s", 8)),
    ] {
        client.write(&cmd).await.expect("setup");
    }
    (m1, client)
}

/// Commit `ids` as tombstones of `c`, split as a writer must; the last
/// commit's log index.
async fn add_tombstones(client: &CatalogClient, ids: Vec<String>) -> u64 {
    let mut index = 0;
    for ids in batches(ids) {
        let cmd = Command::AddTombstones {
            collection: "c".into(),
            ids,
        };
        index = client.write(&cmd).await.expect("add tombstones").0;
    }
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalog_past_the_old_message_limit_reads_syncs_and_installs() {
    const N: usize = 300_000;
    let dir = tempfile::tempdir().expect("tempdir");
    // Snapshot often and keep no log behind it: the learner below must
    // install the snapshot, in chunks.
    let (m1, client) = group(dir.path(), |c| {
        c.snapshot_every = 3;
        c.keep_logs = 0;
    })
    .await;
    let ids: Vec<String> = (0..N)
        .map(|i| format!("s:tombstone-{i:07}-of-a-catalog-larger-than-one-message"))
        .collect();
    let index = add_tombstones(&client, ids.clone()).await;

    // Linearizable and local reads of member 1.
    for consistency in [ReadConsistency::Linearizable, ReadConsistency::Local] {
        let r = client.read(consistency).await.expect("read");
        assert!(r.applied_index >= index);
        assert_eq!(r.catalog.tombstones["c"].len(), N);
        let json = serde_json::to_vec(&r.catalog).expect("encode");
        assert!(
            json.len() > MAX_CATALOG_MESSAGE,
            "the catalog must exceed one message: {} bytes",
            json.len()
        );
    }
    // The one-message read (for clients of earlier versions) says why it
    // cannot answer.
    let mut raw = CatalogServiceClient::new(
        rulake_catalog::Transport::default()
            .channel(&m1.addr)
            .expect("channel"),
    );
    let s = raw
        .read(pb::ReadRequest::default())
        .await
        .expect_err("too large for one message");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");

    // A follower (a coordinator's or shard's view) polls it whole.
    let follower = Follower::spawn(client.clone(), Duration::from_millis(50));
    assert!(follower.catch_up(index, Duration::from_secs(30)).await);
    assert_eq!(
        follower.state().read().catalog.tombstones["c"].len(),
        N,
        "the follower's view"
    );

    // A new member catches up from the snapshot, then serves reads.
    let raft = m1.node.raft().clone();
    until("a snapshot purged the log", Duration::from_secs(30), || {
        raft.metrics().borrow().purged.is_some()
    })
    .await;
    let l2 = listener().await;
    let m2 = Member::start(2, dir.path(), l2, &BTreeMap::new(), |_| {}).await;
    client
        .add_learner(2, &m2.addr)
        .await
        .expect("the learner catches up");
    let state2 = m2.node.state();
    until(
        "member 2 applied the tombstones",
        Duration::from_secs(30),
        || state2.read().last_applied.is_some_and(|l| l.index >= index),
    )
    .await;
    assert!(
        m2.node.raft().metrics().borrow().snapshot.is_some(),
        "member 2 installed a snapshot"
    );
    let mut via2 = CatalogClient::new(std::slice::from_ref(&m2.addr)).expect("client");
    via2.call_timeout = Duration::from_secs(30);
    // Local: member 2's own copy; linearizable: streamed from the leader
    // through member 2.
    for (consistency, served_by) in [
        (ReadConsistency::Local, 2),
        (ReadConsistency::Linearizable, 1),
    ] {
        let r = via2.read(consistency).await.expect("read via member 2");
        assert_eq!(r.catalog.tombstones["c"].len(), N, "{consistency:?}");
        assert_eq!(r.served_by, served_by, "{consistency:?}");
    }

    // Every tombstone removed again, in commands a member accepts.
    let mut last = 0;
    for ids in batches(ids) {
        let cmd = Command::RemoveTombstones {
            collection: "c".into(),
            ids,
        };
        last = client.write(&cmd).await.expect("remove").0;
    }
    assert!(follower.catch_up(last, Duration::from_secs(30)).await);
    assert!(follower.state().read().catalog.tombstones.is_empty());
    drop(follower);
    m2.stop().await;
    m1.stop().await;
}

/// A burst of the largest commands, far more than one message holds, sent
/// to a member that joins afterwards and catches up from the log: each
/// `AppendEntries` stays bounded, so it gets every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_behind_a_burst_of_the_largest_commands_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m1, client) = group(dir.path(), |_| {}).await;
    // About 70 MiB of tombstones of the longest ids: more than the Raft
    // service's 64 MiB message limit, in commands of the largest size.
    let long = "x".repeat(MAX_ID_LEN - 6);
    let ids: Vec<String> = (0..70_000).map(|i| format!("s:{i:06}{long}")).collect();
    let lists = batches(ids);
    assert!(lists.len() >= 64, "{} commands", lists.len());
    let mut index = 0;
    for ids in lists {
        let json = serde_json::to_vec(&Command::AddTombstones {
            collection: "c".into(),
            ids: ids.clone(),
        })
        .expect("encode");
        assert!(json.len() <= MAX_COMMAND_BYTES, "{}", json.len());
        index = client
            .write(&Command::AddTombstones {
                collection: "c".into(),
                ids,
            })
            .await
            .expect("write")
            .0;
    }
    let l2 = listener().await;
    let m2 = Member::start(2, dir.path(), l2, &BTreeMap::new(), |_| {}).await;
    client
        .add_learner(2, &m2.addr)
        .await
        .expect("the learner catches up from the log");
    let state2 = m2.node.state();
    until(
        "member 2 applied the burst",
        Duration::from_secs(60),
        || state2.read().last_applied.is_some_and(|l| l.index >= index),
    )
    .await;
    assert!(
        m2.node.raft().metrics().borrow().snapshot.is_none(),
        "caught up from the log, not a snapshot"
    );
    assert_eq!(state2.read().catalog.tombstones["c"].len(), 70_000);
    m2.stop().await;
    m1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_size_limit_is_refused_before_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m1, client) = group(dir.path(), |_| {}).await;
    // No list bound applies to alias switches: only the command's size.
    let switches: BTreeMap<String, String> = (0..10_000)
        .map(|i| (format!("{i:0120}"), "c".to_owned()))
        .collect();
    let cmd = Command::SwitchAliases { switches };
    match client.write(&cmd).await {
        Err(CatalogError::Rejected(CommandError::InvalidField { field, reason })) => {
            assert_eq!(field, "command");
            assert!(reason.contains(&MAX_COMMAND_BYTES.to_string()), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // A client that skips the check meets the member's.
    let mut raw = CatalogServiceClient::new(
        rulake_catalog::Transport::default()
            .channel(&m1.addr)
            .expect("channel"),
    );
    let s = raw
        .write(pb::WriteRequest {
            command_json: serde_json::to_vec(&cmd).expect("encode"),
            forwarded: false,
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message().contains(&MAX_COMMAND_BYTES.to_string()),
        "{}",
        s.message()
    );
    let before = m1.node.raft().metrics().borrow().last_log_index;
    let s = raw
        .write(pb::WriteRequest {
            command_json: vec![b' '; MAX_COMMAND_BYTES + 1],
            forwarded: false,
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert_eq!(m1.node.raft().metrics().borrow().last_log_index, before);
    m1.stop().await;
}
