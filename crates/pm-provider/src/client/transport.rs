//! One JSON POST to the provider, retried only when that is safe.
//!
//! Safe means: the failure says nothing about the request itself (5xx, timeout, connection
//! error, and the two 4xx that are about timing rather than content: `409` — a request with
//! this key is still being processed — and `429` — too many requests), and the idempotency
//! key makes a repeat harmless even if the provider acted on an earlier attempt. Any other
//! 4xx is the provider's verdict on the request and is returned at once.

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument as _;

use super::error::ProviderError;
use super::metrics::{AttemptOutcome, ProviderMetrics};
use crate::wire::{ErrorBody, CORRELATION_ID_HEADER, IDEMPOTENCY_KEY_HEADER};
use pm_domain::retry::Backoff;

/// Most characters of a provider's body copied into an error message: enough to diagnose,
/// not enough to flood logs with an HTML error page.
const MAX_BODY_EXCERPT: usize = 512;

/// How many times to try and how long to wait in between.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
}

/// What one call is, for the request headers and the retry log lines.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) operation: &'static str,
    pub(super) url: &'a Url,
    pub(super) idempotency_key: &'a str,
    pub(super) correlation_id: &'a str,
    pub(super) metrics: Option<&'a ProviderMetrics>,
}

/// The result of one attempt.
enum Attempt<T> {
    /// An answer (or a failure) that another attempt would not change.
    Finished(Result<T, ProviderError>),
    /// A failure that another attempt might not have; the text says what happened.
    Retryable(String),
}

/// POSTs `body` as JSON and parses a 2xx answer as `Resp`, retrying per `policy`.
pub(super) async fn post_json<Req, Resp>(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    call: Call<'_>,
    body: &Req,
) -> Result<Resp, ProviderError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    // Serialized once so every attempt sends byte-identical bodies under the same key.
    let body = serde_json::to_vec(body)
        .map_err(|e| ProviderError::InvalidRequest(format!("could not encode the body: {e}")))?;
    send_json(http, policy, call, Method::POST, Some(body)).await
}

/// GETs `call.url` and parses a 2xx answer as `Resp`, retrying per `policy`.
pub(super) async fn get_json<Resp: DeserializeOwned>(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    call: Call<'_>,
) -> Result<Resp, ProviderError> {
    send_json(http, policy, call, Method::GET, None).await
}

