//! A managed source: Parquet files RuLake wrote itself under a prefix it
//! owns, visible only once a catalog commit names them.
//!
//! The directory is not the truth: an ingest writes its files first and the
//! catalog commit makes them visible as one generation, so a writer that
//! dies midway leaves files nobody lists (and that it, or a later cleanup,
//! deletes) rather than half an ingest. The source therefore lists exactly
//! the files of the commits it was given, never the prefix.
//!
//! Why the write path is careful about three things:
//! - **Names never repeat.** A file name carries a random 128-bit id
//!   ([`unique_id`]), not a clock reading (a clock stepped back could repeat
//!   one), and files are written create-only, so a committed file is never
//!   overwritten, whatever the name.
//! - **Files are durable before they are committed.** The catalog commit is
//!   fsynced by a majority; a file on a local root is fsynced too (file and
//!   directories) before [`ManagedSource::write_file`] returns, so after an
//!   OS crash the catalog never names a file that was lost. Object stores
//!   are durable once a put returns.
//! - **Leftovers are swept, never guessed at.** Files no commit names (an
//!   ingest that crashed, or whose commit outcome was unknown) are deleted
//!   by [`ManagedSource::sweep`] only once they are older than a grace
//!   period, decided by the pure [`files_to_sweep`].

use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, RowStream, Source, Unit};
use crate::store::{open_store, to_url, StoreUrl};
use crate::writer::{encode_parquet_with, IdsRef, ID_COLUMN, VECTOR_COLUMN};
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use parking_lot::RwLock;
use rulake_types::Generation;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Rows per row group in files RuLake writes: small enough that a
/// collection of a few files still splits over many partitions.
pub const MANAGED_ROW_GROUP_ROWS: usize = 16_384;

/// How long a file no commit names is left alone before a sweep deletes
/// it: longer than any ingest takes between writing its first file and
/// committing.
pub const DEFAULT_SWEEP_GRACE: Duration = Duration::from_secs(60 * 60);

/// A name part that never repeats: 128 random bits from the operating
/// system's generator, as 32 hex digits. Not derived from a clock, so a
/// clock stepped back cannot repeat it.
pub fn unique_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One object found under a managed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// Its name relative to the prefix (as commits name files).
    pub name: String,
    /// When it was last written.
    pub last_modified: SystemTime,
}

/// The files a sweep deletes: listed under the prefix, named by no commit
/// (`named`), and last written more than `grace` before `now`. A file
/// from the future (clocks disagree) is kept.
pub fn files_to_sweep(
    listed: &[ListedFile],
    named: &HashSet<String>,
    now: SystemTime,
    grace: Duration,
) -> Vec<String> {
    listed
        .iter()
        .filter(|f| !named.contains(&f.name))
        .filter(|f| {
            now.duration_since(f.last_modified)
                .is_ok_and(|age| age > grace)
        })
        .map(|f| f.name.clone())
        .collect()
}

/// The committed state a managed source serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commits {
    /// Sequence of the last commit (0: nothing committed yet).
    pub seq: u64,
    /// Every committed file, relative to the prefix, oldest first.
    pub files: Vec<String>,
}

/// Files under a prefix, listed from catalog commits.
#[derive(Debug)]
pub struct ManagedSource {
    prefix: String,
    store: StoreUrl,
    files: ParquetSource,
    commits: RwLock<Commits>,
}

impl ManagedSource {
    /// A source over `prefix` (`file://`, `s3://`, ... or a local path)
    /// with nothing committed yet.
    pub fn open(prefix: &str, options: &[(String, String)]) -> Result<Self> {
        let url = to_url(prefix.trim_end_matches('/'))?;
        let store = open_store(&url, options, crate::io::LakeKind::Managed)?;
        let files = ParquetSource::for_table(store.clone(), ID_COLUMN, VECTOR_COLUMN);
        Ok(ManagedSource {
            prefix: prefix.to_owned(),
            store,
            files,
            commits: RwLock::new(Commits::default()),
        })
    }

