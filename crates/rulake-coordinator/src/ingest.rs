//! Managed ingest: rows stream in, immutable Parquet files go out under
//! the collection's prefix, and one catalog commit makes all of them
//! visible as the next generation. Until that commit nothing is visible;
//! an ingest that fails, is aborted or is dropped midway (a cancelled
//! client stream) deletes the files it wrote, and even a crash leaves
//! only files no commit names, which no query ever reads (and which the
//! sweeper, `crate::sweep`, deletes once they are old enough).
//!
//! Why files are deleted only after a definite refusal: once the commit
//! command has been sent, a timeout or an unreachable catalog does not say
//! whether it applied, and deleting files a commit names would lose
//! committed data. Such an outcome is resolved by reading the catalog
//! (does a commit name these files? has the source moved past the
//! sequence this commit expected, so it can never apply?); when it cannot
//! be, the files are left to the sweeper and the client is told the
//! outcome is unknown ([`CoordinatorError::OutcomeUnknown`]).
//!
//! Ids are unique in a managed collection: an ingest that repeats an id of
//! its own, or one the collection already holds (deleted ones included,
//! until a compaction has dropped their rows and retired their tombstones,
//! see [`crate::compact`]), is refused whole.
//!
//! A managed collection's payload columns are declared with their types
//! (`year:int`, [`rulake_types::declare`]); each record's values are
//! checked against them as the record arrives (an undeclared column, or
//! a value of another type, refuses the ingest whole, naming the column),
//! and every file holds every declared column, null where a record left
//! one out.
//!
//! A string id is at most [`MAX_ID_LEN`] bytes: deleting an id commits a
//! tombstone naming it, and the catalog refuses longer ones, so an id that
//! could be written but not deleted is refused here, when it is written.
//!
//! [`Coordinator::ingest`], which starts one, is defined here beside the
//! type it returns: what makes a collection ingestible (a managed source)
//! is this module's rule, not the coordinator's.

use crate::{sync, Coordinator, CoordinatorError, Result};
use rulake_catalog::model::MAX_ID_LEN;
use rulake_catalog::{CatalogError, Command, ReadConsistency, SourceKind};
use rulake_lake::{IdsRef, ManagedSource};
use rulake_types::{Column, ColumnType, Generation, Value, VectorId};
use std::collections::{BTreeMap, HashSet};

/// Rows per file an ingest writes.
pub const FILE_ROWS: usize = 100_000;

/// A string id is at most [`MAX_ID_LEN`] bytes (INVALID_ARGUMENT naming
/// the limit; the id itself is not echoed).
pub(crate) fn check_id_len(id: &VectorId) -> Result<()> {
    match id {
        VectorId::Str(s) if s.len() > MAX_ID_LEN => {
            Err(CoordinatorError::InvalidArgument(format!(
                "a string id of {} bytes; ids are at most {MAX_ID_LEN} bytes",
                s.len()
            )))
        }
        _ => Ok(()),
    }
}

impl Coordinator {
    /// Start an ingest into a managed collection (see [`crate::ingest`]).
    pub fn ingest(&self, name: &str) -> Result<Ingest> {
        let (target, record, source) = {
            let view = self.inner.view.read();
            let target = crate::coordinator::aliases::resolve_in(&view.catalog, name)?;
            let record = crate::coordinator::collections::target_record(&view.catalog, &target)?;
            let source = view.catalog.sources.get(&record.source).cloned();
            (target, record, source)
        };
        let prefix = match source.map(|s| s.kind) {
            Some(SourceKind::Managed { prefix }) => prefix,
            _ => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "collection {target:?} reads an external source; ingest writes only to managed collections (its lake is written by its own tools)"
                )))
            }
        };
        let writer = sync::managed_writer(&prefix)?;
        let columns = declared_columns(&record)?;
        Ok(Ingest::new(
            self.clone(),
            target,
            record.source,
            record.dim as usize,
            columns,
            writer,
        ))
    }
}

