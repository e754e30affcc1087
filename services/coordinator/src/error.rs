//! The coordinator's one error type, named by outcome. Every domain and
//! engine path returns it; the adapters map it to a gRPC or HTTP status in
//! one place (`adapters::status`). Internal causes are logged there, never
//! sent to clients.

use crate::domain::IllegalTransition;

/// Everything a coordinator operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message starts with the offending field.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// Creating something whose name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A status change the state machine does not allow, on `what`.
    #[error("{what} {cause}")]
    IllegalTransition {
        what: String,
        cause: IllegalTransition,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A peer (a runner) took longer than the protocol allows.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The call was superseded (a newer stream of the same runner).
    #[error("{0}")]
    Aborted(String),
    /// A watcher missed events and must start again.
    #[error("{0}")]
    DataLoss(String),
    /// The coordinator is shutting down or the database is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// A position past what is allowed (a blob upload leaving a gap).
    #[error("{0}")]
    OutOfRange(String),
    /// A bug or an unexpected database failure.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// An INVALID_ARGUMENT error about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The Testrun `id` does not exist.
    pub fn testrun_not_found(id: i64) -> Self {
        Self::NotFound(format!("testrun {id} not found"))
    }

    /// An illegal transition of Testrun `id`.
    pub fn testrun_transition(id: i64, cause: IllegalTransition) -> Self {
        Self::IllegalTransition {
            what: format!("testrun {id}"),
            cause,
        }
    }

    /// The same error again, for answering several waiters with one
    /// failure (an internal cause is kept as its text).
    pub fn share(&self) -> Self {
        match self {
            Self::InvalidArgument { field, message } => Self::invalid(field, message),
            Self::NotFound(m) => Self::NotFound(m.clone()),
            Self::AlreadyExists(m) => Self::AlreadyExists(m.clone()),
            Self::FailedPrecondition(m) => Self::FailedPrecondition(m.clone()),
            Self::IllegalTransition { what, cause } => Self::IllegalTransition {
                what: what.clone(),
                cause: *cause,
            },
            Self::Unauthenticated(m) => Self::Unauthenticated(m.clone()),
            Self::ResourceExhausted(m) => Self::ResourceExhausted(m.clone()),
            Self::DeadlineExceeded(m) => Self::DeadlineExceeded(m.clone()),
            Self::Aborted(m) => Self::Aborted(m.clone()),
            Self::DataLoss(m) => Self::DataLoss(m.clone()),
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::OutOfRange(m) => Self::OutOfRange(m.clone()),
            Self::Internal(cause) => Self::Internal(anyhow::anyhow!("{cause:#}")),
        }
    }
}

/// Result of coordinator operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
