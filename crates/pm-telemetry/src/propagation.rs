//! W3C trace context (`traceparent`, `tracestate`) into and out of carriers: HTTP headers
//! and Kafka message headers.
//!
//! Invariant: callers deal only in `tracing` spans and header pairs, never in
//! OpenTelemetry types, and everything here is a no-op when tracing is off (the span has
//! no OpenTelemetry context: nothing is injected, a parent is not set).

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt as _, SetParentError};

/// The header with the trace id, the parent span id and the sampling decision.
pub const TRACEPARENT: &str = "traceparent";
/// The header with vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// The headers that make a callee's spans children of `span` (empty when tracing is off).
pub fn headers_of(span: &tracing::Span) -> Vec<(&'static str, String)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| {
            let value = carrier.remove(name)?;
            (!value.is_empty()).then_some((name, value))
        })
        .collect()
}

/// The trace id of `span` (32 hex digits), when tracing is on and the span is in a trace:
/// what the outbox stores with each domain event.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Adds `span`'s trace context to outgoing HTTP headers.
pub fn inject_http(span: &tracing::Span, headers: &mut HeaderMap) {
    for (name, value) in headers_of(span) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Makes `span` (not yet entered) a child of the trace context that `get` finds in a
/// carrier; a missing or malformed `traceparent` leaves `span` where it was (a root, or
/// the child of the current span).
pub fn set_parent(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let carrier: HashMap<String, String> = [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), get(name)?)))
        .collect();
    if carrier.is_empty() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        return;
    }
    // Fails only when tracing is off (nothing to do) or the span was already entered
    // (a bug that leaves it a root: visible in the trace, not worth failing a request).
    if let Err(e @ SetParentError::AlreadyStarted) = span.set_parent(cx) {
        tracing::debug!(error = %e, "trace context not applied");
    }
}

/// [`set_parent`] from incoming HTTP headers.
pub fn set_parent_from_http(span: &tracing::Span, headers: &HeaderMap) {
    set_parent(span, |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
}