/// One ingest into a managed collection, from [`Coordinator::ingest`].
pub struct Ingest {
    coord: Coordinator,
    collection: String,
    source: String,
    dim: usize,
    /// The declared payload columns, in order.
    columns: Vec<(String, ColumnType)>,
    writer: ManagedSource,
    pub(crate) tag: String,
    ids: Vec<VectorId>,
    vectors: Vec<f32>,
    /// Buffered values of `columns`, one per buffered row each.
    payload: Vec<Column>,
    seen: HashSet<VectorId>,
    string_ids: Option<bool>,
    files: Vec<String>,
    records: u64,
    finished: bool,
    /// The commit command was sent: from here on, files are deleted only
    /// after the catalog definitely refused it.
    sent: bool,
}

/// Whether a failed catalog write definitely did not apply (the catalog
/// refused the command, or it was refused before being sent). Anything
/// else (unavailable, timed out, transport, a reply that could not be
/// decoded) may have applied.
pub(crate) fn definitely_refused(e: &CatalogError) -> bool {
    matches!(
        e,
        CatalogError::Rejected(_) | CatalogError::Refused(_) | CatalogError::InvalidArgument(_)
    )
}

/// A column name a client sent, as an error shows it: quoted, and cut at
/// 64 characters (a name is the client's text, of any length; an error
/// names it without echoing all of it back).
pub fn shown_column(name: &str) -> String {
    if name.chars().count() <= 64 {
        format!("{name:?}")
    } else {
        let cut: String = name.chars().take(64).collect();
        format!("{cut:?}…")
    }
}

/// A managed collection's payload columns with their declared types, in
/// order (every one has a type: [`Coordinator::create_collection`] refuses
/// a managed column without one).
pub(crate) fn declared_columns(
    record: &rulake_catalog::CollectionRecord,
) -> Result<Vec<(String, ColumnType)>> {
    record
        .payload_columns
        .iter()
        .map(|text| {
            let d = rulake_types::declared(text);
            let ty = d.ty.ok_or_else(|| {
                CoordinatorError::FailedPrecondition(format!(
                    "payload column {text:?} of collection {:?} has no declared type",
                    record.name
                ))
            })?;
            Ok((d.name, ty))
        })
        .collect()
}

/// Empty buffers for the declared payload `columns`.
pub(crate) fn payload_buffers(columns: &[(String, ColumnType)]) -> Vec<Column> {
    columns
        .iter()
        .map(|(name, ty)| Column {
            name: name.clone(),
            ty: Some(*ty),
            values: Vec::new(),
        })
        .collect()
}

/// Write `ids` (all of one id type), their row-major `vectors` and their
/// `payload` columns as one new, not yet visible file of `writer`'s prefix.
pub(crate) async fn write_rows(
    writer: &ManagedSource,
    file: &str,
    ids: &[VectorId],
    vectors: &[f32],
    dim: usize,
    payload: &[Column],
) -> Result<()> {
    if ids.iter().all(|i| matches!(i, VectorId::U64(_))) {
        let n: Vec<u64> = ids
            .iter()
            .filter_map(|i| match i {
                VectorId::U64(v) => Some(*v),
                VectorId::Str(_) => None,
            })
            .collect();
        writer
            .write_file(file, IdsRef::U64(&n), vectors, dim, payload)
            .await?;
    } else if ids.iter().all(|i| matches!(i, VectorId::Str(_))) {
        let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        writer
            .write_file(file, IdsRef::Str(&s), vectors, dim, payload)
            .await?;
    } else {
        return Err(CoordinatorError::InvalidArgument(
            "one file holds integer or string ids, not both".into(),
        ));
    }
    Ok(())
}

/// How a commit whose outcome the write did not report was resolved.
enum Resolved {
    /// A commit of this sequence names the files.
    Committed(u64),
    /// The source moved past the expected sequence without these files
    /// (or is gone): the command can never apply.
    NotCommitted,
    /// The catalog could not tell (yet).
    Unknown(String),
}

impl Ingest {
    fn new(
        coord: Coordinator,
        collection: String,
        source: String,
        dim: usize,
        columns: Vec<(String, ColumnType)>,
        writer: ManagedSource,
    ) -> Self {
        let tag = crate::coordinator::unique_suffix();
        coord.inner.ingests.lock().insert(tag.clone());
        Ingest {
            coord,
            collection,
            source,
            dim,
            payload: payload_buffers(&columns),
            columns,
            writer,
            tag,
            ids: Vec::new(),
            vectors: Vec::new(),
            seen: HashSet::new(),
            string_ids: None,
            files: Vec::new(),
            records: 0,
            finished: false,
            sent: false,
        }
    }

