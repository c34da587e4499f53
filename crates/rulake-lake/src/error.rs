//! Lake errors name the object, the row group and the column involved, so an
//! operator can find the bad file without reading RuLake's code.

use thiserror::Error;

/// Where in the lake a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Object path (or `memory` for the in-process source).
    pub object: String,
    /// Row group inside the object, when known.
    pub row_group: Option<usize>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row_group {
            Some(rg) => write!(f, "{} (row group {rg})", self.object),
            None => f.write_str(&self.object),
        }
    }
}

/// Everything that can go wrong between RuLake and a lake.
#[derive(Debug, Error)]
pub enum LakeError {
    /// The source URL could not be parsed or names an unsupported scheme.
    #[error("invalid source url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The object store refused or failed a request.
    #[error("object store error at {at}: {source}")]
    Store {
        /// The object (or prefix) involved.
        at: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// An object listed a moment ago is gone when read.
    #[error(
        "object {path} vanished between listing and reading; the source changed, refresh again"
    )]
    Vanished {
        /// The object path.
        path: String,
    },
    /// A zero-byte object where a Parquet file was expected.
    #[error("{path}: empty object, not a Parquet file")]
    EmptyFile {
        /// The object path.
        path: String,
    },
    /// The object is not Parquet, or is truncated or corrupt.
    #[error("{at}: not a readable Parquet file: {source}")]
    Parquet {
        /// Object and row group.
        at: Location,
        /// The decoder's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A named column is missing from a file's schema.
    #[error("{at}: column {column:?} not found (columns: {available})")]
    MissingColumn {
        /// Object.
        at: Location,
        /// The column asked for.
        column: String,
        /// What the file has.
        available: String,
    },
    /// A column has a type RuLake cannot read as ids or vectors.
    #[error("{at}: column {column:?} has type {found}, expected {expected}")]
    ColumnType {
        /// Object.
        at: Location,
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A row's vector has the wrong number of components.
    #[error("{at}: column {column:?} row {row}: vector has {found} dimensions, collection expects {expected}")]
    Dimension {
        /// Object and row group.
        at: Location,
        /// Vector column.
        column: String,
        /// Row index within the row group.
        row: usize,
        /// Dimension found.
        found: usize,
        /// Dimension expected.
        expected: usize,
    },
    /// A vector component is NaN or infinite.
    #[error("{at}: column {column:?} row {row}: vector has a non-finite component ({value}) at position {position}")]
    NonFinite {
        /// Object and row group.
        at: Location,
        /// Vector column.
        column: String,
        /// Row index within the row group.
        row: usize,
        /// Component index.
        position: usize,
        /// The offending value, printed.
        value: String,
    },
    /// A row has a null id or a null vector (or a null component).
    #[error("{at}: column {column:?} row {row}: null value")]
    Null {
        /// Object and row group.
        at: Location,
        /// Column.
        column: String,
        /// Row index within the row group.
        row: usize,
    },
    /// A signed id column holds a negative value.
    #[error("{at}: column {column:?} row {row}: negative id {value} (ids must be unsigned)")]
    NegativeId {
        /// Object and row group.
        at: Location,
        /// Id column.
        column: String,
        /// Row index within the row group.
        row: usize,
        /// The value.
        value: i64,
    },
    /// An in-memory source was asked to add an id it already holds.
    #[error("id {id} already exists in the memory source (use upsert to replace it)")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// Input to the memory source or a writer does not match the declared shape.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A table (Delta, Iceberg) is not where its URL points.
    #[error("table {table}: not found: {reason}")]
    TableNotFound {
        /// The table URL.
        table: String,
        /// What was missing.
        reason: String,
    },
    /// A table's log or metadata file is unreadable, corrupt or inconsistent.
    #[error("table {table}: metadata file {file} is unreadable: {reason}")]
    TableMetadata {
        /// The table URL.
        table: String,
        /// The log, metadata, manifest or checkpoint file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A table uses a feature RuLake does not apply, so reading it would
    /// return wrong rows (deletion vectors, delete files, column mapping...).
    #[error("table {table}: {feature} is not supported: {detail}")]
    Unsupported {
        /// The table URL.
        table: String,
        /// The feature.
        feature: String,
        /// Where it was found and what to do.
        detail: String,
    },
    /// The server's source policy does not admit this source: it lies
    /// outside every allowed prefix, or touches the server's own files.
    /// The message is the same either way and never says whether the
    /// location exists.
    #[error("source {url:?} is not allowed by this server's source policy (an operator allows prefixes with --source-allow)")]
    Denied {
        /// The URL as given.
        url: String,
    },
    /// A source kind this build cannot read (built without its feature).
    #[error("this server was built without the {kind} feature, so it cannot read {kind} sources")]
    NotBuilt {
        /// The source kind (`delta`, `iceberg`).
        kind: &'static str,
    },
    /// A pinned table version or snapshot does not exist (any more).
    #[error("table {table}: {what} not found")]
    VersionNotFound {
        /// The table URL.
        table: String,
        /// The version or snapshot asked for.
        what: String,
    },
    /// An object (or what it claims to hold) is larger than RuLake reads:
    /// a Parquet footer, an Iceberg metadata file or manifest, an inflated
    /// Avro file, a Delta log file. Refused before the bytes are fetched
    /// or allocated, so one bad file cannot exhaust the server's memory.
    #[error("{path}: {what} of {size} bytes is more than the limit of {limit} bytes")]
    TooLarge {
        /// The object path.
        path: String,
        /// What was too large (`Parquet footer`, `Iceberg metadata file`, ...).
        what: &'static str,
        /// Its size, or at least the bytes seen before stopping.
        size: u64,
        /// The limit (a `MAX_*` constant of this crate).
        limit: u64,
    },
    /// Local file I/O (writers, demo data).
    #[error("i/o error at {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl LakeError {
    /// A failed read of an object a table named: a missing object is
    /// [`LakeError::Vanished`] under the caller's `path` (the spelling the
    /// table used, not the store's), anything else as [`LakeError::store`].
    #[cfg(any(feature = "delta", feature = "iceberg"))]
    pub(crate) fn read(path: impl Into<String>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => LakeError::Vanished { path: path.into() },
            source => LakeError::store(path, source),
        }
    }

    pub(crate) fn store(at: impl Into<String>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { path, .. } => LakeError::Vanished { path },
            source => LakeError::Store {
                at: at.into(),
                source,
            },
        }
    }
}

/// Result alias for lake operations.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;