    /// Serve `commits` from now on (the catalog's view of this source).
    pub fn set_commits(&self, commits: Commits) {
        *self.commits.write() = commits;
    }

    /// The prefix the source was opened on.
    pub fn describe_prefix(&self) -> String {
        self.prefix.clone()
    }

    /// The commits served now.
    pub fn commits(&self) -> Commits {
        self.commits.read().clone()
    }

    fn path(&self, file: &str) -> Path {
        crate::store::path_under(&self.store.path, file)
    }

    /// Write one immutable file of rows, with their `payload` columns (in
    /// their declared types, every declared column in every file), under
    /// the prefix (not yet visible). Create-only: an existing file of that name is an error,
    /// never overwritten. On a local root the file and its directories are
    /// fsynced before this returns, so a commit naming it survives an OS
    /// crash with the file.
    pub async fn write_file(
        &self,
        file: &str,
        ids: IdsRef<'_>,
        vectors: &[f32],
        dim: usize,
        payload: &[rulake_types::Column],
    ) -> Result<u64> {
        let bytes = encode_parquet_with(ids, vectors, dim, payload, MANAGED_ROW_GROUP_ROWS)?;
        self.put_object(file, bytes).await
    }

    /// Write `bytes` as `file` under the prefix: create-only and durable
    /// before this returns, as [`ManagedSource::write_file`] (a backup's
    /// copies and manifest are written this way).
    pub async fn put_object(&self, file: &str, bytes: Vec<u8>) -> Result<u64> {
        let len = bytes.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .store
            .put_opts(&self.path(file), bytes.into(), opts)
            .await
            .map_err(|e| LakeError::store(format!("{}/{file}", self.prefix), e))?;
        if let Some(local) = self.local_path(file) {
            let root = self.local_path("").unwrap_or_else(|| local.clone());
            tokio::task::spawn_blocking(move || fsync_file_and_dirs(&local, &root))
                .await
                .map_err(|e| LakeError::Invalid(format!("fsync task failed: {e}")))??;
        }
        Ok(len)
    }

    /// The bytes of `file` under the prefix, whole.
    pub async fn get_object(&self, file: &str) -> Result<Vec<u8>> {
        let at = |e| LakeError::store(format!("{}/{file}", self.prefix), e);
        let got = self.store.store.get(&self.path(file)).await.map_err(at)?;
        Ok(got.bytes().await.map_err(at)?.to_vec())
    }

    /// The local path of `file` when the prefix is on the local file system.
    fn local_path(&self, file: &str) -> Option<std::path::PathBuf> {
        if self.store.url.scheme() != "file" {
            return None;
        }
        let root = self.store.url.to_file_path().ok()?;
        Some(if file.is_empty() {
            root
        } else {
            root.join(file)
        })
    }

    /// Every object under the prefix, named relative to it.
    pub async fn list_files(&self) -> Result<Vec<ListedFile>> {
        let base: Vec<String> = self
            .store
            .path
            .parts()
            .map(|p| p.as_ref().to_owned())
            .collect();
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .store
            .list(Some(&self.store.path))
            .try_collect()
            .await
            .map_err(|e| LakeError::store(self.prefix.clone(), e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> =
                    m.location.parts().map(|p| p.as_ref().to_owned()).collect();
                let rel = parts.strip_prefix(base.as_slice())?;
                Some(ListedFile {
                    name: rel.join("/"),
                    last_modified: SystemTime::from(m.last_modified),
                })
            })
            .collect())
    }

    /// Delete the files under the prefix that no commit names (`named`)
    /// and that are older than `grace` at `now` (see [`files_to_sweep`]);
    /// returns the names deleted.
    pub async fn sweep(
        &self,
        named: &HashSet<String>,
        now: SystemTime,
        grace: Duration,
    ) -> Result<Vec<String>> {
        let listed = self.list_files().await?;
        let doomed = files_to_sweep(&listed, named, now, grace);
        self.delete_files(&doomed).await?;
        Ok(doomed)
    }

    /// Delete files that were written but will never be committed. Files
    /// already gone are fine.
    pub async fn delete_files(&self, files: &[String]) -> Result<()> {
        for f in files {
            match self.store.store.delete(&self.path(f)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LakeError::store(format!("{}/{f}", self.prefix), e)),
            }
        }
        Ok(())
    }
}