async fn send_json<Resp: DeserializeOwned>(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    call: Call<'_>,
    method: Method,
    body: Option<Vec<u8>>,
) -> Result<Resp, ProviderError> {
    let idempotency_key = header_value(IDEMPOTENCY_KEY_HEADER, call.idempotency_key)?;
    let correlation_id = header_value(CORRELATION_ID_HEADER, call.correlation_id)?;

    let mut attempt = 1;
    loop {
        let mut request = http
            .request(method.clone(), call.url.clone())
            .header(ACCEPT, "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, idempotency_key.clone())
            .header(CORRELATION_ID_HEADER, correlation_id.clone());
        if let Some(body) = &body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        // One client span per attempt, its context in `traceparent`, so the provider's
        // spans (and a retry's) hang off the caller's trace.
        let span = pm_telemetry::http_client::client_span(
            method.as_str(),
            None,
            call.url.as_str(),
            attempt,
        );
        let request = request.headers(pm_telemetry::http_client::trace_headers(&span));
        let started = std::time::Instant::now();
        let (result, outcome) = attempt_once(request, &span).instrument(span.clone()).await;
        if let (Some(metrics), Some(outcome)) = (call.metrics, outcome) {
            metrics.observe(call.operation, outcome, started.elapsed());
        }
        let last_error = match result {
            Attempt::Finished(result) => return result,
            Attempt::Retryable(reason) => reason,
        };
        if attempt >= policy.max_attempts {
            return Err(ProviderError::Unavailable {
                attempts: attempt,
                last_error,
            });
        }
        let delay = policy.backoff.delay(attempt);
        // The idempotency key is left out on purpose: it is what lets anyone replay the call.
        tracing::warn!(
            operation = call.operation,
            attempt,
            max_attempts = policy.max_attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            correlation_id = call.correlation_id,
            error = %last_error,
            "provider call failed; retrying",
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// Sends one request and classifies what came back, with how the attempt ended (`None`
/// when nothing was sent).
async fn attempt_once<Resp: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    span: &tracing::Span,
) -> (Attempt<Resp>, Option<AttemptOutcome>) {
    let response = match request.send().await {
        Ok(response) => {
            pm_telemetry::http_client::record_status(span, response.status().as_u16());
            response
        }
        Err(e) if e.is_builder() => {
            return (
                Attempt::Finished(Err(ProviderError::InvalidRequest(describe(&e)))),
                None,
            )
        }
        Err(e) => {
            pm_telemetry::http_client::record_failure(span, &describe(&e));
            let outcome = if e.is_timeout() {
                AttemptOutcome::Timeout
            } else {
                AttemptOutcome::Unreachable
            };
            return (Attempt::Retryable(describe(&e)), Some(outcome));
        }
    };
    let status = response.status();
    if status.is_success() {
        return match response.bytes().await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(parsed) => (Attempt::Finished(Ok(parsed)), Some(AttemptOutcome::Success)),
                Err(e) => (
                    Attempt::Finished(Err(ProviderError::InvalidResponse(format!(
                        "HTTP {status} with a body that does not parse ({e}): {}",
                        excerpt(&body)
                    )))),
                    Some(AttemptOutcome::InvalidResponse),
                ),
            },
            // The answer was cut off (timeout, reset): its content is unknown, and the
            // idempotency key makes asking again safe.
            Err(e) => (
                Attempt::Retryable(format!("HTTP {status}, body lost: {}", describe(&e))),
                if e.is_timeout() {
                    Some(AttemptOutcome::Timeout)
                } else {
                    Some(AttemptOutcome::Unreachable)
                },
            ),
        };
    }
    if status == StatusCode::CONFLICT || status == StatusCode::TOO_MANY_REQUESTS {
        // About timing, not about the request: the provider is still working on this key,
        // or wants us to slow down. Whether it acted is unknown until it is asked again.
        let rejected = rejection(status, response).await;
        return (
            Attempt::Retryable(rejected.to_string()),
            Some(AttemptOutcome::ClientError),
        );
    }
    if status.is_client_error() {
        return (
            Attempt::Finished(Err(rejection(status, response).await)),
            Some(AttemptOutcome::ClientError),
        );
    }
    if status.is_server_error() {
        // The body is only for the message; failing to read it changes nothing.
        let body = response.bytes().await.unwrap_or_default();
        return (
            Attempt::Retryable(format!("HTTP {status}: {}", excerpt(&body))),
            Some(AttemptOutcome::ServerError),
        );
    }
    (
        Attempt::Finished(Err(ProviderError::InvalidResponse(format!(
            "unexpected HTTP {status}"
        )))),
        Some(AttemptOutcome::InvalidResponse),
    )
}

/// Turns a 4xx answer into [`ProviderError::Rejected`], whatever its body looks like.
async fn rejection(status: StatusCode, response: Response) -> ProviderError {
    let unknown = |message: String| ProviderError::Rejected {
        status: status.as_u16(),
        code: ProviderError::UNKNOWN_CODE.to_owned(),
        message,
        constraints: None,
    };
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return unknown(format!("HTTP {status}, body lost: {}", describe(&e))),
    };
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => ProviderError::Rejected {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            constraints: error.constraints,
        },
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => unknown(format!("HTTP {status}")),
        Err(_) => unknown(excerpt(&body)),
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, ProviderError> {
    if value.is_empty() {
        return Err(ProviderError::InvalidRequest(format!(
            "the {name} header must not be empty"
        )));
    }
    HeaderValue::from_str(value).map_err(|_| {
        ProviderError::InvalidRequest(format!("the {name} header has characters HTTP forbids"))
    })
}

/// Describes a transport error by its kind and its causes, without the URL that reqwest's
/// own message starts with (a base URL may carry credentials).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "failed while reading the response"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut last = String::new();
    let mut cause = std::error::Error::source(error);
    while let Some(err) = cause {
        let message = err.to_string();
        // hyper and its connector often wrap an error in one that prints the same words.
        if message != last {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        cause = err.source();
    }
    text
}

/// The start of a body as text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_cut_on_a_character_boundary() {
        assert_eq!(excerpt(b"  short  "), "short");
        let long = "é".repeat(MAX_BODY_EXCERPT + 10);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), MAX_BODY_EXCERPT + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn header_values_must_be_present_and_legal() {
        assert!(header_value("X-Correlation-ID", "corr-1").is_ok());
        assert!(matches!(
            header_value("X-Correlation-ID", ""),
            Err(ProviderError::InvalidRequest(_))
        ));
        assert!(matches!(
            header_value("Idempotency-Key", "a\nb"),
            Err(ProviderError::InvalidRequest(_))
        ));
    }
}
