//! openraft's storage conformance suite against the durable store: the
//! redb log/vote store and the snapshotting state machine must behave as
//! openraft assumes (log state after purge and truncate, vote round trips,
//! membership recovery from log and snapshot, snapshot install).

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use rulake_catalog::store::{LogStore, StateMachine};
use rulake_catalog::TypeConfig;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft.redb")).expect("open log store");
        let sm = StateMachine::open(&dir.path().join("snapshots")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn redb_store_passes_openraft_conformance_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("storage conformance: {e}");
    }
}
