//! The write path: commit to the catalog, then wait to have applied it;
//! and deletes, the one write that is not a collection or alias change.
//!
//! A delete's tombstones are committed in as many commands as the
//! catalog's per-command bounds need (`rulake_catalog::model::batches`), so
//! no number of ids makes a command too large to replicate; an id longer
//! than the catalog keeps is refused before any is written.
//!
//! Why every write waits for this process to apply its own commit: the
//! engine is brought to the catalog from the applied view, and the next
//! read of the caller goes to that view too. Returning at commit time
//! would let a client create a collection and then be told it does not
//! exist. A follower coordinator waits on its poller; a meta member
//! watches its own applied index.
//!
//! Why writers of one collection are serialised (a lock per collection,
//! shared with managed ingest): deletes and ingest commits check ids
//! against the data before committing, and two such checks running
//! together could both pass.

use super::Coordinator;
use crate::{CoordinatorError, Result};
use rulake_catalog::Command;
use rulake_types::VectorId;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a write waits for this process to apply what the catalog
/// committed (a one-member group applies at once; a follower may trail).
pub(super) const APPLY_WAIT: Duration = Duration::from_secs(10);

impl Coordinator {
    /// Commit `cmd` and wait until this process has applied it.
    pub(crate) async fn write(&self, cmd: Command) -> Result<rulake_catalog::Applied> {
        let (index, applied) = self.inner.meta.write(&cmd).await?;
        self.await_applied(index, cmd.name()).await?;
        Ok(applied)
    }

    /// Wait until this process has applied log `index`, which the catalog
    /// has committed (`name`: the command's, for the message). An error
    /// here means "committed, not yet visible here", never "not written".
    pub(crate) async fn await_applied(&self, index: u64, name: &str) -> Result<()> {
        if let Some(f) = &self.inner.follower {
            if !f.catch_up(index, APPLY_WAIT).await {
                return Err(CoordinatorError::Unavailable(format!(
                    "{name} committed at index {index} but this coordinator's catalog view did not reach it within {APPLY_WAIT:?}"
                )));
            }
            return Ok(());
        }
        let start = Instant::now();
        while self.applied_index() < index {
            if start.elapsed() > APPLY_WAIT {
                return Err(CoordinatorError::Unavailable(format!(
                    "{name} committed at index {index} but not applied here within {APPLY_WAIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Bring this coordinator's catalog view up to everything the meta
    /// group committed before this call, before checking which ids a
    /// collection holds: a coordinator that follows the catalog may trail
    /// it (its member was cut off, a commit came through another
    /// coordinator), and an ingest acknowledged elsewhere must count. A
    /// linearizable read that answers "unchanged" when the view already
    /// holds it, then a wait for the view. A single-process node applies
    /// the catalog itself and never trails it.
    pub(crate) async fn catch_up(&self, name: &str) -> Result<()> {
        if self.inner.follower.is_none() {
            return Ok(());
        }
        let have = self.applied_index();
        if let Some(read) = self
            .inner
            .meta
            .read_newer(0, rulake_catalog::ReadConsistency::Linearizable, have)
            .await?
        {
            self.await_applied(read.applied_index, name).await?;
        }
        Ok(())
    }

    /// The lock every writer of `collection` holds while it checks ids and
    /// commits.
    pub(crate) fn writer_lock(&self, collection: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .writers
            .lock()
            .entry(collection.to_owned())
            .or_default()
            .clone()
    }

    /// Delete ids from a collection: committed as catalog tombstones, so
    /// they hold across restarts and generations, and skipped from the
    /// next query on. Ids the collection does not hold are ignored; the
    /// count of ids newly deleted is returned.
    pub async fn delete(&self, name: &str, ids: Vec<VectorId>) -> Result<u64> {
        let target = self.resolve(name)?;
        if ids.is_empty() {
            return Ok(0);
        }
        for id in &ids {
            crate::ingest::check_id_len(id)?;
        }
        let lock = self.writer_lock(&target);
        let _guard = lock.lock().await;
        // Ids ingested through any coordinator before this call count.
        self.catch_up("delete").await?;
        let wanted: HashSet<VectorId> = ids.into_iter().collect();
        let present = self.existing_ids(&target, &wanted).await?;
        let mut added = 0;
        let keys = present.iter().map(VectorId::to_key).collect();
        for ids in rulake_catalog::model::batches(keys) {
            let applied = self
                .write(Command::AddTombstones {
                    collection: target.clone(),
                    ids,
                })
                .await?;
            if let rulake_catalog::Applied::Count { changed } = applied {
                added += changed;
            }
        }
        self.sync().await?;
        Ok(added)
    }
}
