//! Durable Raft state. A member may only vote or acknowledge an entry once
//! that fact survives a power cut, so the log, the vote and the committed
//! index live in `redb` (copy-on-write B-trees; every write transaction is
//! committed with `Durability::Immediate`, i.e. fsync before
//! `commit()` returns). openraft is told an append is durable only after that
//! commit.
//!
//! The catalog itself is small and kept in memory; it is made durable by
//! snapshots: a snapshot is written to a temporary file, fsynced, renamed over
//! `snapshot.json` and the directory fsynced, so a crash leaves either the old
//! or the new snapshot, never a torn one. On start the state machine loads
//! that snapshot and openraft re-applies the committed log entries after it;
//! logs are purged only up to a snapshot that is already on disk.
//!
//! Replication reads the log through [`LogStore`]'s
//! `limited_get_log_entries`, which stops at [`MAX_APPEND_BYTES`] of stored
//! entries (always at least one): a member that lags behind a burst of
//! large commands gets them in several `AppendEntries` of bounded size, each
//! of which can arrive within its deadline, instead of one that grows with
//! the lag (see [`crate::limits`]).

use crate::error::Rejection;
use crate::limits::MAX_APPEND_BYTES;
use crate::model::{Applied, Catalog};
use crate::TypeConfig;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const SNAPSHOT_FILE: &str = "snapshot.json";

