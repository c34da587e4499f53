//! Iceberg tables named through a SQL catalog: pyiceberg's `SqlCatalog`
//! over SQLite (feature `iceberg-sql`).
//!
//! Why the catalog is asked on every generation check: in a SQL catalog
//! the `iceberg_tables` row, not the newest metadata file name, says which
//! snapshot is current (a commit swaps the row's `metadata_location`), so
//! reading file names would follow uncommitted or abandoned metadata.
//!
//! Why the lookup never runs inline on an async worker: `rusqlite` is
//! blocking, and a writer holding the database lock can keep a reader
//! waiting for the busy timeout (seconds). Async callers go through
//! [`lookup`] (`spawn_blocking`); the synchronous `IcebergSource::open`
//! goes through [`lookup_sync`], which on a multi-threaded runtime hands
//! the worker's other tasks to another thread first (`block_in_place`).
//!
//! Without the feature the types stay (configs and catalog records carry
//! them) and every lookup is an [`LakeError::Unsupported`] error.

use crate::error::{LakeError, Result};

/// A table named through a SQL catalog (pyiceberg's `SqlCatalog`): the
/// `iceberg_tables` row `(catalog_name, table_namespace, table_name)`
/// holds the current `metadata_location`. The same description the
/// catalog stores (`rulake_types::IcebergSqlCatalog`), under the name the
/// lake's Iceberg configs use.
pub use rulake_types::IcebergSqlCatalog as SqlCatalogTable;

/// How errors name a catalog table.
pub(super) fn table_name(c: &SqlCatalogTable) -> String {
    format!(
        "{}.{} (SQL catalog {:?} at {})",
        c.namespace, c.table, c.catalog, c.uri
    )
}

/// The current `metadata_location` of `c`, looked up on a blocking thread.
/// `table` names the table in errors.
pub(super) async fn lookup(c: &SqlCatalogTable, table: String) -> Result<String> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || lookup_blocking(&c, &table))
        .await
        .map_err(|e| LakeError::Invalid(format!("catalog lookup failed: {e}")))?
}

/// The current `metadata_location` of `c`, for synchronous callers. On a
/// multi-threaded runtime the calling worker first hands its queued tasks
/// to another thread, so a slow catalog stalls only this caller. On a
/// current-thread runtime, or outside any runtime, there is nothing to
/// hand over (and `block_in_place` would panic there), so the lookup runs
/// inline; async code should prefer `IcebergSource::open_async`.
pub(super) fn lookup_sync(c: &SqlCatalogTable, table: &str) -> Result<String> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| lookup_blocking(c, table))
    } else {
        lookup_blocking(c, table)
    }
}

/// Read the catalog row (blocking: SQLite on local disk).
#[cfg(feature = "iceberg-sql")]
fn lookup_blocking(c: &SqlCatalogTable, table: &str) -> Result<String> {
    use rusqlite::{Connection, OpenFlags, OptionalExtension};
    let file = sqlite_path(&c.uri).ok_or_else(|| LakeError::InvalidUrl {
        url: c.uri.clone(),
        reason: "not a SQLite catalog URI (sqlite:///path or a file path)".into(),
    })?;
    if !std::path::Path::new(&file).is_file() {
        return Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: format!("the SQL catalog database {file} does not exist"),
        });
    }
    let bad = |e: rusqlite::Error| LakeError::TableMetadata {
        table: table.to_owned(),
        file: file.clone(),
        reason: format!("SQL catalog: {e}"),
    };
    let conn = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(bad)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(bad)?;
    let row: Option<Option<String>> = conn
        .query_row(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
            [&c.catalog, &c.namespace, &c.table],
            |r| r.get(0),
        )
        .optional()
        .map_err(bad)?;
    match row {
        Some(Some(loc)) => Ok(loc),
        Some(None) => Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: "the catalog row has no metadata_location (a view or an unfinished create)"
                .into(),
        }),
        None => Err(LakeError::TableNotFound {
            table: table.to_owned(),
            reason: format!(
                "no table {}.{} in catalog {:?} of {file}",
                c.namespace, c.table, c.catalog
            ),
        }),
    }
}

#[cfg(not(feature = "iceberg-sql"))]
fn lookup_blocking(_c: &SqlCatalogTable, table: &str) -> Result<String> {
    Err(LakeError::Unsupported {
        table: table.to_owned(),
        feature: "Iceberg SQL catalogs".into(),
        detail: "this build has no `iceberg-sql` feature; address the table by its location or metadata file".into(),
    })
}

/// The file of a SQLAlchemy SQLite URI (`sqlite:///rel.db`,
/// `sqlite:////abs.db`) or a plain path.
#[cfg_attr(not(feature = "iceberg-sql"), allow(dead_code))]
fn sqlite_path(uri: &str) -> Option<String> {
    let rest = match uri.strip_prefix("sqlite:") {
        Some(r) => r.strip_prefix("///")?,
        None if !uri.contains("://") => uri,
        None => return None,
    };
    let rest = rest.split('?').next().unwrap_or_default();
    if rest.is_empty() || rest == ":memory:" {
        return None;
    }
    Some(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_uris() {
        assert_eq!(
            sqlite_path("sqlite:////tmp/c.db").as_deref(),
            Some("/tmp/c.db")
        );
        assert_eq!(sqlite_path("sqlite:///c.db").as_deref(), Some("c.db"));
        assert_eq!(sqlite_path("/tmp/c.db").as_deref(), Some("/tmp/c.db"));
        assert_eq!(sqlite_path("sqlite://"), None);
        assert_eq!(sqlite_path("sqlite:///:memory:"), None);
        assert_eq!(sqlite_path("postgresql://x/y"), None);
    }

    fn missing() -> SqlCatalogTable {
        SqlCatalogTable {
            uri: "sqlite:////nonexistent/rulake-test/catalog.db".into(),
            catalog: "c".into(),
            namespace: "db".into(),
            table: "t".into(),
        }
    }

    /// The answer is the same whichever way the lookup runs; only the
    /// thread it blocks differs.
    fn same_answer(r: Result<String>) {
        let err = r.unwrap_err();
        #[cfg(feature = "iceberg-sql")]
        assert!(matches!(err, LakeError::TableNotFound { .. }), "{err}");
        #[cfg(not(feature = "iceberg-sql"))]
        assert!(matches!(err, LakeError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn sync_lookup_outside_a_runtime() {
        same_answer(lookup_sync(&missing(), "t"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sync_lookup_on_a_current_thread_runtime_does_not_panic() {
        same_answer(lookup_sync(&missing(), "t"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_on_a_multi_thread_runtime() {
        same_answer(lookup_sync(&missing(), "t"));
        same_answer(lookup(&missing(), "t".into()).await);
        // From a blocking-pool thread too, where `block_in_place` just runs.
        let r = tokio::task::spawn_blocking(|| lookup_sync(&missing(), "t"))
            .await
            .unwrap();
        same_answer(r);
    }
}
