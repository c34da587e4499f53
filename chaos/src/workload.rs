//! Load on the catalog as registers: each alias is a register whose value
//! is the collection it points at. Clients switch aliases and read them
//! with linearizable reads through any member, and note every operation
//! in a [`History`]. Aliases make good registers because a switch is a
//! real catalog write (Raft round, fsync) and a read returns the whole
//! catalog, so a stale member shows up as a stale value.

use rulake_catalog::{
    CatalogError, CollectionRecord, Command, ReadConsistency, SourceKind, SourceRecord,
};
use rulake_tests::history::History;
use rulake_tests::linearizability::Op;
use rulake_tests::Cluster;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The registers.
pub const KEYS: [&str; 2] = ["a0", "a1"];
/// Every register's first value.
pub const INITIAL: &str = "c0";
/// Collections the registers switch between.
const TARGETS: usize = 4;

/// Create the source, the collections and the aliases every register
/// starts from.
pub async fn setup(cluster: &Cluster) -> Result<(), CatalogError> {
    let client = cluster.client_all();
    client
        .write(&Command::CreateSource(SourceRecord {
            name: "m".into(),
            kind: SourceKind::Managed {
                prefix: "file:///lake/m/".into(),
            },
            options: Default::default(),
        }))
        .await?;
    for c in 0..TARGETS {
        let rec = CollectionRecord::new(&format!("c{c}"), "m", 8);
        client.write(&Command::CreateCollection(rec)).await?;
    }
    for k in KEYS {
        client
            .write(&Command::CreateAlias {
                alias: k.into(),
                collection: INITIAL.into(),
            })
            .await?;
    }
    Ok(())
}

/// Run `clients` clients until `stop` is set, recording into `history`.
pub fn start(
    cluster: &Cluster,
    clients: usize,
    history: &History,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|w| {
            let mut client = cluster.client_all();
            client.call_timeout = Duration::from_millis(1500);
            client.total_timeout = Duration::from_secs(5);
            let (history, stop) = (history.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    step(&client, &history, w, n).await;
                }
            })
        })
        .collect()
}

/// One operation of client `w`: every third a switch, otherwise a read.
async fn step(client: &rulake_catalog::CatalogClient, history: &History, w: usize, n: usize) {
    let key = KEYS[(n + w) % KEYS.len()];
    let via = n + w;
    let call = history.now();
    if (n * 7 + w) % 3 == 0 {
        let target = format!("c{}", (n + w) % TARGETS);
        let switches = BTreeMap::from([(key.to_string(), target.clone())]);
        let ret = match client
            .write_via(via, &Command::SwitchAliases { switches })
            .await
        {
            Ok(_) => Some(history.now()),
            Err(CatalogError::Indeterminate(_)) => None,
            // Refused before it was proposed: it never happened.
            Err(CatalogError::Unavailable(_)) => return,
            Err(e) => panic!("switch failed: {e}"),
        };
        history.record(key, call, ret, Op::Write(target));
    } else if let Ok(r) = client.read_via(via, ReadConsistency::Linearizable).await {
        let v = r.catalog.aliases[key].clone();
        history.record(key, call, Some(history.now()), Op::Read(v));
    }
}
