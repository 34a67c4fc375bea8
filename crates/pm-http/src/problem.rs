//! `application/problem+json` responses (RFC 9457).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pm_domain::{FieldError, ValidationErrors};
use serde::Serialize;

/// The media type of problem documents.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem document. `type` is a relative URI naming the kind of problem; the kinds are
/// listed in the README's API section.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level validation errors (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldErrorSchema>>)]
    pub errors: Option<Vec<FieldError>>,
    /// Seconds after which a retry may succeed (503); sent as the `Retry-After` header.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

/// One field error in a problem document.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorSchema {
    field: String,
    message: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(kind: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, kind, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 422 with every field error.
    pub fn validation(errors: ValidationErrors) -> Self {
        let count = errors.errors().len();
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            format!(
                "{count} field{} failed validation: {errors}",
                if count == 1 { "" } else { "s" }
            ),
        );
        p.errors = Some(errors.errors().to_vec());
        p
    }

    /// 503 with `Retry-After`: the request was not acted on; sending it again later is safe.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u32) -> Self {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        p.retry_after = Some(retry_after_secs);
        p
    }

    /// 500 without internals (they are logged where the error is turned into this).
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// 404 for paths no route matches.
pub async fn no_route() -> Problem {
    Problem::not_found("no such route; see /openapi.json for the API")
}

/// 405 for known paths with another method.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not accept that method",
    )
}
