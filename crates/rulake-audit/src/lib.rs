//! The audit log: who changed what, when, and how it ended.
//!
//! Operators of a shared store are asked, after the fact, who dropped a
//! collection, who re-pointed an alias, who was refused and how often. The
//! answer has to survive the people it is about: a log that anyone with
//! write access to the file can edit quietly proves little. So every line
//! carries the SHA-256 of the line before it (`prev`) and a sequence
//! number (`seq`): an edited or removed line breaks the chain at the next
//! one, and [`verify`] (`rulake audit verify FILE...`) says where. What a
//! chain cannot show is lines cut off the end; ship the log off the node
//! (stdout to a collector, or the file to a store) if that matters.
//!
//! One JSON object per line, so a log collector needs no parser of ours:
//! `seq`, `time` (RFC 3339, UTC, milliseconds), `principal`, `action` (the
//! call), `resource` (what it named), `request_id`, `trace_id` (W3C, to
//! find the call's spans and logs), `outcome` (`OK` or the gRPC code), and
//! `prev`. A file sink rotates at a size (`audit.log` → `audit.log.1` →
//! …), and the chain and the numbering run on across files and restarts.
//!
//! Writing is best effort from the caller's side: the call being audited
//! has already happened when its outcome is known, so a failed write is
//! logged as an error rather than turned into the call's failure.

mod verify;

pub use verify::{verify, Summary, VerifyError};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `prev` of the very first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited call, as the server knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Who called: the authenticated subject, or `anonymous`.
    pub principal: String,
    /// What was called (the RPC's name, e.g. `DropCollection`).
    pub action: String,
    /// What it named (a collection, an alias, `*` for the cluster).
    pub resource: String,
    /// The call's id (unique per call on this server).
    pub request_id: String,
    /// The W3C trace id the call ran under.
    pub trace_id: String,
    /// `OK`, or the gRPC status code it ended with.
    pub outcome: String,
}

/// A line as written and read back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Line {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) principal: String,
    pub(crate) action: String,
    pub(crate) resource: String,
    pub(crate) request_id: String,
    pub(crate) trace_id: String,
    pub(crate) outcome: String,
    pub(crate) prev: String,
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Standard output, for a log collector. The chain starts afresh at
    /// each start of the process.
    Stdout,
    /// A file, appended to (the chain goes on from its last line), rotated
    /// once it would grow past `max_bytes` (0: never), keeping `keep`
    /// rotated files beside it.
    File {
        /// The live file.
        path: PathBuf,
        /// Size at which it is rotated.
        max_bytes: u64,
        /// Rotated files kept (`path.1` the newest).
        keep: u32,
    },
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file (or a rotated one) could not be read, created or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct State {
    next_seq: u64,
    prev: String,
    out: Out,
}

enum Out {
    Stdout,
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
        file: File,
        size: u64,
    },
}

/// An open audit log. Shared by every handler of a server; one line is
/// written at a time, so the chain has one order.
pub struct AuditLog {
    state: Mutex<State>,
}

