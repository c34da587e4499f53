//! The managed-file sweeper: deletes the files of ingests that never
//! committed (the process crashed before its commit, or the commit's
//! outcome was unknown and it never applied).
//!
//! Why a grace period rather than "no commit names it": an ingest writes
//! its files before the commit that names them, possibly on another
//! coordinator, so a file no commit names may belong to an ingest still
//! running. Files are deleted only once they are older than the grace
//! period ([`rulake_lake::managed::DEFAULT_SWEEP_GRACE`] unless told
//! otherwise), which must exceed the longest ingest; the ingests running
//! in this process are never swept, whatever their age. The decision
//! itself is the pure [`rulake_lake::managed::files_to_sweep`]; this module
//! only gathers its inputs: the listing, and the names every commit in a
//! linearizable read of the catalog holds (a stale view could miss a
//! commit that just named a file).

use crate::{sync, Coordinator, Result};
use rulake_catalog::{ReadConsistency, SourceKind};
use rulake_lake::managed::files_to_sweep;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

impl Coordinator {
    /// Delete, under every managed source's prefix, the files no commit
    /// names that are older than `grace`; returns the number deleted. A
    /// prefix that cannot be listed or cleaned is logged and skipped.
    pub async fn sweep_managed(&self, grace: Duration) -> Result<usize> {
        let cat = self
            .inner
            .meta
            .read(ReadConsistency::Linearizable)
            .await?
            .catalog;
        let now = SystemTime::now();
        let mut deleted = 0;
        for (name, src) in &cat.sources {
            let SourceKind::Managed { prefix } = &src.kind else {
                continue;
            };
            let mut named: HashSet<String> = cat
                .managed
                .get(name)
                .map(|cs| cs.iter().flat_map(|c| c.files.iter().cloned()).collect())
                .unwrap_or_default();
            let r = async {
                let writer = sync::managed_writer(prefix)?;
                let listed = writer.list_files().await?;
                let running = self.inner.ingests.lock().clone();
                named.extend(
                    listed
                        .iter()
                        .filter(|f| running.iter().any(|t| f.name.starts_with(&format!("{t}-"))))
                        .map(|f| f.name.clone()),
                );
                let doomed = files_to_sweep(&listed, &named, now, grace);
                writer.delete_files(&doomed).await?;
                Ok::<_, crate::CoordinatorError>(doomed)
            };
            match r.await {
                Ok(doomed) => {
                    if !doomed.is_empty() {
                        tracing::info!(source = %name, files = ?doomed, "swept files no commit names");
                    }
                    deleted += doomed.len();
                }
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "could not sweep a managed prefix")
                }
            }
        }
        Ok(deleted)
    }

    /// Sweep every `every` (see [`Coordinator::sweep_managed`]) until the
    /// returned future is dropped.
    pub async fn run_sweeper(self, every: Duration, grace: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.sweep_managed(grace).await {
                tracing::warn!(error = %e, "managed sweep failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ingest::tests::{files_under, managed_collection};
    use rulake_types::VectorId;
    use std::time::{Duration, SystemTime};

    /// A file an ingest wrote but never committed (it crashed), once older
    /// than the grace period, is deleted by the sweep; committed files,
    /// young leftovers and the files of an ingest still running stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_deletes_old_files_no_commit_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (node, coord) = managed_collection(dir.path()).await;
        let mut ing = coord.ingest("m").expect("ingest");
        ing.add(VectorId::U64(1), &[0.0, 1.0]).await.expect("add");
        ing.commit().await.expect("commit");
        let committed = files_under(&dir.path().join("managed"));
        assert_eq!(committed.len(), 1, "{committed:?}");
        let prefix = committed[0].parent().expect("prefix").to_path_buf();

        // Leftovers of a crashed ingest: one old, one young.
        let hour = Duration::from_secs(3600);
        let old = prefix.join("0123-00000.parquet");
        let young = prefix.join("4567-00000.parquet");
        for f in [&old, &young] {
            std::fs::copy(&committed[0], f).expect("copy");
        }
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(SystemTime::now() - 2 * hour))
            .expect("age the leftover");
        // An ingest still running in this process, with an old file.
        let running = coord.ingest("m").expect("ingest");
        let running_file = prefix.join(format!("{}-00000.parquet", running.tag));
        std::fs::copy(&old, &running_file).expect("copy");
        std::fs::File::options()
            .write(true)
            .open(&running_file)
            .and_then(|f| f.set_modified(SystemTime::now() - 2 * hour))
            .expect("age the running ingest's file");

        let deleted = coord.sweep_managed(hour).await.expect("sweep");
        assert_eq!(deleted, 1);
        assert!(!old.exists(), "an old file no commit names was kept");
        assert!(young.exists(), "a file younger than the grace was swept");
        assert!(committed[0].exists(), "a committed file was swept");
        assert!(running_file.exists(), "a running ingest's file was swept");
        running.abort().await;
        node.shutdown().await;
    }
}
