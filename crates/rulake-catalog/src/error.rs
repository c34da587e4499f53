//! Two kinds of failure with different remedies: a [`CommandError`] is the
//! caller's fault and is deterministic (retrying the same command against the
//! same catalog fails the same way), while a [`CatalogError`] is about the
//! group (no leader, no quorum, storage, transport) and may pass.
//!
//! Each error type here also says which gRPC status it becomes, next to its
//! definition, so the catalog's own service and RuLake's public API cannot
//! drift apart: the member's `CatalogService`, the client that decodes its
//! replies and `rulake-api` all use these conversions, and a new variant
//! cannot compile until it is given a code.

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// Why a catalog command was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A name is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "invalid {what} name {name:?}: use 1 to {} characters from [A-Za-z0-9_.-]",
        crate::limits::MAX_NAME_LEN
    )]
    InvalidName {
        /// Kind of object.
        what: &'static str,
        /// The name given (only its beginning, when it is long).
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

impl CommandError {
    /// The kind of rejection this error is.
    pub fn kind(&self) -> RejectionKind {
        match self {
            CommandError::InvalidName { .. } | CommandError::InvalidField { .. } => {
                RejectionKind::Invalid
            }
            CommandError::NotFound { .. } => RejectionKind::NotFound,
            CommandError::AlreadyExists { .. } => RejectionKind::AlreadyExists,
            CommandError::InUse { .. }
            | CommandError::Conflict(_)
            | CommandError::StaleEpoch { .. }
            | CommandError::StaleSequence { .. } => RejectionKind::Precondition,
        }
    }
}

impl RejectionKind {
    /// Every kind: [`RejectionKind::from_code`] inverts [`RejectionKind::code`]
    /// over these, so the table is written once.
    const ALL: [RejectionKind; 4] = [
        RejectionKind::Invalid,
        RejectionKind::NotFound,
        RejectionKind::AlreadyExists,
        RejectionKind::Precondition,
    ];

    /// The gRPC code a rejection of this kind travels as.
    pub fn code(self) -> Code {
        match self {
            RejectionKind::Invalid => Code::InvalidArgument,
            RejectionKind::NotFound => Code::NotFound,
            RejectionKind::AlreadyExists => Code::AlreadyExists,
            RejectionKind::Precondition => Code::FailedPrecondition,
        }
    }

    /// The kind whose [`RejectionKind::code`] is `code`, if any: how a
    /// client tells a rejection from a failure of the group.
    pub fn from_code(code: Code) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl From<&CommandError> for Rejection {
    fn from(e: &CommandError) -> Self {
        Rejection {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl Rejection {
    /// The rejection a status carries, if its code is a rejection's.
    pub fn from_status(s: &Status) -> Option<Self> {
        RejectionKind::from_code(s.code()).map(|kind| Rejection {
            kind,
            message: s.message().to_owned(),
        })
    }
}

impl From<&Rejection> for Status {
    fn from(r: &Rejection) -> Self {
        Status::new(r.kind.code(), r.message.clone())
    }
}

impl From<Rejection> for Status {
    fn from(r: Rejection) -> Self {
        Status::from(&r)
    }
}

impl From<&CommandError> for Status {
    fn from(e: &CommandError) -> Self {
        Status::from(Rejection::from(e))
    }
}

impl From<CommandError> for Status {
    fn from(e: CommandError) -> Self {
        Status::from(&e)
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

impl From<&CatalogError> for Status {
    /// The status RuLake's public API answers with when the catalog failed.
    fn from(e: &CatalogError) -> Self {
        match e {
            CatalogError::Refused(r) => Status::from(r),
            CatalogError::Rejected(c) => Status::from(c),
            CatalogError::InvalidArgument(m) => Status::invalid_argument(m.clone()),
            CatalogError::Unavailable(_) | CatalogError::Transport(_) => {
                Status::unavailable(format!("catalog: {e}"))
            }
            // Retrying blindly could apply a write twice: say so.
            CatalogError::Indeterminate(_) => Status::unknown(format!(
                "catalog: {e}; read the collection back before retrying"
            )),
            CatalogError::Storage(_) | CatalogError::Codec(_) | CatalogError::Raft(_) => {
                Status::internal(format!("catalog: {e}"))
            }
        }
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        Status::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_codes_round_trip() {
        for k in RejectionKind::ALL {
            assert_eq!(RejectionKind::from_code(k.code()), Some(k));
        }
        for c in [Code::Ok, Code::Unavailable, Code::Unknown, Code::Internal] {
            assert_eq!(RejectionKind::from_code(c), None);
        }
    }

    #[test]
    fn a_rejection_travels_as_a_status_and_back() {
        let e = CommandError::StaleEpoch {
            given: 3,
            expected: 2,
        };
        let s = Status::from(&e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), e.to_string());
        assert_eq!(Rejection::from_status(&s), Some(Rejection::from(&e)));
    }

    #[test]
    fn catalog_errors_keep_their_codes() {
        let cases = [
            (CatalogError::Unavailable("x".into()), Code::Unavailable),
            (CatalogError::Transport("x".into()), Code::Unavailable),
            (CatalogError::Indeterminate("x".into()), Code::Unknown),
            (
                CatalogError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (CatalogError::Storage("x".into()), Code::Internal),
            (CatalogError::Raft("x".into()), Code::Internal),
            (
                CatalogError::Rejected(CommandError::Conflict("x".into())),
                Code::FailedPrecondition,
            ),
            (
                CatalogError::Refused(Rejection {
                    kind: RejectionKind::NotFound,
                    message: "x".into(),
                }),
                Code::NotFound,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(&e).code(), code, "{e}");
        }
    }
}
