//! Compaction of managed collections: deleted rows leave the files, the
//! caches and the catalog's tombstones, so an erasure request can be
//! honoured and a deleted id can be written again.
//!
//! Why it is shaped this way:
//! - **The swap is one catalog command.** The rewritten files and the files
//!   they replace change places in one [`Command::CompactManaged`], at the
//!   sequence the compaction read; a compaction that raced an ingest or
//!   another compaction is refused whole and deletes what it wrote.
//! - **Tombstones go after the rows.** They are retired only once the
//!   commit that dropped their rows applied (a tombstone left over hides
//!   nothing that exists; a tombstone retired early would bring a row
//!   back). Ingest refuses a tombstoned id, so an id whose tombstone a
//!   failed compaction left behind cannot be written until the next
//!   compaction retires it.
//! - **Old files go once the caches moved past them.** They are deleted
//!   after the new generation is loaded (this process's engine, or the
//!   shard nodes the collection's partitions are on) and re-persisted; if
//!   loading fails they are left to the sweeper, since no commit names
//!   them any more.
//! - **Writers of the collection wait.** Compaction holds the collection's
//!   writer lock (see `coordinator/writes.rs`), as ingest commits and
//!   deletes do, so no id check runs against files that are being retired.
//!
//! What a run picks ([`CompactPolicy`]): every file holding a deleted row,
//! and the small files when there are enough of them to merge. The rows
//! kept are written in files of [`crate::ingest::FILE_ROWS`]. A collection
//! over an external table is never rewritten: compacting it retires the
//! tombstones of rows the table itself dropped (`retire.rs`). A row's
//! payload columns travel with it into the new file, in their declared
//! types.

use crate::ingest::{declared_columns, payload_buffers, write_rows, FILE_ROWS};
use crate::{sync, Coordinator, CoordinatorError, Result};
use futures::TryStreamExt;
use rulake_catalog::{Command, SourceKind};
use rulake_lake::managed::Commits;
use rulake_lake::{ManagedSource, Source};
use rulake_types::{Column, ColumnType, Generation, VectorId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Which files a compaction rewrites, and when one runs on its own.
#[derive(Clone, Debug)]
pub struct CompactPolicy {
    /// A file of fewer rows is small; small files are merged when there
    /// are at least [`CompactPolicy::min_small_files`] of them.
    pub small_file_rows: u64,
    /// How many small files make a merge worth it.
    pub min_small_files: usize,
    /// Automatic runs: compact once tombstones are at least this share of
    /// the collection's rows ...
    pub auto_tombstone_ratio: f64,
    /// ... or once the collection has at least this many files.
    pub auto_max_files: usize,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            small_file_rows: (FILE_ROWS / 4) as u64,
            min_small_files: 8,
            auto_tombstone_ratio: 0.1,
            auto_max_files: 64,
        }
    }
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Files read.
    pub files_scanned: u64,
    /// Files replaced (and deleted once the caches moved past them).
    pub files_retired: u64,
    /// Files written.
    pub files_written: u64,
    /// Rows copied into the new files.
    pub rows_kept: u64,
    /// Deleted rows dropped.
    pub rows_dropped: u64,
    /// Tombstones retired from the catalog.
    pub tombstones_retired: u64,
    /// The generation the compaction committed (`None`: nothing to do).
    pub generation: Option<Generation>,
    /// Whether the retired files are already deleted (else the sweeper
    /// deletes them).
    pub retired_files_deleted: bool,
}

/// Rows being carried into new files, by id type (one file holds one).
struct Carry {
    ids: Vec<VectorId>,
    vectors: Vec<f32>,
    payload: Vec<Column>,
}

impl Carry {
    fn new(columns: &[(String, ColumnType)]) -> Self {
        Carry {
            ids: Vec::new(),
            vectors: Vec::new(),
            payload: payload_buffers(columns),
        }
    }
}

/// The rows of one file: ids, row-major vectors and payload columns.
struct FileRows {
    ids: Vec<VectorId>,
    vectors: Vec<f32>,
    payload: Vec<Column>,
}

/// Where a running compaction stands, for progress reports.
#[derive(Clone, Copy, Debug)]
pub struct CompactProgress {
    /// Files read so far, of `files_total`.
    pub files_scanned: u64,
    /// Files the source has.
    pub files_total: u64,
    /// Deleted rows found so far.
    pub rows_dropped: u64,
}

/// Where a compaction reports its progress.
pub type Progress = Arc<dyn Fn(CompactProgress) + Send + Sync>;

impl Coordinator {
    /// Compact managed collection `name` (an alias is resolved) now. The
    /// compaction runs in a task of its own, to its end even when the
    /// caller goes away (an end cut short loses nothing, but wastes the
    /// files written).
    pub async fn compact(
        &self,
        name: &str,
        policy: CompactPolicy,
        progress: Progress,
    ) -> Result<Compaction> {
        let (coord, name) = (self.clone(), name.to_owned());
        let task =
            tokio::spawn(async move { coord.compact_now(&name, &policy, progress.as_ref()).await });
        sync::joined(task.await)
    }