    /// The collection being written.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Records accepted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Add one record without payload values (its columns are null).
    pub async fn add(&mut self, id: VectorId, vector: &[f32]) -> Result<()> {
        self.add_row(id, vector, BTreeMap::new()).await
    }

    /// Add one record and its payload `values` by column name. Checked at
    /// once (id length, dimension, finite values, one id type per ingest,
    /// no id twice, only declared columns, each value of its column's
    /// type); rows are written in files of [`FILE_ROWS`] as they
    /// accumulate.
    pub async fn add_row(
        &mut self,
        id: VectorId,
        vector: &[f32],
        mut values: BTreeMap<String, Value>,
    ) -> Result<()> {
        check_id_len(&id)?;
        if let Some(extra) = values
            .keys()
            .find(|k| !self.columns.iter().any(|(n, _)| n == *k))
        {
            return Err(CoordinatorError::InvalidArgument(format!(
                "record {id}: {} is not a payload column of collection {:?} (its columns: {})",
                shown_column(extra),
                self.collection,
                if self.columns.is_empty() {
                    "none".to_owned()
                } else {
                    self.columns
                        .iter()
                        .map(|(n, t)| format!("{n}:{t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        let mut row = Vec::with_capacity(self.columns.len());
        for (name, ty) in &self.columns {
            let v = values.remove(name).unwrap_or(Value::Null);
            row.push(v.coerce(*ty).map_err(|why| {
                CoordinatorError::InvalidArgument(format!("record {id}: column {name:?}: {why}"))
            })?);
        }
        if vector.len() != self.dim {
            return Err(CoordinatorError::InvalidArgument(format!(
                "record {id}: {} values, collection {:?} has dimension {}",
                vector.len(),
                self.collection,
                self.dim
            )));
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(CoordinatorError::InvalidArgument(format!(
                "record {id}: component {i} is not a finite number"
            )));
        }
        let is_str = matches!(id, VectorId::Str(_));
        match self.string_ids {
            None => self.string_ids = Some(is_str),
            Some(s) if s != is_str => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "record {id}: one ingest carries integer or string ids, not both"
                )))
            }
            Some(_) => {}
        }
        if !self.seen.insert(id.clone()) {
            return Err(CoordinatorError::AlreadyExists(format!(
                "id {id} appears twice in this ingest"
            )));
        }
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        for (c, v) in self.payload.iter_mut().zip(row) {
            c.values.push(v);
        }
        self.records += 1;
        if self.ids.len() >= FILE_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let file = format!("{}-{:05}.parquet", self.tag, self.files.len());
        // Named before writing: a failed write may still leave an object.
        self.files.push(file.clone());
        let ids = std::mem::take(&mut self.ids);
        let vectors = std::mem::take(&mut self.vectors);
        let payload = std::mem::replace(&mut self.payload, payload_buffers(&self.columns));
        write_rows(&self.writer, &file, &ids, &vectors, self.dim, &payload).await
    }

    /// Write what is buffered, check the ids against the collection, and
    /// commit every file as one new generation, which is loaded before
    /// this returns. On an error before the commit, or a commit the catalog
    /// refused, nothing is visible and the files are gone; a commit whose
    /// outcome is unknown keeps its files ([`CoordinatorError::OutcomeUnknown`]).
    pub async fn commit(mut self) -> Result<(u64, Generation)> {
        let result = self.commit_inner().await;
        // Files still held were definitely not committed (a committed or
        // undecided commit hands its files over by clearing the list).
        if result.is_err() {
            self.cleanup().await;
        }
        self.finished = true;
        result
    }

    async fn commit_inner(&mut self) -> Result<(u64, Generation)> {
        if self.records == 0 {
            let g = self.coord.refresh_target(&self.collection).await?;
            return Ok((0, g));
        }
        self.flush().await?;
        let lock = self.coord.writer_lock(&self.collection);
        let _guard = lock.lock().await;
        // Ids committed through any coordinator before this call count.
        self.coord.catch_up("ingest").await?;
        let mut taken = self
            .coord
            .existing_ids(&self.collection, &self.seen)
            .await?;
        // A deleted id whose row a compaction dropped but whose tombstone
        // it has not retired yet: written now, the tombstone would hide it.
        if let Some(dead) = self.coord.catalog().tombstones.get(&self.collection) {
            let known: HashSet<VectorId> = taken.iter().cloned().collect();
            taken.extend(
                self.seen
                    .iter()
                    .filter(|i| !known.contains(*i) && dead.contains(&i.to_key()))
                    .cloned(),
            );
        }
        if !taken.is_empty() {
            let shown: Vec<String> = taken.iter().take(5).map(|i| i.to_string()).collect();
            return Err(CoordinatorError::AlreadyExists(format!(
                "collection {:?} already holds {} of these ids ({}{}); ids of a managed collection are never overwritten or reused",
                self.collection,
                taken.len(),
                shown.join(", "),
                if taken.len() > 5 { ", ..." } else { "" }
            )));
        }
        let seq = self.coord.catalog().managed_seq(&self.source) + 1;
        let cmd = Command::CommitManaged {
            source: self.source.clone(),
            expected_seq: Some(seq),
            files: self.files.clone(),
        };
        self.sent = true;
        let seq = match self.coord.inner.meta.write(&cmd).await {
            Ok((index, _)) => {
                // Committed: from here on the files belong to the
                // collection, and the ingest has succeeded whatever
                // applying and loading them here does next (a view that
                // trails, or a load that fails, is the collection's state,
                // reported by describe and by the next search, not this
                // ingest's outcome).
                self.files.clear();
                if let Err(e) = self.coord.await_applied(index, cmd.name()).await {
                    tracing::warn!(collection = %self.collection, error = %e, "committed ingest not applied here yet");
                }
                seq
            }
            Err(e) if definitely_refused(&e) => return Err(e.into()),
            Err(e) => match self.resolve(seq).await {
                Resolved::Committed(seq) => {
                    self.files.clear();
                    seq
                }
                Resolved::NotCommitted => return Err(e.into()),
                Resolved::Unknown(why) => {
                    // Not ours to delete any more: a commit may name them.
                    let kept = std::mem::take(&mut self.files);
                    tracing::warn!(collection = %self.collection, files = kept.len(), error = %e, "ingest commit outcome unknown; its files are kept for the sweeper");
                    return Err(CoordinatorError::OutcomeUnknown(format!(
                        "the commit of {} records to collection {:?} may or may not have applied ({e}; reading the catalog back: {why}); its files are kept. Read the collection's generation before retrying: a retry of ids that were committed is refused with ALREADY_EXISTS",
                        self.records, self.collection
                    )));
                }
            },
        };
        let load = async {
            self.coord.sync().await?;
            self.coord.refresh_target(&self.collection).await?;
            Ok::<_, CoordinatorError>(())
        };
        if let Err(e) = load.await {
            tracing::warn!(collection = %self.collection, error = %e, "committed ingest not loaded yet");
        }
        Ok((self.records, rulake_lake::managed::generation(seq)))
    }

    /// Read the catalog to learn what became of a commit of `self.files`
    /// that expected sequence `seq`.
    async fn resolve(&self, seq: u64) -> Resolved {
        let read = match self
            .coord
            .inner
            .meta
            .read(ReadConsistency::Linearizable)
            .await
        {
            Ok(r) => r,
            Err(e) => return Resolved::Unknown(e.to_string()),
        };
        let Some(commits) = read.catalog.managed.get(&self.source) else {
            return Resolved::NotCommitted;
        };
        if let Some(c) = commits.iter().find(|c| c.files == self.files) {
            return Resolved::Committed(c.seq);
        }
        if read.catalog.managed_seq(&self.source) >= seq {
            return Resolved::NotCommitted;
        }
        Resolved::Unknown(format!(
            "sequence {seq} not committed yet, and the command may still commit"
        ))
    }

    /// Give up: delete what was written. Nothing was visible.
    pub async fn abort(mut self) {
        self.cleanup().await;
        self.finished = true;
    }

    async fn cleanup(&mut self) {
        let files = std::mem::take(&mut self.files);
        if let Err(e) = self.writer.delete_files(&files).await {
            tracing::warn!(collection = %self.collection, error = %e, "could not delete files of an abandoned ingest");
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.coord.inner.ingests.lock().remove(&self.tag);
        if self.finished || self.files.is_empty() {
            return;
        }
        if self.sent {
            // Dropped while its commit was in flight: the outcome is
            // unknown, so the files stay (the sweeper deletes them if no
            // commit names them).
            tracing::warn!(collection = %self.collection, files = self.files.len(), "ingest dropped during its commit; its files are kept for the sweeper");
            return;
        }
        // Dropped midway (the client went away): clean up off this thread.
        let files = std::mem::take(&mut self.files);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let prefix = self.writer.describe_prefix();
        let collection = self.collection.clone();
        rt.spawn(async move {
            let r = match ManagedSource::open(&prefix, &[]) {
                Ok(w) => w.delete_files(&files).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!(%collection, error = %e, "could not delete files of a cancelled ingest");
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::{CollectionDef, CoordinatorError, Embedded, EmbeddedConfig};
    use rulake_catalog::model::MAX_ID_LEN;
    use rulake_catalog::{CollectionRecord, SourceKind};
    use rulake_types::VectorId;

    fn id(len: usize) -> VectorId {
        VectorId::Str("i".repeat(len))
    }

    /// A single-process node over `dir` holding the empty managed
    /// collection `m` of dimension 2, and its coordinator.
    pub(crate) async fn managed_collection(
        dir: &std::path::Path,
    ) -> (Embedded, crate::Coordinator) {
        let node = Embedded::start(EmbeddedConfig::new(dir))
            .await
            .expect("start");
        let coord = node.coordinator.clone();
        coord
            .create_collection(CollectionDef {
                record: CollectionRecord::new("m", "", 2),
                source: SourceKind::Managed {
                    prefix: String::new(),
                },
                options: Default::default(),
            })
            .await
            .expect("create");
        (node, coord)
    }

    fn invalid(r: crate::Result<impl std::fmt::Debug>) {
        match r {
            Err(CoordinatorError::InvalidArgument(m)) => {
                assert!(m.contains(&MAX_ID_LEN.to_string()), "names the limit: {m}");
                assert!(m.len() < 200, "does not echo the id: {m}");
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    /// An id of exactly the limit is written and deleted; one byte more is
    /// refused at ingest and at delete, before anything is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_at_the_limit_ingest_and_delete_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (node, coord) = managed_collection(dir.path()).await;

        let mut ing = coord.ingest("m").expect("ingest");
        invalid(ing.add(id(MAX_ID_LEN + 1), &[0.0, 1.0]).await);
        ing.add(id(MAX_ID_LEN), &[0.0, 1.0])
            .await
            .expect("at the limit");
        ing.add(id(1), &[1.0, 0.0]).await.expect("short");
        let (records, _) = ing.commit().await.expect("commit");
        assert_eq!(records, 2, "the refused record was not written");

        invalid(coord.delete("m", vec![id(MAX_ID_LEN + 1)]).await);
        invalid(coord.delete("m", vec![id(1), id(5 << 20)]).await);
        assert_eq!(coord.catalog().tombstones.get("m"), None, "nothing deleted");
        let deleted = coord
            .delete("m", vec![id(MAX_ID_LEN), id(1)])
            .await
            .expect("delete at the limit");
        assert_eq!(deleted, 2);
        assert_eq!(coord.catalog().tombstones["m"].len(), 2);
        node.shutdown().await;
    }

    /// Every file under `dir`, recursively.
    pub(crate) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return out;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// A commit whose outcome is unknown (the catalog cannot be reached
    /// once the command is sent, nor read back) keeps its files, since a
    /// commit may name them, and says the outcome is unknown
    /// (UNAVAILABLE) rather than that the ingest failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_of_unknown_outcome_keeps_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (node, coord) = managed_collection(dir.path()).await;
        let mut ing = coord.ingest("m").expect("ingest");
        ing.add(VectorId::U64(1), &[0.0, 1.0]).await.expect("add");
        ing.add(VectorId::U64(2), &[1.0, 0.0]).await.expect("add");
        // The catalog stops: the commit cannot learn whether it applied.
        node.meta.raft().shutdown().await.expect("raft shutdown");
        let err = ing.commit().await.expect_err("no catalog to commit to");
        assert!(
            matches!(err, CoordinatorError::OutcomeUnknown(_)),
            "expected an unknown outcome, got {err:?}"
        );
        let status = tonic::Status::from(&err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("outcome unknown"), "{status:?}");
        let files = files_under(&dir.path().join("managed"));
        assert!(
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "parquet")),
            "the files of a commit that may have applied were deleted: {files:?}"
        );
        node.shutdown().await;
    }
}
