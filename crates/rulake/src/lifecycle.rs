//! The data-lifecycle commands: `delete`, `compact`, `lineage` and
//! `backup create` against a running server, `backup list` and `verify`,
//! which read a backup directly, and `backup restore`, into a running
//! server or cluster with an empty catalog or offline into a new data
//! directory. Apart from `cli`
//! because they are about what is stored and where it came from rather
//! than what is served, and their output is a report, not a table.

use crate::cli::Conn;
use rulake_client::Id;
use std::time::Duration;

/// `rulake delete` options.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Collection or alias.
    #[arg(long)]
    pub collection: String,
    /// Ids to delete; integers unless --string-ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Take every id as a string, digits included.
    #[arg(long)]
    pub string_ids: bool,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `rulake compact` options.
#[derive(clap::Args)]
pub struct CompactArgs {
    /// Collection (or alias) to compact. A managed collection's files are
    /// rewritten; an external one only has the tombstones of rows its
    /// table dropped retired.
    #[arg(long)]
    pub collection: String,
    /// Give up waiting after this many seconds (the compaction itself
    /// runs to its end on the server).
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `rulake lineage` options.
#[derive(clap::Args)]
pub struct LineageArgs {
    /// Collection or alias.
    pub name: String,
    /// The generation an answer named; refused unless it is the one
    /// served (default: the one served).
    #[arg(long, default_value = "")]
    pub generation: String,
    /// `text`, or `json` (the DescribeGeneration reply as JSON).
    #[arg(long, default_value = "text")]
    pub format: String,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `rulake backup ...`
#[derive(clap::Subcommand)]
pub enum Backup {
    /// Back up a running server's catalog and managed files to a new location.
    Create {
        /// Where (a path or URL under the server's --backup-allow).
        #[arg(long)]
        to: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
    /// List the backups directly under a location.
    List {
        /// The parent location.
        #[arg(long)]
        from: String,
    },
    /// Check a backup whole (every file's checksum) without restoring it.
    Verify {
        /// The backup.
        #[arg(long)]
        from: String,
    },
    /// Restore a backup: into a running server or cluster whose catalog is
    /// empty (through its API; the location must be under its
    /// --backup-allow), or, with --data-dir, offline into a new data
    /// directory for `rulake serve`.
    Restore {
        /// The backup.
        #[arg(long)]
        from: String,
        /// Restore offline into this new data directory (absent or empty)
        /// instead of into a running server.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// With --data-dir: where managed collections' files go (default:
        /// under the data directory).
        #[arg(long, requires = "data_dir")]
        managed_url: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
        /// The server (without --data-dir).
        #[command(flatten)]
        conn: Conn,
    },
}

/// An id as the command line gives it.
fn parse_id(s: &str, strings: bool) -> Id {
    match s.parse::<u64>() {
        Ok(n) if !strings => Id::Num(n),
        _ => Id::Str(s.to_owned()),
    }
}

/// Run `rulake delete`.
pub async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let ids = a.ids.iter().map(|s| parse_id(s, a.string_ids)).collect();
    let added = a.conn.client().await?.delete(&a.collection, ids).await?;
    println!(
        "deleted {added} ids from {} (tombstoned; `rulake compact` removes the rows)",
        a.collection
    );
    Ok(())
}

/// Run `rulake compact`.
pub async fn compact(a: CompactArgs) -> anyhow::Result<()> {
    let client = a
        .conn
        .client()
        .await?
        .with_timeout(Duration::from_secs(a.timeout_secs));
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} files read, {msg} ({elapsed})",
        )
        .expect("static template"),
    );
    let b = bar.clone();
    let r = client
        .compact(&a.collection, move |p| {
            b.set_length(p.files_total);
            b.set_position(p.files_scanned);
            b.set_message(format!("{} deleted rows found", p.rows_dropped));
        })
        .await;
    bar.finish_and_clear();
    let s = r?;
    if s.generation.is_empty() && s.tombstones_retired > 0 {
        println!(
            "{}: {} tombstones retired (their rows are gone from the source); no file rewritten",
            a.collection, s.tombstones_retired
        );
        return Ok(());
    }
    if s.generation.is_empty() {
        println!(
            "{}: nothing to compact ({} files read, no deleted rows, too few small files)",
            a.collection, s.files_scanned
        );
        return Ok(());
    }
    println!(
        "compacted {}: generation {}; {} files read, {} rewritten into {}; {} rows kept, {} deleted rows dropped; {} tombstones retired",
        a.collection,
        s.generation,
        s.files_scanned,
        s.files_retired,
        s.files_written,
        s.rows_kept,
        s.rows_dropped,
        s.tombstones_retired
    );
    if !s.retired_files_deleted {
        println!(
            "the new generation is not loaded everywhere yet: the replaced files stay until the sweeper deletes them"
        );
    }
    Ok(())
}

