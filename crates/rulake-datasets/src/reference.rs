//! The reference table writers (Python `deltalake` and `pyiceberg`), driven
//! from Rust for tests and the benchmark.
//!
//! Why: a table RuLake wrote itself would only prove that RuLake agrees
//! with RuLake. Tables the formats' own writers produce carry what real
//! lakes carry (list vectors, `string_view` ids, copy-on-write deletes,
//! zstd data files, deflated manifests). The script is compiled into the
//! crate and written to a temporary file on use, so a binary built from
//! this crate needs only a Python with those packages, found through
//! `RULAKE_PYTHON` (default `python3`).

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = include_str!("../python/write_tables.py");

/// A table format the reference writers write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// Parquet files (pyarrow).
    Parquet,
    /// A Delta table (deltalake).
    Delta,
    /// An Iceberg table in a SQL catalog (pyiceberg).
    Iceberg,
}

/// How [`ReferenceWriters::payload_table`] lays rows out.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Partition a Delta or Iceberg table by this column (identity).
    pub partition_by: Option<String>,
    /// Rows per Parquet row group (pyarrow's default otherwise).
    pub row_group_rows: Option<usize>,
}

/// Handle on a Python interpreter that has the reference writers.
#[derive(Debug)]
pub struct ReferenceWriters {
    python: PathBuf,
    script: ScriptFile,
}

