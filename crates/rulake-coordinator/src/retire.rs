//! Tombstones of external collections: retired once the table itself has
//! dropped their rows.
//!
//! A delete on a collection over someone else's table (Parquet, Delta,
//! Iceberg) can only hide rows: RuLake never rewrites the user's lake. The
//! table's owner drops them later (a Delta `DELETE`, a rewritten file), and
//! from then on the tombstone hides nothing; left alone, tombstones would
//! pile up in the Raft catalog and keep the ids from coming back if the
//! owner writes them again.
//!
//! Why it is safe: every server first moves to the source's newest
//! generation and persists it ([`Coordinator::load_persisted`], the step a
//! managed compaction uses), and only the ids that generation no longer
//! holds anywhere are retired. A server still on an older generation (which
//! could hold the row) does not exist by then, and no server goes back to
//! one: generations only move forward, and a restart loads the persisted
//! newest one. A collection pinned to a table version keeps the tombstones
//! of rows that version holds.
//!
//! Runs under the collection's writer lock, like deletes, so a delete that
//! just found its row present is not undone by a check that ran before it.

use crate::compact::Compaction;
use crate::{Coordinator, Result};
use rulake_catalog::Command;
use rulake_types::VectorId;
use std::collections::HashSet;

impl Coordinator {
    /// Retire the tombstones of `target` (an external collection) whose
    /// rows its source's newest generation no longer holds.
    pub(crate) async fn retire_dropped(&self, target: &str) -> Result<Compaction> {
        let lock = self.writer_lock(target);
        let _guard = lock.lock().await;
        let keys: Vec<String> = self
            .catalog()
            .tombstones
            .get(target)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Compaction::default();
        if keys.is_empty() {
            return Ok(out);
        }
        self.load_persisted(target).await?;
        let dead: HashSet<VectorId> = keys.iter().filter_map(|k| VectorId::from_key(k)).collect();
        let present: HashSet<String> = self
            .existing_ids(target, &dead)
            .await?
            .iter()
            .map(VectorId::to_key)
            .collect();
        let gone: Vec<String> = keys.into_iter().filter(|k| !present.contains(k)).collect();
        for ids in rulake_catalog::model::batches(gone) {
            if let rulake_catalog::Applied::Count { changed } = self
                .write(Command::RemoveTombstones {
                    collection: target.to_owned(),
                    ids,
                })
                .await?
            {
                out.tombstones_retired += changed;
            }
        }
        if out.tombstones_retired > 0 {
            self.sync().await?;
            tracing::info!(
                collection = %target,
                retired = out.tombstones_retired,
                "tombstones retired: their rows are gone from the source"
            );
        }
        Ok(out)
    }
}