/// fsync `file`, then every directory from its own up to `root` (the
/// prefix, whose entries the put may have created), then the ancestors of
/// `root` as far as they can be opened (the put may have created the
/// prefix's own directories too).
fn fsync_file_and_dirs(file: &std::path::Path, root: &std::path::Path) -> Result<()> {
    let io = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| LakeError::Io { path, source }
    };
    // `managed-fsync`: a test slows this fsync down or fails it (EIO).
    fail::fail_point!("managed-fsync", |_| Err(io(file)(
        std::io::Error::from_raw_os_error(5)
    )));
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(io(file))?;
    let mut dir = file.parent();
    let mut above_root = false;
    while let Some(d) = dir {
        let r = std::fs::File::open(d).and_then(|f| f.sync_all());
        if !above_root {
            r.map_err(io(d))?;
        }
        above_root |= d == root;
        dir = d.parent();
    }
    Ok(())
}

/// The generation of a managed source after commit `seq`.
pub fn generation(seq: u64) -> Generation {
    Generation(format!("m-{seq}"))
}

#[async_trait]
impl Source for ManagedSource {
    fn kind(&self) -> &'static str {
        "managed"
    }

    fn describe(&self) -> String {
        self.prefix.clone()
    }

    async fn generation(&self) -> Result<Generation> {
        Ok(generation(self.commits.read().seq))
    }

    async fn list_units(&self) -> Result<Listing> {
        let commits = self.commits();
        let mut objects = Vec::with_capacity(commits.files.len());
        for f in &commits.files {
            let meta = self
                .store
                .store
                .head(&self.path(f))
                .await
                .map_err(|e| LakeError::store(format!("{}/{f}", self.prefix), e))?;
            objects.push(meta);
        }
        let units = self.files.units_of_objects(objects).await?;
        Ok(Listing {
            generation: generation(commits.seq),
            units,
            pruned: Vec::new(),
        })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.files.read_object_unit(unit, dim, &[])
    }

    fn read_unit_columns(&self, unit: &Unit, dim: usize, payload: &[String]) -> RowStream {
        self.files.read_object_unit(unit, dim, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(dir: &std::path::Path) -> String {
        format!("file://{}/m/u/", dir.display())
    }

    fn listed(name: &str, age: Duration, now: SystemTime) -> ListedFile {
        ListedFile {
            name: name.into(),
            last_modified: now - age,
        }
    }

    /// Only files that no commit names and that are older than the grace
    /// period go; a file from the future (clock skew) stays.
    #[test]
    fn the_sweep_takes_only_old_files_no_commit_names() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let files = [
            listed("committed-old", 3 * hour, now),
            listed("orphan-old", 3 * hour, now),
            listed("orphan-young", hour / 2, now),
            ListedFile {
                name: "orphan-future".into(),
                last_modified: now + hour,
            },
        ];
        let named: HashSet<String> = ["committed-old".to_owned()].into();
        assert_eq!(
            files_to_sweep(&files, &named, now, hour),
            vec!["orphan-old".to_owned()]
        );
        assert!(files_to_sweep(&files, &named, now, 4 * hour).is_empty());
    }

    /// Ids are random, not clock readings: many in a row never repeat.
    #[test]
    fn unique_ids_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| unique_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 32));
    }

    /// A second write under a name already taken fails and leaves the
    /// first file as it was (create-only), so a name that did repeat could
    /// never replace a committed file.
    #[tokio::test]
    async fn a_managed_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ManagedSource::open(&prefix(dir.path()), &[]).expect("open");
        m.write_file("f.parquet", IdsRef::U64(&[1]), &[1.0, 2.0], 2, &[])
            .await
            .expect("first write");
        let path = dir.path().join("m/u/f.parquet");
        let before = std::fs::read(&path).expect("read");
        let second = m
            .write_file(
                "f.parquet",
                IdsRef::U64(&[2, 3]),
                &[3.0, 4.0, 5.0, 6.0],
                2,
                &[],
            )
            .await;
        assert!(second.is_err(), "an existing file was overwritten");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    /// The listing names files relative to the prefix, as commits do, and
    /// a sweep deletes exactly the old unnamed ones.
    #[tokio::test]
    async fn a_sweep_deletes_old_unnamed_files_under_the_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ManagedSource::open(&prefix(dir.path()), &[]).expect("open");
        for f in ["kept.parquet", "orphan.parquet"] {
            m.write_file(f, IdsRef::U64(&[1]), &[1.0, 2.0], 2, &[])
                .await
                .expect("write");
        }
        let mut names: Vec<String> = m
            .list_files()
            .await
            .expect("list")
            .into_iter()
            .map(|f| f.name)
            .collect();
        names.sort();
        assert_eq!(names, ["kept.parquet", "orphan.parquet"]);
        let named: HashSet<String> = ["kept.parquet".to_owned()].into();
        let grace = Duration::from_secs(3600);
        let now = SystemTime::now();
        assert!(m.sweep(&named, now, grace).await.expect("sweep").is_empty());
        let later = now + 2 * grace;
        assert_eq!(
            m.sweep(&named, later, grace).await.expect("sweep"),
            ["orphan.parquet"]
        );
        assert!(dir.path().join("m/u/kept.parquet").exists());
        assert!(!dir.path().join("m/u/orphan.parquet").exists());
    }

    /// Pages of `path` not yet on disk (dirty or under writeback), from
    /// the kernel's `cachestat` (Linux 6.5+); `None` where it cannot tell
    /// (an older kernel, or tmpfs, whose pages are never written back).
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // two read-only syscalls on a file this test owns
    fn unwritten_pages(path: &std::path::Path) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::io::AsRawFd;
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        const SYS_CACHESTAT: libc::c_long = 451;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid C string and `fs` a properly sized buffer.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut fs) } != 0 || fs.f_type as i64 == TMPFS_MAGIC {
            return None;
        }
        let f = std::fs::File::open(path).ok()?;
        let range = Range { off: 0, len: 0 };
        let mut st = Stat::default();
        // SAFETY: the fd is open for the call, both pointers point at
        // live, correctly laid out structs, and flags must be 0.
        let r = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                f.as_raw_fd(),
                &range as *const Range,
                &mut st as *mut Stat,
                0u32,
            )
        };
        (r == 0).then_some(st.nr_dirty + st.nr_writeback)
    }

    /// On a local root, a written file is on disk when the write returns
    /// (fsynced), not only in the page cache: a catalog commit naming it
    /// must not outlive it in an OS crash.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_local_managed_file_is_on_disk_when_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ManagedSource::open(&prefix(dir.path()), &[]).expect("open");
        let ids: Vec<u64> = (0..4096).collect();
        let vectors: Vec<f32> = (0..4096 * 8).map(|i| i as f32).collect();
        m.write_file("f.parquet", IdsRef::U64(&ids), &vectors, 8, &[])
            .await
            .expect("write");
        match unwritten_pages(&dir.path().join("m/u/f.parquet")) {
            Some(pages) => assert_eq!(pages, 0, "written file still only in the page cache"),
            None => eprintln!("skipped: this kernel or file system cannot report dirty pages"),
        }
    }
}
