//! Commands on sources, managed commits included: a managed source's
//! commits live and die with the source, and only this file writes
//! `Catalog::managed`, so the rule "a managed source has a commit list,
//! nothing else does" is kept in one place.

use super::checks::{check_files, check_name, check_source};
use super::{Applied, Catalog, ManagedCommit, SourceKind, SourceRecord};
use crate::error::CommandError;
use std::collections::BTreeSet;

impl Catalog {
    /// [`super::Command::CreateSource`].
    pub(super) fn create_source(&mut self, src: SourceRecord) -> Result<Applied, CommandError> {
        check_source(&src)?;
        if self.sources.contains_key(&src.name) {
            return Err(CommandError::AlreadyExists {
                what: "source",
                name: src.name,
            });
        }
        if let SourceKind::Managed { prefix } = &src.kind {
            let clash = self.sources.values().any(|s| {
                matches!(&s.kind, SourceKind::Managed { prefix: p }
                    if p.starts_with(prefix.as_str()) || prefix.starts_with(p.as_str()))
            });
            if clash {
                return Err(CommandError::Conflict(format!(
                    "managed prefix {prefix:?} overlaps another managed source's prefix"
                )));
            }
            self.managed.insert(src.name.clone(), Vec::new());
        }
        self.sources.insert(src.name.clone(), src);
        Ok(Applied::Done)
    }

    /// [`super::Command::DropSource`].
    pub(super) fn drop_source(&mut self, name: String) -> Result<Applied, CommandError> {
        check_name("source", &name)?;
        if !self.sources.contains_key(&name) {
            return Err(CommandError::NotFound {
                what: "source",
                name,
            });
        }
        if let Some(c) = self.collections.values().find(|c| c.source == name) {
            return Err(CommandError::InUse {
                what: "source",
                name,
                by: format!("collection {:?}", c.name),
            });
        }
        self.sources.remove(&name);
        self.managed.remove(&name);
        Ok(Applied::Done)
    }

    /// [`super::Command::CommitManaged`].
    pub(super) fn commit_managed(
        &mut self,
        source: String,
        expected_seq: Option<u64>,
        files: Vec<String>,
    ) -> Result<Applied, CommandError> {
        let seq = self.next_managed_seq(&source, expected_seq)?;
        check_files(&files)?;
        self.check_new_files(&source, &files)?;
        self.managed
            .entry(source)
            .or_default()
            .push(ManagedCommit { seq, files });
        Ok(Applied::Committed { seq })
    }

    /// [`super::Command::CompactManaged`].
    pub(super) fn compact_managed(
        &mut self,
        source: String,
        expected_seq: u64,
        retired: Vec<String>,
        files: Vec<String>,
    ) -> Result<Applied, CommandError> {
        let seq = self.next_managed_seq(&source, Some(expected_seq))?;
        // `retired` may not be empty; `files` may (every row was deleted).
        check_files(&retired)?;
        if !files.is_empty() {
            check_files(&files)?;
        }
        self.check_new_files(&source, &files)?;
        let commits = self.managed.entry(source).or_default();
        let mut gone: BTreeSet<&str> = BTreeSet::new();
        for f in &retired {
            let committed = commits.iter().any(|c| c.files.contains(f));
            if !committed || !gone.insert(f) {
                return Err(CommandError::Conflict(format!(
                    "file {f:?} is not a visible file of this source (retired twice, or never committed)"
                )));
            }
        }
        // Checked above, so the removal below cannot half-apply.
        for c in commits.iter_mut() {
            c.files.retain(|f| !gone.contains(f.as_str()));
        }
        commits.push(ManagedCommit { seq, files });
        Ok(Applied::Committed { seq })
    }

    /// [`super::Command::RestoreManaged`].
    pub(super) fn restore_managed(
        &mut self,
        source: String,
        commits: Vec<ManagedCommit>,
    ) -> Result<Applied, CommandError> {
        self.next_managed_seq(&source, Some(1))?;
        let mut last = 0;
        let mut seen = BTreeSet::new();
        for c in &commits {
            if c.seq <= last {
                return Err(CommandError::InvalidField {
                    field: "commits",
                    reason: format!("sequence {} after {last}: sequences must increase", c.seq),
                });
            }
            last = c.seq;
            if !c.files.is_empty() {
                check_files(&c.files)?;
            }
            for f in &c.files {
                if !seen.insert(f.as_str()) {
                    return Err(CommandError::Conflict(format!(
                        "file {f:?} is in two commits"
                    )));
                }
            }
        }
        self.managed.insert(source, commits);
        Ok(Applied::Committed { seq: last })
    }

    /// The sequence the next commit of managed `source` gets, checked
    /// against the one the writer expects.
    fn next_managed_seq(&self, source: &str, expected: Option<u64>) -> Result<u64, CommandError> {
        check_name("source", source)?;
        match self.sources.get(source) {
            None => {
                return Err(CommandError::NotFound {
                    what: "source",
                    name: source.to_owned(),
                })
            }
            Some(s) if !matches!(s.kind, SourceKind::Managed { .. }) => {
                return Err(CommandError::Conflict(format!(
                    "source {source:?} is not managed"
                )))
            }
            Some(_) => {}
        }
        let seq = self.managed_seq(source) + 1;
        if let Some(given) = expected.filter(|g| *g != seq) {
            return Err(CommandError::StaleSequence {
                given,
                expected: seq,
            });
        }
        Ok(seq)
    }

    /// `files` repeat neither each other nor any file a commit of
    /// `source` ever named (names never repeat, see rulake-lake's
    /// `managed`).
    fn check_new_files(&self, source: &str, files: &[String]) -> Result<(), CommandError> {
        let mut seen = BTreeSet::new();
        let commits = self.managed.get(source).map(Vec::as_slice).unwrap_or(&[]);
        for f in files {
            let dup =
                !seen.insert(f.as_str()) || commits.iter().any(|c| c.files.iter().any(|g| g == f));
            if dup {
                return Err(CommandError::Conflict(format!(
                    "file {f:?} is already committed"
                )));
            }
        }
        Ok(())
    }
}
