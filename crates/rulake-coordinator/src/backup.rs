//! Backups: a point-in-time copy of the catalog and of the managed files
//! it names, and the restore that rebuilds a data directory from one.
//!
//! Why it is built this way:
//! - **The catalog is read through Raft** (a linearizable read), so the
//!   copy is a state the group committed, not one member's view. Nodes and
//!   placement are left out: they describe the machines of the cluster
//!   backed up, and a restored cluster registers its own.
//! - **The manifest is written last** and lists every file with its size
//!   and SHA-256; a backup without a manifest is unfinished, and a restore
//!   checks every checksum before it writes anything, so a corrupted or
//!   partial backup is refused whole, never half-restored.
//! - **Files are copied, not referenced.** A managed file is immutable
//!   once committed, so copying after the catalog read is consistent; a
//!   file a compaction retired meanwhile is no longer there to copy, and
//!   the backup starts over from a new catalog read.
//! - **External sources are not copied**: the lake is the user's, and the
//!   catalog records how to read it (pinned versions included).
//!
//! Layout under the destination: `MANIFEST.json`, `catalog.json`, and
//! `managed/<source>/<file>` for every visible managed file.

use crate::{sync, Coordinator, CoordinatorError, Result};
use rulake_catalog::{Catalog, Command, ReadConsistency, SourceKind};
use rulake_lake::{LakeError, ManagedSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The manifest's name under a backup's destination.
pub const MANIFEST: &str = "MANIFEST.json";
/// The catalog copy's name under a backup's destination.
pub const CATALOG: &str = "catalog.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup holds, written last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the catalog was read (Unix milliseconds).
    pub created_unix_ms: u64,
    /// The catalog copy: bytes and SHA-256.
    pub catalog: BackedFile,
    /// Every managed file copied.
    pub files: Vec<BackedFile>,
    /// The collections backed up (for `backup list`).
    pub collections: Vec<String>,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedFile {
    /// Its path under the backup's destination.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Where a backup or restore stands, for progress reports.
#[derive(Clone, Copy, Debug)]
pub struct BackupProgress {
    /// Files copied or checked so far.
    pub files_done: u64,
    /// Files in all.
    pub files_total: u64,
    /// Bytes copied or checked so far.
    pub bytes_done: u64,
}

/// Hex SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The backup's path of managed file `name` of source `source`.
fn managed_path(source: &str, name: &str) -> String {
    format!("managed/{source}/{name}")
}

fn invalid(what: String) -> CoordinatorError {
    CoordinatorError::FailedPrecondition(what)
}

/// The store of a backup's destination or origin (any URL a managed
/// prefix may be: a local path, `file://`, `s3://`, ...).
fn open(url: &str) -> Result<ManagedSource> {
    sync::managed_writer(url)
}

impl Coordinator {
    /// Write a backup of the catalog and every managed file it names to
    /// `to`, which must hold no backup yet; returns its manifest.
    pub async fn backup(
        &self,
        to: &str,
        progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<Manifest> {
        let dest = open(to)?;
        if dest.list_files().await?.iter().any(|f| f.name == MANIFEST) {
            return Err(CoordinatorError::AlreadyExists(format!(
                "{to} already holds a backup; back up to a new location"
            )));
        }
        // A file retired by a compaction between the catalog read and its
        // copy is gone: read the catalog again and copy what it names.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.backup_once(&dest, progress).await {
                Err(CoordinatorError::Lake(LakeError::Vanished { path })) if attempts < 3 => {
                    tracing::info!(%path, "a managed file went away during the backup; starting over");
                    let written: Vec<String> = dest
                        .list_files()
                        .await?
                        .into_iter()
                        .map(|f| f.name)
                        .collect();
                    dest.delete_files(&written).await?;
                }
                other => return other,
            }
        }
    }

    async fn backup_once(
        &self,
        dest: &ManagedSource,
        progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<Manifest> {
        let mut cat = self
            .inner
            .meta
            .read(ReadConsistency::Linearizable)
            .await?
            .catalog;
        cat.nodes.clear();
        cat.assignment = Default::default();
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wanted: Vec<(String, String, String)> = cat
            .sources
            .iter()
            .filter_map(|(name, s)| match &s.kind {
                SourceKind::Managed { prefix } => Some((name, prefix)),
                _ => None,
            })
            .flat_map(|(name, prefix)| {
                sync::commits_of(&cat, name)
                    .files
                    .into_iter()
                    .map(|f| (name.clone(), prefix.clone(), f))
            })
            .collect();
        let total = wanted.len() as u64;
        let mut files = Vec::with_capacity(wanted.len());
        let mut bytes_done = 0;
        for (source, prefix, name) in wanted {
            let bytes = open(&prefix)?.get_object(&name).await?;
            let path = managed_path(&source, &name);
            let entry = BackedFile {
                sha256: sha256(&bytes),
                bytes: bytes.len() as u64,
                path: path.clone(),
            };
            bytes_done += entry.bytes;
            dest.put_object(&path, bytes).await?;
            files.push(entry);
            progress(BackupProgress {
                files_done: files.len() as u64,
                files_total: total,
                bytes_done,
            });
        }
        let json = serde_json::to_vec_pretty(&cat).map_err(|e| invalid(e.to_string()))?;
        let catalog = BackedFile {
            path: CATALOG.into(),
            bytes: json.len() as u64,
            sha256: sha256(&json),
        };
        dest.put_object(CATALOG, json).await?;
        let manifest = Manifest {
            format: FORMAT,
            created_unix_ms,
            catalog,
            files,
            collections: cat.collections.keys().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
        dest.put_object(MANIFEST, json).await?;
        Ok(manifest)
    }

    /// Rebuild, in this coordinator's empty catalog, what backup `from`
    /// holds: every source (managed prefixes moved under this
    /// coordinator's managed root), collection, alias and tombstone, and
    /// the managed files copied to their new prefixes. Everything is read
    /// and checked first ([`read_backup`]); the catalog must be empty.
    ///
    /// In a cluster the catalog is written command by command through
    /// Raft: a failure part way (a lost leader, a store error) leaves what
    /// was written, and the error says so; the cluster must then be emptied
    /// (or started anew) before the restore is run again.
    pub async fn restore(
        &self,
        from: &str,
        progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<Manifest> {
        self.require_empty()?;
        let (manifest, cat, origin) = read_backup(from, progress).await?;
        self.require_empty()?;
        if let Err(e) = self
            .write_restored(&manifest, &cat, &origin, progress)
            .await
        {
            tracing::error!(
                error = %e,
                from,
                "the restore stopped part way: the catalog holds part of the backup; empty it (or start a new cluster) before restoring again"
            );
            return Err(e);
        }
        Ok(manifest)
    }

    /// Refuse a restore into a catalog that holds anything.
    fn require_empty(&self) -> Result<()> {
        let here = self.catalog();
        if here.sources.is_empty() && here.collections.is_empty() && here.aliases.is_empty() {
            Ok(())
        } else {
            Err(invalid(
                "a backup is restored only into an empty catalog (a new data directory or cluster)"
                    .into(),
            ))
        }
    }

    /// Copy the checked backup's managed files and write its catalog.
    async fn write_restored(
        &self,
        manifest: &Manifest,
        cat: &Catalog,
        origin: &ManagedSource,
        progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<()> {
        // Checked above; now copied, and reported again as they are.
        let mut copied = BackupProgress {
            files_done: 0,
            files_total: manifest.files.len() as u64,
            bytes_done: 0,
        };
        for (name, src) in &cat.sources {
            let mut src = src.clone();
            if let SourceKind::Managed { prefix } = &src.kind {
                let prefix = self.moved_prefix(prefix);
                let dest = open(&prefix)?;
                for f in sync::commits_of(cat, name).files {
                    let bytes = origin.get_object(&managed_path(name, &f)).await?;
                    copied.files_done += 1;
                    copied.bytes_done += bytes.len() as u64;
                    dest.put_object(&f, bytes).await?;
                    progress(copied);
                }
                src.kind = SourceKind::Managed { prefix };
            }
            self.write(Command::CreateSource(src)).await?;
            if let Some(commits) = cat.managed.get(name) {
                self.write(Command::RestoreManaged {
                    source: name.clone(),
                    commits: commits.clone(),
                })
                .await?;
            }
        }
        for rec in cat.collections.values() {
            self.write(Command::CreateCollection(rec.clone())).await?;
        }
        for (alias, collection) in &cat.aliases {
            self.write(Command::CreateAlias {
                alias: alias.clone(),
                collection: collection.clone(),
            })
            .await?;
        }
        for (collection, ids) in &cat.tombstones {
            for ids in rulake_catalog::model::batches(ids.iter().cloned().collect()) {
                self.write(Command::AddTombstones {
                    collection: collection.clone(),
                    ids,
                })
                .await?;
            }
        }
        self.sync().await
    }

    /// A backed-up managed prefix moved under this coordinator's managed
    /// root, keeping its last two segments (`<collection>/<unique id>`).
    fn moved_prefix(&self, old: &str) -> String {
        let tail: Vec<&str> = old
            .trim_end_matches('/')
            .rsplit('/')
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{}/{}/", self.inner.managed_root, tail.join("/"))
    }
}

/// Read backup `from` whole and check it: the manifest's format, every
/// file present with its size and checksum, the catalog parseable and
/// naming only files the backup holds. Returns the manifest, the catalog
/// and the backup's store. Nothing is written.
pub async fn read_backup(
    from: &str,
    progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> Result<(Manifest, Catalog, ManagedSource)> {
    let origin = open(from)?;
    let raw = match origin.get_object(MANIFEST).await {
        Ok(b) => b,
        Err(LakeError::Vanished { .. }) => {
            return Err(invalid(format!(
                "{from} holds no {MANIFEST}: not a backup, or one that did not finish"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("{from}/{MANIFEST} is not a backup manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!(
            "{from}: backup format {} (this build reads {FORMAT})",
            manifest.format
        )));
    }
    let total = manifest.files.len() as u64 + 1;
    let mut done = 0;
    let mut bytes_done = 0;
    let mut check = |f: &BackedFile, bytes: &[u8]| -> Result<()> {
        if bytes.len() as u64 != f.bytes || sha256(bytes) != f.sha256 {
            return Err(invalid(format!(
                "{from}/{}: {} bytes that do not match the manifest's checksum (corrupted or changed); nothing was restored",
                f.path,
                bytes.len()
            )));
        }
        done += 1;
        bytes_done += f.bytes;
        progress(BackupProgress {
            files_done: done,
            files_total: total,
            bytes_done,
        });
        Ok(())
    };
    let missing = |f: &BackedFile, e: LakeError| match e {
        LakeError::Vanished { .. } => invalid(format!(
            "{from}/{} is missing: the backup is partial; nothing was restored",
            f.path
        )),
        e => e.into(),
    };
    for f in &manifest.files {
        let bytes = origin
            .get_object(&f.path)
            .await
            .map_err(|e| missing(f, e))?;
        check(f, &bytes)?;
    }
    let raw = origin
        .get_object(&manifest.catalog.path)
        .await
        .map_err(|e| missing(&manifest.catalog, e))?;
    check(&manifest.catalog, &raw)?;
    let cat: Catalog = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("{from}/{CATALOG} is not a catalog: {e}")))?;
    let held: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    for name in cat.managed.keys() {
        for f in sync::commits_of(&cat, name).files {
            if !held.contains(managed_path(name, &f).as_str()) {
                return Err(invalid(format!(
                    "{from}: the catalog names managed file {f:?} of source {name:?}, which the backup does not hold; nothing was restored"
                )));
            }
        }
    }
    Ok((manifest, cat, origin))
}

/// The manifests of the backups directly under `parent`, oldest first,
/// each with its location.
pub async fn list_backups(parent: &str) -> Result<Vec<(String, Manifest)>> {
    let store = open(parent)?;
    let mut found = Vec::new();
    for f in store.list_files().await? {
        let Some(dir) = f.name.strip_suffix(&format!("/{MANIFEST}")) else {
            continue;
        };
        if dir.contains('/') {
            continue;
        }
        let raw = store.get_object(&f.name).await?;
        if let Ok(m) = serde_json::from_slice::<Manifest>(&raw) {
            found.push((format!("{}/{dir}", parent.trim_end_matches('/')), m));
        }
    }
    found.sort_by_key(|(_, m)| m.created_unix_ms);
    Ok(found)
}
