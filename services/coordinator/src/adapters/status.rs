//! The one place where the coordinator's `Error` becomes what a client is
//! sent: a gRPC status, or an HTTP status for the plain routes. Internal
//! causes are logged here and replaced by "internal error".

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::error::Error;

/// The gRPC code of each error.
fn code(err: &Error) -> Code {
    match err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::FailedPrecondition(_) | Error::IllegalTransition { .. } => Code::FailedPrecondition,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        Error::Aborted(_) => Code::Aborted,
        Error::DataLoss(_) => Code::DataLoss,
        Error::Unavailable(_) => Code::Unavailable,
        Error::OutOfRange(_) => Code::OutOfRange,
        Error::Internal(_) => Code::Internal,
    }
}

/// What a client may read of an error.
fn message(err: Error) -> String {
    match err {
        Error::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "internal error");
            "internal error".to_owned()
        }
        other => other.to_string(),
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(code(&err), message(err))
    }
}

/// The HTTP status and body text of an error, for the plain HTTP routes.
pub fn http(err: Error) -> (StatusCode, String) {
    let status = match code(&err) {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{}\n", message(err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TestrunStatus;

    #[test]
    fn each_error_maps_to_its_code_and_internal_causes_stay_private() {
        let s = Status::from(Error::invalid("username", "must not be empty"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "username: must not be empty")
        );
        let cause = TestrunStatus::Success.cancel().unwrap_err();
        let s = Status::from(Error::testrun_transition(4, cause));
        assert_eq!(
            (s.code(), s.message()),
            (
                Code::FailedPrecondition,
                "testrun 4 already ended with status SUCCESS"
            )
        );
        let s = Status::from(Error::Internal(anyhow::anyhow!("secret detail")));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
        let (code, body) = http(Error::testrun_not_found(9));
        assert_eq!(
            (code, body.as_str()),
            (StatusCode::NOT_FOUND, "testrun 9 not found\n")
        );
    }
}