    async fn compact_now(
        &self,
        name: &str,
        policy: &CompactPolicy,
        progress: &(dyn Fn(CompactProgress) + Send + Sync),
    ) -> Result<Compaction> {
        let target = self.resolve(name)?;
        let (rec, src) = self.record_and_source(&target)?;
        let SourceKind::Managed { prefix } = &src.kind else {
            // Not ours to rewrite: its deleted rows go when its own table
            // drops them, and then their tombstones go too.
            return self.retire_dropped(&target).await;
        };
        let lock = self.writer_lock(&target);
        let _guard = lock.lock().await;
        let cat = self.catalog();
        let tombstones = cat.tombstones.get(&target).cloned().unwrap_or_default();
        let commits = sync::commits_of(&cat, &rec.source);
        let dim = rec.dim as usize;
        let writer = sync::managed_writer(prefix)?;
        let columns = declared_columns(&rec)?;
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        let tag = WriterTag::new(self);
        let mut out = Compaction::default();
        let (mut carry_n, mut carry_s) = (Carry::new(&columns), Carry::new(&columns));
        let mut retired = Vec::new();
        let mut written = Vec::new();
        let mut present: BTreeSet<String> = BTreeSet::new();
        let small = self.small_files(&writer, &commits, policy).await?;
        let total = commits.files.len() as u64;
        let run = async {
            for file in &commits.files {
                let mut rows = read_file(&writer, commits.seq, file, dim, &names).await?;
                out.files_scanned += 1;
                let dropped = rows
                    .ids
                    .iter()
                    .filter(|id| tombstones.contains(&id.to_key()))
                    .count() as u64;
                if dropped == 0 && !small.contains(file) {
                    present.extend(rows.ids.iter().map(VectorId::to_key));
                } else {
                    out.rows_dropped += dropped;
                    retired.push(file.clone());
                    for (i, id) in std::mem::take(&mut rows.ids).into_iter().enumerate() {
                        if tombstones.contains(&id.to_key()) {
                            continue;
                        }
                        present.insert(id.to_key());
                        let carry = match id {
                            VectorId::U64(_) => &mut carry_n,
                            VectorId::Str(_) => &mut carry_s,
                        };
                        carry.ids.push(id);
                        carry
                            .vectors
                            .extend_from_slice(&rows.vectors[i * dim..(i + 1) * dim]);
                        for (to, from) in carry.payload.iter_mut().zip(&mut rows.payload) {
                            to.values.push(std::mem::replace(
                                &mut from.values[i],
                                rulake_types::Value::Null,
                            ));
                        }
                        out.rows_kept += 1;
                        if carry.ids.len() >= FILE_ROWS {
                            flush(&writer, &tag.0, carry, dim, &columns, &mut written).await?;
                        }
                    }
                }
                progress(CompactProgress {
                    files_scanned: out.files_scanned,
                    files_total: total,
                    rows_dropped: out.rows_dropped,
                });
            }
            for carry in [&mut carry_n, &mut carry_s] {
                flush(&writer, &tag.0, carry, dim, &columns, &mut written).await?;
            }
            Ok::<_, CoordinatorError>(())
        };
        if let Err(e) = run.await {
            let _ = writer.delete_files(&written).await;
            return Err(e);
        }
        let stale: Vec<String> = tombstones
            .iter()
            .filter(|t| !present.contains(*t))
            .cloned()
            .collect();
        if !retired.is_empty() {
            let seq = commits.seq + 1;
            let cmd = Command::CompactManaged {
                source: rec.source.clone(),
                expected_seq: seq,
                retired: retired.clone(),
                files: written.clone(),
            };
            if let Err(e) = self.write(cmd).await {
                // A refusal or an unknown outcome: the new files are named
                // by no commit we know of, so the sweeper decides.
                if matches!(e, CoordinatorError::Catalog(ref c) if crate::ingest::definitely_refused(c))
                {
                    let _ = writer.delete_files(&written).await;
                }
                return Err(e);
            }
            out.files_retired = retired.len() as u64;
            out.files_written = written.len() as u64;
            out.generation = Some(rulake_lake::managed::generation(seq));
        }
        for ids in rulake_catalog::model::batches(stale) {
            if let rulake_catalog::Applied::Count { changed } = self
                .write(Command::RemoveTombstones {
                    collection: target.clone(),
                    ids,
                })
                .await?
            {
                out.tombstones_retired += changed;
            }
        }
        if out.generation.is_none() && out.tombstones_retired == 0 {
            return Ok(out);
        }
        self.sync().await?;
        match self.load_persisted(&target).await {
            Ok(()) => {
                writer.delete_files(&retired).await?;
                out.retired_files_deleted = true;
            }
            Err(e) => {
                tracing::warn!(collection = %target, error = %e, "compacted generation not loaded everywhere yet; the sweeper deletes the retired files");
            }
        }
        tracing::info!(collection = %target, ?out, "compacted");
        Ok(out)
    }

