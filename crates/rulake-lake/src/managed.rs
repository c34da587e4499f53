//! A managed source: Parquet files RuLake wrote itself under a prefix it
//! owns, visible only once a catalog commit names them.
//!
//! The directory is not the truth: an ingest writes its files first and the
//! catalog commit makes them visible as one generation, so a writer that
//! dies midway leaves files nobody lists (and that it, or a later cleanup,
//! deletes) rather than half an ingest. The source therefore lists exactly
//! the files of the commits it was given, never the prefix.

use crate::error::{LakeError, Result};
use crate::parquet::ParquetSource;
use crate::source::{Listing, RowStream, Source, Unit};
use crate::store::{open_store, to_url, StoreUrl};
use crate::writer::{encode_parquet, IdsRef, ID_COLUMN, VECTOR_COLUMN};
use async_trait::async_trait;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parking_lot::RwLock;
use rulake_types::Generation;

/// Rows per row group in files RuLake writes: small enough that a
/// collection of a few files still splits over many partitions.
pub const MANAGED_ROW_GROUP_ROWS: usize = 16_384;

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

    /// Write one immutable file of rows under the prefix (not yet visible).
    pub async fn write_file(
        &self,
        file: &str,
        ids: IdsRef<'_>,
        vectors: &[f32],
        dim: usize,
    ) -> Result<u64> {
        let bytes = encode_parquet(ids, vectors, dim, MANAGED_ROW_GROUP_ROWS)?;
        let len = bytes.len() as u64;
        let path = self.path(file);
        self.store
            .store
            .put(&path, bytes.into())
            .await
            .map_err(|e| LakeError::store(format!("{}/{file}", self.prefix), e))?;
        Ok(len)
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
        })
    }

    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.files.read_object_unit(unit, dim)
    }
}