type StErr = StorageError<u64>;

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StErr {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn logs_err(verb: ErrorVerb) -> impl Fn(String) -> StErr {
    move |e| io_err(ErrorSubject::Logs, verb, e)
}

/// The response of applying one log entry: the command's outcome. A command
/// rejected at apply time (it raced another one after validating) is rejected
/// on every replica alike and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome(pub Result<Applied, Rejection>);

/// The Raft log, vote and committed index in one `redb` file.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Open or create the store at `path`.
    pub fn open(path: &Path) -> Result<Self, crate::CatalogError> {
        let db = Database::create(path).map_err(redb::Error::from)?;
        let tx = db.begin_write().map_err(redb::Error::from)?;
        tx.open_table(LOGS).map_err(redb::Error::from)?;
        tx.open_table(META).map_err(redb::Error::from)?;
        tx.commit().map_err(redb::Error::from)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn get_meta<T: for<'a> Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, String> {
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = tx.open_table(META).map_err(|e| e.to_string())?;
        let v = t.get(key).map_err(|e| e.to_string())?;
        match v {
            None => Ok(None),
            Some(g) => serde_json::from_slice(g.value())
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = tx.open_table(META).map_err(|e| e.to_string())?;
            t.insert(key, bytes.as_slice()).map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// Entries in `lo..hi`, stopping before the stored bytes would pass
    /// `budget` (the first entry is always returned).
    fn read_range(
        &self,
        lo: u64,
        hi: Option<u64>,
        budget: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, String> {
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = tx.open_table(LOGS).map_err(|e| e.to_string())?;
        let iter = match hi {
            Some(hi) => t.range(lo..hi),
            None => t.range(lo..),
        }
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in iter {
            let (_, v) = item.map_err(|e| e.to_string())?;
            bytes = bytes.saturating_add(v.value().len());
            if !out.is_empty() && bytes > budget {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn remove_range(&self, lo: u64, hi: Option<u64>) -> Result<(), String> {
        let tx = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = tx.open_table(LOGS).map_err(|e| e.to_string())?;
            let keys: Vec<u64> = match hi {
                Some(hi) => t.range(lo..hi),
                None => t.range(lo..),
            }
            .map_err(|e| e.to_string())?
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
            for k in keys {
                t.remove(k).map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    use std::ops::Bound::*;
    let lo = match range.start_bound() {
        Included(x) => *x,
        Excluded(x) => x + 1,
        Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Included(x) => Some(x + 1),
        Excluded(x) => Some(*x),
        Unbounded => None,
    };
    (lo, hi)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        let (lo, hi) = bounds(&range);
        self.read_range(lo, hi, usize::MAX)
            .map_err(logs_err(ErrorVerb::Read))
    }

    /// What replication sends in one `AppendEntries`: at most
    /// [`MAX_APPEND_BYTES`] of entries, or the first entry alone.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        self.read_range(start, Some(end), MAX_APPEND_BYTES)
            .map_err(logs_err(ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StErr> {
        let last_purged: Option<LogId<u64>> = self
            .get_meta(KEY_PURGED)
            .map_err(logs_err(ErrorVerb::Read))?;
        let last = {
            let tx = self
                .db
                .begin_read()
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let t = tx
                .open_table(LOGS)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let last = t
                .last()
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            match last {
                None => None,
                Some((_, v)) => {
                    let e: Entry<TypeConfig> = serde_json::from_slice(v.value())
                        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                    Some(e.log_id)
                }
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StErr> {
        self.put_meta(KEY_VOTE, vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StErr> {
        self.get_meta(KEY_VOTE)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StErr> {
        self.put_meta(KEY_COMMITTED, &committed)
            .map_err(logs_err(ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StErr> {
        Ok(self
            .get_meta::<Option<LogId<u64>>>(KEY_COMMITTED)
            .map_err(logs_err(ErrorVerb::Read))?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let res = (|| -> Result<(), String> {
            let tx = self.db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = tx.open_table(LOGS).map_err(|e| e.to_string())?;
                for e in entries {
                    let bytes = serde_json::to_vec(&e).map_err(|e| e.to_string())?;
                    t.insert(e.log_id.index, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            // `catalog-log-append`: a test slows this commit (and its
            // fsync) down or fails it.
            fail::fail_point!("catalog-log-append", |_| Err(
                "injected: fsync of the Raft log failed (EIO)".to_owned()
            ));
            // Durability::Immediate (the default): fsync before returning.
            tx.commit().map_err(|e| e.to_string())
        })();
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        self.remove_range(log_id.index, None)
            .map_err(logs_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StErr> {
        // Record the purge point first: a crash between the two steps leaves
        // extra entries below it, which are harmless.
        self.put_meta(KEY_PURGED, &log_id)
            .map_err(logs_err(ErrorVerb::Write))?;
        self.remove_range(0, Some(log_id.index + 1))
            .map_err(logs_err(ErrorVerb::Delete))
    }
}

/// What the state machine has applied, shared with readers.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    /// Last log id applied.
    pub last_applied: Option<LogId<u64>>,
    /// Last membership applied.
    pub membership: StoredMembership<u64, openraft::BasicNode>,
    /// The catalog.
    pub catalog: Catalog,
}

/// A snapshot as stored on disk.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    catalog: Catalog,
}

/// The catalog state machine: applies entries in memory, persists by snapshot.
pub struct StateMachine {
    shared: Arc<RwLock<AppliedState>>,
    dir: PathBuf,
    built: u64,
}

fn snap_err(e: impl std::fmt::Display) -> StErr {
    io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}

impl StateMachine {
    /// Open the state machine stored under `dir`, loading its last snapshot.
    pub fn open(dir: &Path) -> Result<Self, crate::CatalogError> {
        std::fs::create_dir_all(dir).map_err(|e| crate::CatalogError::Storage(e.to_string()))?;
        let sm = StateMachine {
            shared: Arc::new(RwLock::new(AppliedState::default())),
            dir: dir.to_owned(),
            built: 0,
        };
        match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes)?;
                *sm.shared.write() = AppliedState {
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                    catalog: file.catalog,
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::CatalogError::Storage(e.to_string())),
        }
        Ok(sm)
    }

    /// The applied state, for local (follower) reads.
    pub fn shared(&self) -> Arc<RwLock<AppliedState>> {
        self.shared.clone()
    }

    fn persist(
        &self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        catalog: &Catalog,
    ) -> std::io::Result<()> {
        write_snapshot_file(&self.dir, meta, catalog)
    }
}

fn write_snapshot_file(
    dir: &Path,
    meta: &SnapshotMeta<u64, openraft::BasicNode>,
    catalog: &Catalog,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(&SnapshotFile {
        meta: meta.clone(),
        catalog: catalog.clone(),
    })?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Builds snapshots from the applied state.
pub struct SnapshotBuilder {
    shared: Arc<RwLock<AppliedState>>,
    dir: PathBuf,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StErr> {
        let state = self.shared.read().clone();
        let snapshot_id = match state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        write_snapshot_file(&self.dir, &meta, &state.catalog).map_err(snap_err)?;
        let data = serde_json::to_vec(&state.catalog).map_err(snap_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        StErr,
    > {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.shared.write();
        let mut out = Vec::new();
        for e in entries {
            s.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Outcome(Ok(Applied::Done))),
                EntryPayload::Normal(cmd) => out.push(Outcome(
                    s.catalog.apply(cmd).map_err(|e| Rejection::from(&e)),
                )),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Outcome(Ok(Applied::Done)));
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        SnapshotBuilder {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
            seq: self.built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StErr> {
        let data = snapshot.into_inner();
        let catalog: Catalog = serde_json::from_slice(&data)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        self.persist(meta, &catalog).map_err(snap_err)?;
        *self.shared.write() = AppliedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            catalog,
        };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StErr> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes)
                    .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
                let data = serde_json::to_vec(&file.catalog).map_err(snap_err)?;
                Ok(Some(Snapshot {
                    meta: file.meta,
                    snapshot: Box::new(Cursor::new(data)),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
        }
    }
}
