//! Field checks shared by several commands. They look at the command alone,
//! never at the catalog, so the same name or range is judged the same way
//! whichever command carries it; the command functions add the checks that
//! need the current state.

use super::{SourceKind, MAX_BATCH, MAX_NAME_LEN, MAX_REPLICATION};
use crate::error::CommandError;
use rulake_types::Consistency;

pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), CommandError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(CommandError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn check_url(field: &'static str, url: &str) -> Result<(), CommandError> {
    if url.trim().is_empty() {
        return Err(CommandError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

pub(super) fn check_batch(field: &'static str, items: &[String]) -> Result<(), CommandError> {
    if items.is_empty() {
        return Err(CommandError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if items.len() > MAX_BATCH {
        return Err(CommandError::InvalidField {
            field,
            reason: format!("{} items, at most {MAX_BATCH} per command", items.len()),
        });
    }
    if items.iter().any(|s| s.is_empty()) {
        return Err(CommandError::InvalidField {
            field,
            reason: "contains an empty string".into(),
        });
    }
    Ok(())
}

pub(super) fn check_consistency(c: &Consistency) -> Result<(), CommandError> {
    if let Consistency::Eventual { max_staleness } = c {
        if max_staleness.is_zero() {
            return Err(CommandError::InvalidField {
                field: "consistency.max_staleness",
                reason: "must be positive (use fresh for zero staleness)".into(),
            });
        }
    }
    Ok(())
}

pub(super) fn check_replication(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > MAX_REPLICATION {
        return Err(CommandError::InvalidField {
            field: "replication",
            reason: format!("{r}; must be in 1..={MAX_REPLICATION}"),
        });
    }
    Ok(())
}

pub(super) fn check_rerank(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > 1000 {
        return Err(CommandError::InvalidField {
            field: "rerank",
            reason: format!("{r}; must be in 1..=1000"),
        });
    }
    Ok(())
}

/// The fields a source of this kind needs are present (and, for Parquet,
/// the id and vector columns differ).
pub(super) fn check_source_kind(kind: &SourceKind) -> Result<(), CommandError> {
    kind.validate().map_err(|e| CommandError::InvalidField {
        field: e.field,
        reason: e.reason,
    })
}
