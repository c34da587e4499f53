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
        check_name("source", &source)?;
        match self.sources.get(&source) {
            None => {
                return Err(CommandError::NotFound {
                    what: "source",
                    name: source,
                })
            }
            Some(s) if !matches!(s.kind, SourceKind::Managed { .. }) => {
                return Err(CommandError::Conflict(format!(
                    "source {source:?} is not managed"
                )))
            }
            Some(_) => {}
        }
        check_files(&files)?;
        let seq = self.managed_seq(&source) + 1;
        if let Some(given) = expected_seq.filter(|g| *g != seq) {
            return Err(CommandError::StaleSequence {
                given,
                expected: seq,
            });
        }
        let mut seen = BTreeSet::new();
        // `create_source` made this entry, so a rejection below changes nothing.
        let commits = self.managed.entry(source).or_default();
        for f in &files {
            let dup =
                !seen.insert(f.as_str()) || commits.iter().any(|c| c.files.iter().any(|g| g == f));
            if dup {
                return Err(CommandError::Conflict(format!(
                    "file {f:?} is already committed"
                )));
            }
        }
        commits.push(ManagedCommit { seq, files });
        Ok(Applied::Committed { seq })
    }
}