/// Run `rulake lineage`.
pub async fn lineage(a: LineageArgs) -> anyhow::Result<()> {
    let r = a
        .conn
        .client()
        .await?
        .describe_generation(&a.name, &a.generation)
        .await?;
    match a.format.as_str() {
        "json" => println!("{}", lineage_json(&r)),
        "text" => print!("{}", lineage_text(&r)),
        other => anyhow::bail!("--format {other:?}: text or json"),
    }
    Ok(())
}

fn lineage_json(r: &rulake_client::proto::DescribeGenerationResponse) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = r
        .objects
        .iter()
        .map(|o| {
            serde_json::json!({
                "path": o.path,
                "size_bytes": o.size_bytes,
                "version": o.version,
                "rows": o.rows,
                "row_groups": o.row_groups,
            })
        })
        .collect();
    serde_json::json!({
        "collection": r.collection,
        "generation": r.generation,
        "source_kind": r.source_kind,
        "source": r.source,
        "pinned_version": r.pinned_version,
        "rows": r.rows,
        "tombstones": r.tombstones,
        "loaded_at_unix_ms": r.loaded_at_unix_ms,
        "objects": objects,
    })
}

fn lineage_text(r: &rulake_client::proto::DescribeGenerationResponse) -> String {
    let mut out = format!(
        "collection {}: generation {} of {} source {}{}\n{} rows in {} objects; {} tombstones; loaded at {} ms since the epoch\n",
        r.collection,
        r.generation,
        r.source_kind,
        r.source,
        if r.pinned_version.is_empty() {
            String::new()
        } else {
            format!(" (pinned to {})", r.pinned_version)
        },
        r.rows,
        r.objects.len(),
        r.tombstones,
        r.loaded_at_unix_ms
    );
    for o in &r.objects {
        out.push_str(&format!(
            "  {}  {} bytes  {} rows in {} row groups  version {}\n",
            o.path,
            o.size_bytes,
            o.rows,
            o.row_groups.len(),
            if o.version.is_empty() {
                "-"
            } else {
                &o.version
            }
        ));
    }
    out
}

/// A progress bar for a backup, restore or check of `what`.
fn backup_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} files {what}, {{msg}} ({{elapsed}})"
        ))
        .expect("static template"),
    );
    bar
}

/// Move `bar` to where a backup, restore or check stands.
fn show(bar: &indicatif::ProgressBar, done: u64, total: u64, bytes: u64) {
    bar.set_length(total);
    bar.set_position(done);
    bar.set_message(format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64));
}