    /// Load `target`'s current generation wherever it is served and wait
    /// until it is persisted, so no cache holds the one before.
    pub(crate) async fn load_persisted(&self, target: &str) -> Result<()> {
        match &self.inner.remote {
            Some(r) => {
                r.refresh_persisted(&self.record(target)?).await?;
            }
            None => {
                self.inner.engine.refresh(target).await?;
                self.inner.engine.flush_persisted().await;
            }
        }
        Ok(())
    }

    /// The files of `commits` smaller than the policy's small size, when
    /// there are enough of them to merge (else none). Reads footers only.
    async fn small_files(
        &self,
        writer: &ManagedSource,
        commits: &Commits,
        policy: &CompactPolicy,
    ) -> Result<BTreeSet<String>> {
        writer.set_commits(commits.clone());
        let listing = writer.list_units().await?;
        let mut rows: std::collections::HashMap<&str, u64> = Default::default();
        for u in &listing.units {
            *rows.entry(u.object.as_str()).or_default() += u.rows;
        }
        let small: BTreeSet<String> = commits
            .files
            .iter()
            .filter(|f| {
                let n: u64 = rows
                    .iter()
                    .filter(|(o, _)| o.ends_with(f.as_str()))
                    .map(|(_, n)| n)
                    .sum();
                n < policy.small_file_rows
            })
            .cloned()
            .collect();
        Ok(if small.len() >= policy.min_small_files.max(2) {
            small
        } else {
            BTreeSet::new()
        })
    }

    /// Compact, every `every`, the managed collections the policy says
    /// are due, until the returned future is dropped. Two coordinators
    /// doing so at once are safe: one commit wins, the other is refused.
    pub async fn run_compactor(self, every: Duration, policy: CompactPolicy) {
        loop {
            tokio::time::sleep(every).await;
            for name in self.compaction_due(&policy) {
                let r = self.compact_now(&name, &policy, &|_| {}).await;
                if let Err(e) = r {
                    tracing::warn!(collection = %name, error = %e, "automatic compaction failed");
                }
            }
        }
    }

    /// Managed collections past the policy's automatic thresholds, and
    /// external ones holding tombstones (see `retire.rs`).
    fn compaction_due(&self, policy: &CompactPolicy) -> Vec<String> {
        let cat = self.catalog();
        cat.collections
            .values()
            .filter(|c| {
                let Some(src) = cat.sources.get(&c.source) else {
                    return false;
                };
                let dead = cat.tombstones.get(&c.name).map_or(0, |t| t.len()) as f64;
                if !matches!(src.kind, SourceKind::Managed { .. }) {
                    // Checked for tombstones its table's rows no longer need.
                    return dead > 0.0;
                }
                let files = sync::commits_of(&cat, &c.source).files.len();
                let rows = self
                    .info(&c.name)
                    .map_or(0, |i| i.source_rows.max(i.vectors_cached))
                    as f64;
                (dead > 0.0 && dead >= policy.auto_tombstone_ratio * rows.max(1.0))
                    || files >= policy.auto_max_files
            })
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Every row of committed file `file` (of commit `seq`): ids, row-major
/// vectors and the payload columns `names`.
async fn read_file(
    writer: &ManagedSource,
    seq: u64,
    file: &str,
    dim: usize,
    names: &[String],
) -> Result<FileRows> {
    writer.set_commits(Commits {
        seq,
        files: vec![file.to_owned()],
    });
    let listing = writer.list_units().await?;
    let mut rows = FileRows {
        ids: Vec::new(),
        vectors: Vec::new(),
        payload: rulake_types::Payload::new(names).columns,
    };
    for unit in &listing.units {
        let mut stream = writer.read_unit_columns(unit, dim, names);
        while let Some(batch) = stream.try_next().await? {
            rows.ids.extend(batch.ids);
            rows.vectors.extend(batch.vectors);
            for (to, from) in rows.payload.iter_mut().zip(batch.payload) {
                to.values.extend(from.values);
            }
        }
    }
    Ok(rows)
}

/// Write what `carry` holds as one new file (nothing when empty), its
/// payload in the declared `columns`' types.
async fn flush(
    writer: &ManagedSource,
    tag: &str,
    carry: &mut Carry,
    dim: usize,
    columns: &[(String, ColumnType)],
    written: &mut Vec<String>,
) -> Result<()> {
    if carry.ids.is_empty() {
        return Ok(());
    }
    let file = format!("{tag}-{:05}.parquet", written.len());
    // Named before writing: a failed write may still leave an object.
    written.push(file.clone());
    let ids = std::mem::take(&mut carry.ids);
    let vectors = std::mem::take(&mut carry.vectors);
    let payload = std::mem::replace(&mut carry.payload, payload_buffers(columns));
    write_rows(writer, &file, &ids, &vectors, dim, &payload).await
}

/// A writer's tag, registered with the sweeper while it lives (files
/// named after a running writer are never swept).
struct WriterTag(String, Coordinator);

impl WriterTag {
    fn new(coord: &Coordinator) -> Self {
        let tag = crate::coordinator::unique_suffix();
        coord.inner.ingests.lock().insert(tag.clone());
        WriterTag(tag, coord.clone())
    }
}

impl Drop for WriterTag {
    fn drop(&mut self) {
        self.1.inner.ingests.lock().remove(&self.0);
    }
}
