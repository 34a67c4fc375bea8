//! Client spans for outgoing HTTP calls (ingest's forwarding to the API, calls to the
//! provider), after OpenTelemetry's HTTP client conventions: one span per attempt, whose
//! context goes out in `traceparent` so the callee's server span is its child.
//!
//! Invariant: nothing here sees a request body or header values other than the trace
//! context; the URL recorded is the one the service was configured with plus its path,
//! which carries no secrets (credentials go in headers).

use http::HeaderMap;

/// The span of one attempt: named `"{method} {template}"` (just the method when the
/// path has no template), with `http.request.resend_count` from the second attempt on.
/// Create it, then [`crate::propagation::inject_http`] its context into the request's
/// headers and send the request inside it.
pub fn client_span(method: &str, template: Option<&str>, url: &str, attempt: u32) -> tracing::Span {
    let name = match template {
        Some(template) => format!("{method} {template}"),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        "http client",
        otel.name = %name,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        http.request.method = %method,
        url.full = %url,
        http.request.resend_count = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if attempt > 1 {
        span.record("http.request.resend_count", attempt - 1);
    }
    span
}

/// The headers that carry `span`'s trace context to the callee.
pub fn trace_headers(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    crate::propagation::inject_http(span, &mut headers);
    headers
}

/// Records the answer's status; 4xx and 5xx mark a client span failed, per the conventions.
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 400 {
        span.record("otel.status_code", "error");
    }
}

/// Records a failure without an answer (timeout, connection refused).
pub fn record_failure(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", error.to_string());
}
