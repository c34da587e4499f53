//! Checking a chain: every line well formed, numbered one after the other,
//! and naming the hash of the line before it. Rotated files are given
//! oldest first (`audit.log.2 audit.log.1 audit.log`), and the chain must
//! run on from one to the next.

use crate::{hash, Line, GENESIS};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What a chain that verified holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Lines checked.
    pub lines: u64,
    /// Sequence number of the first line given.
    pub first_seq: u64,
    /// Sequence number of the last line.
    pub last_seq: u64,
    /// Whether the first line given is the chain's first (seq 0, `prev`
    /// the genesis value). When it is not, the lines before it are in a
    /// file not given (rotated away, or not passed), so it cannot be
    /// checked against its predecessor; every later line is.
    pub from_genesis: bool,
}

/// Where a chain is broken, or why it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not an audit record (edited by hand, or torn by a crash).
    #[error("{path}:{line}: not an audit record: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line number in it (from 1).
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// A line does not follow the one before it.
    #[error("{path}:{line}: the chain is broken at seq {seq}: {why}")]
    Broken {
        /// The file.
        path: PathBuf,
        /// Line number in it (from 1).
        line: usize,
        /// The line's sequence number.
        seq: u64,
        /// What does not match.
        why: String,
    },
    /// Nothing to check.
    #[error("no audit records in the files given")]
    Empty,
}

/// Check the chain through `paths` (oldest first).
pub fn verify(paths: &[PathBuf]) -> Result<Summary, VerifyError> {
    let mut summary: Option<Summary> = None;
    let mut prev_hash = String::new();
    for path in paths {
        let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
            path: path.clone(),
            source,
        })?;
        for (i, text) in BufReader::new(file).lines().enumerate() {
            let text = text.map_err(|source| VerifyError::Io {
                path: path.clone(),
                source,
            })?;
            let n = i + 1;
            let line: Line = serde_json::from_str(&text).map_err(|e| VerifyError::Malformed {
                path: path.clone(),
                line: n,
                why: e.to_string(),
            })?;
            match &mut summary {
                None => {
                    let from_genesis = line.seq == 0;
                    if from_genesis && line.prev != GENESIS {
                        return Err(broken(path, n, &line, "the first line names a predecessor"));
                    }
                    summary = Some(Summary {
                        lines: 1,
                        first_seq: line.seq,
                        last_seq: line.seq,
                        from_genesis,
                    });
                }
                Some(s) => {
                    if line.seq != s.last_seq + 1 {
                        let why =
                            format!("expected seq {} (a line removed or moved)", s.last_seq + 1);
                        return Err(broken(path, n, &line, &why));
                    }
                    if line.prev != prev_hash {
                        let why = "prev is not the hash of the line before (that line was edited)";
                        return Err(broken(path, n, &line, why));
                    }
                    s.lines += 1;
                    s.last_seq = line.seq;
                }
            }
            prev_hash = hash(&text);
        }
    }
    summary.ok_or(VerifyError::Empty)
}

fn broken(path: &Path, line: usize, l: &Line, why: &str) -> VerifyError {
    VerifyError::Broken {
        path: path.to_owned(),
        line,
        seq: l.seq,
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::event;
    use crate::{AuditLog, Sink};

    /// A log of five lines in one file, and its lines.
    fn written(dir: &Path) -> (PathBuf, Vec<String>) {
        let path = dir.join("audit.log");
        let log = AuditLog::open(&Sink::File {
            path: path.clone(),
            max_bytes: 0,
            keep: 0,
        })
        .unwrap();
        for i in 0..5 {
            log.record(event("DeleteAlias", &format!("a{i}")));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text.lines().map(str::to_owned).collect())
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_untouched_log_verifies_from_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path());
        let s = verify(&[path]).unwrap();
        assert_eq!(
            s,
            Summary {
                lines: 5,
                first_seq: 0,
                last_seq: 4,
                from_genesis: true
            }
        );
    }

    #[test]
    fn an_edited_line_is_found_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut lines) = written(dir.path());
        lines[2] = lines[2].replace("alice", "mallory");
        rewrite(&path, &lines);
        match verify(&[path]) {
            Err(VerifyError::Broken {
                line: 4, seq: 3, ..
            }) => {}
            other => panic!("expected a break at line 4, got {other:?}"),
        }
    }

    #[test]
    fn a_removed_or_reordered_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = written(dir.path());
        let mut removed = lines.clone();
        removed.remove(1);
        rewrite(&path, &removed);
        assert!(matches!(
            verify(std::slice::from_ref(&path)),
            Err(VerifyError::Broken { line: 2, .. })
        ));
        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        rewrite(&path, &swapped);
        assert!(matches!(
            verify(std::slice::from_ref(&path)),
            Err(VerifyError::Broken { line: 4, .. })
        ));
        // Renumbering after a removal does not help: the hashes still break.
        let mut renumbered = lines.clone();
        renumbered.remove(1);
        for (i, l) in renumbered.iter_mut().enumerate() {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"] = i.into();
            *l = v.to_string();
        }
        rewrite(&path, &renumbered);
        assert!(matches!(
            verify(std::slice::from_ref(&path)),
            Err(VerifyError::Broken { line: 2, .. })
        ));
    }

    #[test]
    fn a_first_line_removed_is_no_longer_from_genesis_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lines) = written(dir.path());
        rewrite(&path, &lines[1..]);
        let s = verify(std::slice::from_ref(&path)).unwrap();
        assert!(!s.from_genesis, "the chain no longer starts at seq 0");
        assert_eq!(s.first_seq, 1);
        std::fs::write(&path, "{\"seq\":0}\n").unwrap();
        assert!(matches!(
            verify(std::slice::from_ref(&path)),
            Err(VerifyError::Malformed { line: 1, .. })
        ));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(verify(&[path]), Err(VerifyError::Empty)));
    }
}