impl AuditLog {
    /// Open `sink`; a file sink goes on from the chain already in it (or,
    /// when it was just rotated away, in `path.1`).
    pub fn open(sink: &Sink) -> Result<AuditLog, AuditError> {
        let state = match sink {
            Sink::Stdout => State {
                next_seq: 0,
                prev: GENESIS.to_owned(),
                out: Out::Stdout,
            },
            Sink::File {
                path,
                max_bytes,
                keep,
            } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                let (next_seq, prev) = match last_line(path)? {
                    Some(l) => l,
                    None => last_line(&rotated(path, 1))?.unwrap_or((0, GENESIS.to_owned())),
                };
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io(path))?;
                let size = file.metadata().map_err(io(path))?.len();
                State {
                    next_seq,
                    prev,
                    out: Out::File {
                        path: path.clone(),
                        max_bytes: *max_bytes,
                        keep: *keep,
                        file,
                        size,
                    },
                }
            }
        };
        Ok(AuditLog {
            state: Mutex::new(state),
        })
    }

    /// Append `event` as the chain's next line. A write that fails is
    /// logged; the call it describes has already happened.
    pub fn record(&self, event: Event) {
        if let Err(e) = self.append(event, now_rfc3339()) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    fn append(&self, e: Event, time: String) -> Result<(), AuditError> {
        let mut st = self.state.lock();
        let line = Line {
            seq: st.next_seq,
            time,
            principal: e.principal,
            action: e.action,
            resource: e.resource,
            request_id: e.request_id,
            trace_id: e.trace_id,
            outcome: e.outcome,
            prev: st.prev.clone(),
        };
        let text = serde_json::to_string(&line).expect("a line of strings serializes");
        let bytes = format!("{text}\n");
        match &mut st.out {
            Out::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(io(Path::new("stdout")))?;
            }
            Out::File {
                path,
                max_bytes,
                keep,
                file,
                size,
            } => {
                if *max_bytes > 0 && *size > 0 && *size + bytes.len() as u64 > *max_bytes {
                    rotate(path, *keep)?;
                    *file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&*path)
                        .map_err(io(path))?;
                    *size = 0;
                }
                file.write_all(bytes.as_bytes()).map_err(io(path))?;
                *size += bytes.len() as u64;
            }
        }
        st.next_seq += 1;
        st.prev = hash(&text);
        Ok(())
    }
}

/// SHA-256 of a line's text (without its newline), in hex.
pub(crate) fn hash(line: &str) -> String {
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `path.n`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Shift `path.1..` up by one (dropping what passes `keep`), then `path`
/// to `path.1`. With `keep` 0 the live file is simply started afresh.
fn rotate(path: &Path, keep: u32) -> Result<(), AuditError> {
    if keep == 0 {
        return std::fs::remove_file(path).map_err(io(path));
    }
    let oldest = rotated(path, keep);
    if oldest.exists() {
        std::fs::remove_file(&oldest).map_err(io(&oldest))?;
    }
    for n in (1..keep).rev() {
        let from = rotated(path, n);
        if from.exists() {
            let to = rotated(path, n + 1);
            std::fs::rename(&from, &to).map_err(io(&from))?;
        }
    }
    let first = rotated(path, 1);
    std::fs::rename(path, &first).map_err(io(path))
}

/// The next sequence number and `prev` after the last complete line of
/// `path`, if it has one.
fn last_line(path: &Path) -> Result<Option<(u64, String)>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut last = None;
    for text in BufReader::new(file).lines() {
        let text = text.map_err(io(path))?;
        if let Ok(line) = serde_json::from_str::<Line>(&text) {
            last = Some((line.seq + 1, hash(&text)));
        }
    }
    Ok(last)
}

/// Now as RFC 3339 in UTC with milliseconds.
fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// `secs` since the Unix epoch as RFC 3339 (proleptic Gregorian, UTC).
fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(action: &str, resource: &str) -> Event {
        Event {
            principal: "alice".into(),
            action: action.into(),
            resource: resource.into(),
            request_id: "r1".into(),
            trace_id: "t1".into(),
            outcome: "OK".into(),
        }
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 12:34:56.789 UTC.
        assert_eq!(rfc3339(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_chain_goes_on_across_a_reopen_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = Sink::File {
            path: path.clone(),
            max_bytes: 600,
            keep: 2,
        };
        let log = AuditLog::open(&sink).unwrap();
        for i in 0..3 {
            log.record(event("CreateCollection", &format!("c{i}")));
        }
        drop(log);
        let log = AuditLog::open(&sink).unwrap();
        for i in 3..12 {
            log.record(event("DropCollection", &format!("c{i}")));
        }
        drop(log);
        let files = [rotated(&path, 2), rotated(&path, 1), path.clone()];
        assert!(files.iter().all(|f| f.exists()), "rotated twice");
        assert!(!rotated(&path, 3).exists(), "only two rotated files kept");
        let s = verify(&files).unwrap();
        assert_eq!(s.last_seq, 11);
        assert!(
            s.lines >= 3 && s.first_seq > 0,
            "the oldest lines rotated away: {s:?}"
        );
        // The live file alone verifies too; its first line's predecessor
        // is in a file not given, which the summary says.
        let live = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!(live.last_seq, 11);
        assert!(!live.from_genesis);
    }
}
