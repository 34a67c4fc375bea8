//! The one place where errors become HTTP responses.

use axum::response::{IntoResponse, Response};
use pm_domain::pagination::PageError;
use pm_domain::InputError;
use pm_http::intake::webhook_problem;
use pm_http::Problem;
use pm_storage::StorageError;

/// A handler's error: a problem decided by the handler, or a storage failure.
#[derive(Debug)]
pub enum ApiError {
    Problem(Problem),
    Storage(StorageError),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(p)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Storage(e)
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::Problem(webhook_problem(e))
    }
}

impl From<PageError> for ApiError {
    fn from(e: PageError) -> Self {
        ApiError::Problem(Problem::bad_request(e.to_string()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_problem().into_response()
    }
}

impl ApiError {
    /// The problem this error is answered with (JSON routes send it as problem+json, the
    /// admin UI shows its detail on the page).
    pub fn into_problem(self) -> Problem {
        match self {
            ApiError::Problem(p) => p,
            ApiError::Storage(StorageError::InvalidCursor) => {
                Problem::bad_request(StorageError::InvalidCursor.to_string())
            }
            // statement_timeout or lock_timeout: the database was too slow or a lock was
            // held too long. The transaction rolled back; the same request may well pass.
            ApiError::Storage(e) if e.cause() == "timeout" => {
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or_default(), "database timeout");
                let what = if e.sqlstate().as_deref() == Some("55P03") {
                    "waited too long for a lock"
                } else {
                    "took longer than the statement timeout"
                };
                let mut p = Problem::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "database-timeout",
                    format!("the database {what} and the request was cancelled; nothing was stored, retry later"),
                );
                p.retry_after = Some(1);
                p
            }
            // The caller (a provider, ingest, an operator) may retry. Usually nothing was
            // stored; when the connection broke after COMMIT was sent (a failover), it may
            // have been, and the retry is then recognised as a duplicate.
            ApiError::Storage(e) if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                Problem::unavailable(
                    "the database is unavailable; retry later (a retry is safe: what was \
                     already stored is recognised)",
                    1,
                )
            }
            // The last line of defence: a value our validation let through but PostgreSQL
            // refuses (SQLSTATE classes 22 and 23, e.g. a NUL character in text, a date out
            // of range) is the request's fault. A 500 would make a provider retry it forever.
            ApiError::Storage(e) if e.is_caused_by_input() => {
                let sqlstate = e.sqlstate().unwrap_or_default();
                tracing::warn!(error = %e, %sqlstate, "the database refused a value of the request");
                Problem::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "value-refused",
                    format!(
                        "a value in this request cannot be stored (SQLSTATE {sqlstate}), e.g. a \
                         NUL character in text or a date out of range; nothing was stored"
                    ),
                )
            }
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                Problem::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
