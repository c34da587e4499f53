//! Two kinds of failure with different remedies: a [`CommandError`] is the
//! caller's fault and is deterministic (retrying the same command against the
//! same catalog fails the same way), while a [`CatalogError`] is about the
//! group (no leader, no quorum, storage, transport) and may pass.

use serde::{Deserialize, Serialize};

/// Why a catalog command was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid {what} name {name:?}: use 1 to 128 characters from [A-Za-z0-9_.-]")]
    InvalidName {
        /// Kind of object.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A field is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The object does not exist.
    #[error("{what} {name:?} does not exist")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The object already exists.
    #[error("{what} {name:?} already exists")]
    AlreadyExists {
        /// Kind of object.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The object is still referenced.
    #[error("{what} {name:?} is in use by {by}")]
    InUse {
        /// Kind of object.
        what: &'static str,
        /// Its name.
        name: String,
        /// Who uses it.
        by: String,
    },
    /// The command conflicts with the catalog.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An assignment's epoch is not the current epoch + 1.
    #[error("stale assignment epoch {given}: the next epoch is {expected}")]
    StaleEpoch {
        /// Epoch given.
        given: u64,
        /// Epoch required.
        expected: u64,
    },
    /// A managed commit's expected sequence is not the next one.
    #[error("stale managed commit sequence {given}: the next sequence is {expected}")]
    StaleSequence {
        /// Sequence given.
        given: u64,
        /// Sequence required.
        expected: u64,
    },
}

/// The kind of a rejection, which decides its gRPC status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// A malformed command (INVALID_ARGUMENT).
    Invalid,
    /// A missing object (NOT_FOUND).
    NotFound,
    /// A duplicate (ALREADY_EXISTS).
    AlreadyExists,
    /// A command the current catalog does not allow (FAILED_PRECONDITION).
    Precondition,
}

/// A [`CommandError`] as it is stored in a Raft response: a command that
/// raced another one after validating is rejected when applied, on every
/// replica alike, and the rejection travels back to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Its kind.
    pub kind: RejectionKind,
    /// The error's message.
    pub message: String,
}

impl From<&CommandError> for Rejection {
    fn from(e: &CommandError) -> Self {
        let kind = match e {
            CommandError::InvalidName { .. } | CommandError::InvalidField { .. } => {
                RejectionKind::Invalid
            }
            CommandError::NotFound { .. } => RejectionKind::NotFound,
            CommandError::AlreadyExists { .. } => RejectionKind::AlreadyExists,
            CommandError::InUse { .. }
            | CommandError::Conflict(_)
            | CommandError::StaleEpoch { .. }
            | CommandError::StaleSequence { .. } => RejectionKind::Precondition,
        };
        Rejection {
            kind,
            message: e.to_string(),
        }
    }
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The command was rejected; nothing was written.
    #[error("rejected: {0}")]
    Rejected(#[from] CommandError),
    /// No member could serve the call: no leader, or the leader cannot reach
    /// a quorum. A write that failed this way may or may not have committed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A member rejected the command (the message says why); nothing was written.
    #[error("rejected: {}", .0.message)]
    Refused(Rejection),
    /// The call failed in a way that does not tell whether a write
    /// committed (e.g. the leader died after proposing it). Read to find out.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// A bad argument that is not a catalog command (e.g. a malformed member list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The local store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Encoding or decoding a message failed.
    #[error("codec: {0}")]
    Codec(#[from] serde_json::Error),
    /// Raft itself failed (fatal, or a membership change was refused).
    #[error("raft: {0}")]
    Raft(String),
    /// Transport failure talking to a member.
    #[error("transport: {0}")]
    Transport(String),
}

impl From<redb::Error> for CatalogError {
    fn from(e: redb::Error) -> Self {
        CatalogError::Storage(e.to_string())
    }
}
