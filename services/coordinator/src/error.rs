//! The coordinator's error type, named by outcome and mapped to a gRPC status
//! in one place. Internal causes are logged, never sent to clients.

use tonic::{Code, Status};

/// Everything a coordinator operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message starts with the offending field.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The coordinator is shutting down or the database is unreachable.
    #[error("{0}")]
    Unavailable(String),
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
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                // The cause is for operators, not clients.
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable("database unavailable; try again".into())
            }
            other => Self::Internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                return Status::internal("internal error");
            }
        };
        Status::new(code, err.to_string())
    }
}

/// Result of coordinator operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
