//! Managed ingest: rows stream in, immutable Parquet files go out under
//! the collection's prefix, and one catalog commit makes all of them
//! visible as the next generation. Until that commit nothing is visible;
//! an ingest that fails, is aborted or is dropped midway (a cancelled
//! client stream) deletes the files it wrote, and even a crash leaves
//! only files no commit names, which no query ever reads.
//!
//! Ids are unique in a managed collection: an ingest that repeats an id of
//! its own, or one the collection already holds (deleted ones included,
//! since their rows are still in the files), is refused whole.
//!
//! [`Coordinator::ingest`], which starts one, is defined here beside the
//! type it returns: what makes a collection ingestible (a managed source)
//! is this module's rule, not the coordinator's.

use crate::{sync, Coordinator, CoordinatorError, Result};
use rulake_catalog::{Command, SourceKind};
use rulake_lake::{IdsRef, ManagedSource};
use rulake_types::{Generation, VectorId};
use std::collections::HashSet;

/// Rows per file an ingest writes.
pub const FILE_ROWS: usize = 100_000;

impl Coordinator {
    /// Start an ingest into a managed collection (see [`crate::ingest`]).
    pub fn ingest(&self, name: &str) -> Result<Ingest> {
        let target = self.resolve(name)?;
        let (record, source) = {
            let view = self.inner.view.read();
            let record = view.catalog.collections[&target].clone();
            let source = view.catalog.sources.get(&record.source).cloned();
            (record, source)
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
        Ok(Ingest::new(
            self.clone(),
            target,
            record.source,
            record.dim as usize,
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
    writer: ManagedSource,
    tag: String,
    ids: Vec<VectorId>,
    vectors: Vec<f32>,
    seen: HashSet<VectorId>,
    string_ids: Option<bool>,
    files: Vec<String>,
    records: u64,
    finished: bool,
}

impl Ingest {
    fn new(
        coord: Coordinator,
        collection: String,
        source: String,
        dim: usize,
        writer: ManagedSource,
    ) -> Self {
        Ingest {
            coord,
            collection,
            source,
            dim,
            writer,
            tag: crate::coordinator::unique_suffix(),
            ids: Vec::new(),
            vectors: Vec::new(),
            seen: HashSet::new(),
            string_ids: None,
            files: Vec::new(),
            records: 0,
            finished: false,
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

    /// Add one record. Checked at once (dimension, finite values, one id
    /// type per ingest, no id twice); rows are written in files of
    /// [`FILE_ROWS`] as they accumulate.
    pub async fn add(&mut self, id: VectorId, vector: &[f32]) -> Result<()> {
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
        if self.string_ids == Some(true) {
            let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            self.writer
                .write_file(&file, IdsRef::Str(&s), &vectors, self.dim)
                .await?;
        } else {
            let n: Vec<u64> = ids
                .iter()
                .map(|i| match i {
                    VectorId::U64(v) => *v,
                    VectorId::Str(_) => unreachable!("one id type per ingest"),
                })
                .collect();
            self.writer
                .write_file(&file, IdsRef::U64(&n), &vectors, self.dim)
                .await?;
        }
        Ok(())
    }

    /// Write what is buffered, check the ids against the collection, and
    /// commit every file as one new generation, which is loaded before
    /// this returns. On any error nothing is visible and the files are gone.
    pub async fn commit(mut self) -> Result<(u64, Generation)> {
        let result = self.commit_inner().await;
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
        let taken = self
            .coord
            .existing_ids(&self.collection, &self.seen)
            .await?;
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
        self.coord
            .write(Command::CommitManaged {
                source: self.source.clone(),
                expected_seq: Some(seq),
                files: self.files.clone(),
            })
            .await?;
        // Committed: from here on the files belong to the collection, and
        // the ingest has succeeded whatever loading them does next (a load
        // that fails is the collection's state, reported by describe and
        // by the next search, not this ingest's outcome).
        self.files.clear();
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
        if self.finished || self.files.is_empty() {
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
