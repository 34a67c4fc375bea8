//! Webhook intake: the checks every provider webhook passes before it is acted on.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use pm_domain::signature::{self, SignatureError, Verifier};
use pm_domain::InputError;

use crate::Problem;

/// Default largest webhook body: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// How a server checks webhooks.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// `None` only when signature checks were explicitly disabled.
    pub verifier: Option<Verifier>,
    pub max_body_bytes: usize,
}

/// True for `application/json` and `application/<anything>+json`, with any parameters.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads a JSON request body of at most `limit` bytes (415 when not JSON, 413 when over).
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Problem> {
    if !is_json(headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the body must be JSON: send Content-Type: application/json",
        ));
    }
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) if crate::limits::is_body_timeout(&*e) => Err(crate::limits::body_timeout_problem()),
        Err(e) => Err(Problem::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

impl IntakeConfig {
    /// Content type, size and signature of a webhook; returns the raw body, verified.
    pub async fn accept(
        &self,
        headers: &HeaderMap,
        body: Body,
        now_unix: i64,
    ) -> Result<Bytes, Problem> {
        let bytes = read_json_body(headers, body, self.max_body_bytes).await?;
        if let Some(verifier) = &self.verifier {
            let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
            // Its own span: with several secrets in rotation it is the one CPU-bound step
            // of the intake, and a refusal shows in the trace with its reason.
            let span = tracing::info_span!(
                "verify signature",
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
            );
            span.in_scope(|| verifier.verify(header, &bytes, now_unix))
                .map_err(|e| {
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", e.to_string());
                    signature_problem(e)
                })?;
        }
        Ok(bytes)
    }
}

/// 401 for a refused signature, saying why.
pub fn signature_problem(e: SignatureError) -> Problem {
    let mut p = Problem::unauthorized(e.to_string());
    p.kind = "/problems/invalid-signature".to_owned();
    p
}

/// 400 for malformed JSON, 422 with every field error for invalid fields.
pub fn webhook_problem(e: InputError) -> Problem {
    match e {
        InputError::Malformed(detail) => {
            let mut p = Problem::bad_request(format!("malformed JSON: {detail}"));
            p.kind = "/problems/malformed-json".to_owned();
            p
        }
        InputError::Invalid(errors) => Problem::validation(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(ct).expect("header"),
        );
        h
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/vnd.provider+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_even_without_content_length() {
        let p = read_json_body(&headers("application/json"), Body::from(vec![b' '; 11]), 10)
            .await
            .unwrap_err();
        assert_eq!(p.status, 413);
        let ok = read_json_body(&headers("application/json"), Body::from("{}"), 10)
            .await
            .expect("fits");
        assert_eq!(&ok[..], b"{}");
        let p = read_json_body(&headers("text/plain"), Body::from("{}"), 10)
            .await
            .unwrap_err();
        assert_eq!(p.status, 415);
    }
}