/// Run `rulake backup ...`.
pub async fn backup(b: Backup) -> anyhow::Result<()> {
    use rulake_coordinator::backup;
    match b {
        Backup::Create {
            to,
            timeout_secs,
            conn,
        } => {
            let s = backup_call(&conn, timeout_secs, "copied", false, &to).await?;
            println!("backed up {} to {}", summary(&s), s.location);
        }
        Backup::List { from } => {
            for (at, m) in backup::list_backups(&from).await? {
                let bytes: u64 = m.files.iter().map(|f| f.bytes).sum::<u64>() + m.catalog.bytes;
                println!(
                    "{at}  created {} ms since the epoch  {} collections ({})  {} files  {bytes} bytes",
                    m.created_unix_ms,
                    m.collections.len(),
                    m.collections.join(", "),
                    m.files.len() + 1
                );
            }
        }
        Backup::Verify { from } => {
            let bar = backup_bar("checked");
            let b = bar.clone();
            let r = backup::read_backup(&from, &move |p| {
                show(&b, p.files_done, p.files_total, p.bytes_done)
            })
            .await;
            bar.finish_and_clear();
            let (m, _, _) = r?;
            println!(
                "{from}: a whole backup of {} collections, {} files, every checksum matches",
                m.collections.len(),
                m.files.len() + 1
            );
        }
        Backup::Restore {
            from,
            data_dir: Some(data_dir),
            managed_url,
            ..
        } => restore(&from, &data_dir, managed_url).await?,
        Backup::Restore {
            from,
            data_dir: None,
            timeout_secs,
            conn,
            ..
        } => {
            let s = backup_call(&conn, timeout_secs, "checked, then restored", true, &from).await?;
            println!(
                "restored {} from {} into {}",
                summary(&s),
                s.location,
                conn.addr
            );
        }
    }
    Ok(())
}

/// A backup (or, with `restore`, a restore) of `location` through the
/// server at `conn`, its progress shown as `what`.
async fn backup_call(
    conn: &Conn,
    timeout_secs: u64,
    what: &str,
    restore: bool,
    location: &str,
) -> anyhow::Result<rulake_client::proto::BackupSummary> {
    let client = conn
        .client()
        .await?
        .with_timeout(Duration::from_secs(timeout_secs));
    let bar = backup_bar(what);
    let b = bar.clone();
    let progress = move |p: &rulake_client::proto::BackupProgress| {
        show(&b, p.files_done, p.files_total, p.bytes_done)
    };
    let r = if restore {
        client.restore_backup(location, progress).await
    } else {
        client.create_backup(location, progress).await
    };
    bar.finish_and_clear();
    Ok(r?)
}

/// "N collections (a, b): F files, B bytes".
fn summary(s: &rulake_client::proto::BackupSummary) -> String {
    format!(
        "{} collections ({}): {} files, {} bytes",
        s.collections.len(),
        s.collections.join(", "),
        s.files,
        s.bytes
    )
}

/// Restore `from` into the new data directory `data_dir`; on any error
/// the directory is removed again, so nothing is half-restored.
async fn restore(
    from: &str,
    data_dir: &std::path::Path,
    managed_url: Option<String>,
) -> anyhow::Result<()> {
    let fresh = std::fs::read_dir(data_dir).map_or(true, |mut d| d.next().is_none());
    if !fresh {
        anyhow::bail!(
            "{}: not empty; a backup is restored only into a new data directory",
            data_dir.display()
        );
    }
    // Checked whole before anything is written.
    let bar = backup_bar("checked");
    let b = bar.clone();
    let checked = rulake_coordinator::backup::read_backup(from, &move |p| {
        show(&b, p.files_done, p.files_total, p.bytes_done)
    })
    .await;
    bar.finish_and_clear();
    checked?;
    let run = async {
        let mut cfg = rulake_coordinator::EmbeddedConfig::new(data_dir);
        cfg.cache_bytes = 256 << 20;
        cfg.managed_root = managed_url;
        let node = rulake_coordinator::Embedded::start(cfg).await?;
        let bar = backup_bar("restored");
        let b = bar.clone();
        let r = node
            .coordinator
            .restore(from, &move |p| {
                show(&b, p.files_done, p.files_total, p.bytes_done)
            })
            .await;
        bar.finish_and_clear();
        node.shutdown().await;
        anyhow::Ok(r?)
    };
    match run.await {
        Ok(m) => {
            println!(
                "restored {} collections ({}) from {from} into {}; start it with `rulake serve --data-dir {}`",
                m.collections.len(),
                m.collections.join(", "),
                data_dir.display(),
                data_dir.display()
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(data_dir);
            Err(e.context(format!(
                "restoring {from}; {} was removed again",
                data_dir.display()
            )))
        }
    }
}