/// The script written out for this handle, removed on drop.
#[derive(Debug)]
struct ScriptFile(PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Why a reference writer could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The interpreter is missing, lacks a package, or the script failed.
    #[error("{0}")]
    Failed(String),
    /// The script could not be written out.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File that could not be written.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result of the reference writers.
pub type Result<T, E = WriterError> = std::result::Result<T, E>;

fn invalid(msg: String) -> WriterError {
    WriterError::Failed(msg)
}

impl ReferenceWriters {
    /// Find the interpreter (`RULAKE_PYTHON`, else `python3`) and check that
    /// it can import `deltalake`, `pyiceberg` and its SQL catalog, and
    /// `pyroaring` (deletion vectors).
    pub fn find() -> Result<Self> {
        let python = PathBuf::from(std::env::var("RULAKE_PYTHON").unwrap_or("python3".into()));
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "rulake-write-tables-{}-{}.py",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, SCRIPT).map_err(|source| WriterError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let w = ReferenceWriters {
            python,
            script: ScriptFile(path),
        };
        w.run(&["check".into()]).map_err(|e| {
            invalid(format!(
                "the reference table writers are not usable ({e}); install them with `pip install deltalake 'pyiceberg[sql-sqlite,pyarrow]' pyroaring` and point RULAKE_PYTHON at that interpreter"
            ))
        })?;
        Ok(w)
    }

    /// For tests: the writers, or `None` after saying loudly why the test
    /// does not run. Under `CI=true` a missing writer is a failure, never a
    /// silent skip.
    pub fn for_tests() -> Option<Self> {
        match Self::find() {
            Ok(w) => Some(w),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and {e}")
            }
            Err(e) => {
                eprintln!("SKIPPING table-format test: {e}");
                None
            }
        }
    }

    fn run(&self, args: &[String]) -> Result<String> {
        let out = Command::new(&self.python)
            .arg(&self.script.0)
            .args(args)
            .output()
            .map_err(|e| invalid(format!("cannot run {}: {e}", self.python.display())))?;
        if !out.status.success() {
            return Err(invalid(format!(
                "{} {}: {}",
                self.python.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn files(files: &[PathBuf]) -> impl Iterator<Item = String> + '_ {
        files.iter().map(|f| f.display().to_string())
    }

    /// Append the rows of Parquet `files` (columns `id`, `vector`) to the
    /// Delta table at `table` (created if absent): one commit.
    pub fn delta_append(&self, table: &Path, files: &[PathBuf], string_ids: bool) -> Result<()> {
        let mut args = vec!["delta-append".into(), table.display().to_string()];
        if string_ids {
            args.push("--string-ids".into());
        }
        args.extend(Self::files(files));
        self.run(&args).map(drop)
    }

    /// Like [`Self::delta_append`], creating the table with deletion vectors
    /// enabled (reader and writer feature `deletionVectors`).
    pub fn delta_append_dv(&self, table: &Path, files: &[PathBuf]) -> Result<()> {
        let mut args = vec![
            "delta-append".into(),
            table.display().to_string(),
            "--dv".into(),
        ];
        args.extend(Self::files(files));
        self.run(&args).map(drop)
    }

    /// Delete rows by id through deletion vectors, one commit written by
    /// this crate's script per the Delta protocol (deltalake cannot write
    /// them): `storage` is `u` (relative, UUID), `i` (inline) or `p`
    /// (absolute path).
    pub fn delta_dv(&self, table: &Path, storage: &str, ids: &[u64]) -> Result<()> {
        let mut args = vec![
            "delta-dv".into(),
            table.display().to_string(),
            storage.into(),
        ];
        args.extend(ids.iter().map(u64::to_string));
        self.run(&args).map(drop)
    }

    /// Delete the rows matching a SQL `predicate` (copy-on-write): one commit.
    pub fn delta_delete(&self, table: &Path, predicate: &str) -> Result<()> {
        self.run(&[
            "delta-delete".into(),
            table.display().to_string(),
            predicate.into(),
        ])
        .map(drop)
    }

    /// Write the rows of the JSON-lines file `rows` (keys `id`, `vector`,
    /// `lang`, `year`, `score`, `flag`, `published` (microseconds),
    /// `day` (days), `tags`, `title`; any may be null but the first two)
    /// as `pieces` Parquet files under `out` (pyarrow), or as `pieces`
    /// commits to the Delta table at `out` (deltalake) when `delta`.
    pub fn payload_write(&self, delta: bool, out: &Path, rows: &Path, pieces: usize) -> Result<()> {
        let format = if delta {
            TableFormat::Delta
        } else {
            TableFormat::Parquet
        };
        self.payload_table(format, out, rows, pieces, &Layout::default())
            .map(drop)
    }

    /// [`Self::payload_write`] in any of the three formats, laid out as
    /// `layout` says. For Iceberg, `out` is the warehouse of a SQL catalog
    /// and the table is `payload.items`; returns its metadata file URL
    /// (for Parquet and Delta, `out`).
    pub fn payload_table(
        &self,
        format: TableFormat,
        out: &Path,
        rows: &Path,
        pieces: usize,
        layout: &Layout,
    ) -> Result<String> {
        let mut args = vec![
            "payload-write".into(),
            match format {
                TableFormat::Parquet => "parquet",
                TableFormat::Delta => "delta",
                TableFormat::Iceberg => "iceberg",
            }
            .into(),
            out.display().to_string(),
            rows.display().to_string(),
            pieces.to_string(),
        ];
        if let Some(c) = &layout.partition_by {
            args.extend(["--partition-by".into(), c.clone()]);
        }
        if let Some(n) = layout.row_group_rows {
            args.extend(["--row-group-rows".into(), n.to_string()]);
        }
        match format {
            TableFormat::Iceberg => self.metadata_location(&args),
            _ => self.run(&args).map(|_| out.display().to_string()),
        }
    }

    /// Write a checkpoint of the current version.
    pub fn delta_checkpoint(&self, table: &Path) -> Result<()> {
        self.run(&["delta-checkpoint".into(), table.display().to_string()])
            .map(drop)
    }

    /// Append the rows of `files` to Iceberg table `name` (`ns.table`, made
    /// if absent) in a SQL catalog over SQLite in `warehouse`; returns the
    /// new metadata file URL. The table lives at `warehouse/ns/table`.
    pub fn iceberg_append(
        &self,
        warehouse: &Path,
        name: &str,
        files: &[PathBuf],
        string_ids: bool,
    ) -> Result<String> {
        let mut args = vec![
            "iceberg-append".into(),
            warehouse.display().to_string(),
            name.into(),
        ];
        if string_ids {
            args.push("--string-ids".into());
        }
        args.extend(Self::files(files));
        self.metadata_location(&args)
    }

    fn metadata_location(&self, args: &[String]) -> Result<String> {
        let out = self.run(args)?;
        out.lines()
            .last()
            .map(|l| l.trim().to_owned())
            .ok_or_else(|| invalid(format!("{} printed no metadata location", args[0])))
    }

    /// Commit a position delete file deleting the rows with `ids` (delete
    /// file written per the Iceberg spec by this crate's script, committed
    /// through pyiceberg's snapshot producer); returns the metadata URL.
    pub fn iceberg_delete_positions(
        &self,
        warehouse: &Path,
        name: &str,
        ids: &[u64],
    ) -> Result<String> {
        let mut args = vec![
            "iceberg-delete-positions".into(),
            warehouse.display().to_string(),
            name.into(),
        ];
        args.extend(ids.iter().map(u64::to_string));
        self.metadata_location(&args)
    }

    /// Commit an equality delete file on `column` deleting `ids`.
    pub fn iceberg_delete_equality(
        &self,
        warehouse: &Path,
        name: &str,
        column: &str,
        ids: &[u64],
    ) -> Result<String> {
        let mut args = vec![
            "iceberg-delete-equality".into(),
            warehouse.display().to_string(),
            name.into(),
            column.into(),
        ];
        args.extend(ids.iter().map(u64::to_string));
        self.metadata_location(&args)
    }

    /// Commit a format-v3 style deletion vector entry (a Puffin position
    /// delete), which RuLake refuses.
    pub fn iceberg_delete_puffin(&self, warehouse: &Path, name: &str) -> Result<String> {
        self.metadata_location(&[
            "iceberg-delete-puffin".into(),
            warehouse.display().to_string(),
            name.into(),
        ])
    }

    /// Drop a table from the SQL catalog (the row only; files stay).
    pub fn iceberg_drop(&self, warehouse: &Path, name: &str) -> Result<()> {
        self.run(&[
            "iceberg-drop".into(),
            warehouse.display().to_string(),
            name.into(),
        ])
        .map(drop)
    }
}
