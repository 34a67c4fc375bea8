//! Message headers.

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The request's correlation id, carried from the webhook to the consumer's logs.
pub const CORRELATION_ID: &str = "x-correlation-id";
/// The webhook kind (`order` / `chargeback`), so tools can filter without parsing.
pub const EVENT_TYPE: &str = "pm-event-type";
/// How many times the message was replayed from a DLQ.
pub const REPLAY_COUNT: &str = "pm-replay-count";

/// Reads a header as UTF-8 text.
pub fn get<H: Headers>(headers: Option<&H>, name: &str) -> Option<String> {
    let headers = headers?;
    (0..headers.count()).find_map(|i| {
        let h = headers.get(i);
        (h.key == name)
            .then(|| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            .flatten()
    })
}

/// Builds headers from name/value pairs.
pub fn build<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    pairs
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        })
}

/// `headers` plus `traceparent`/`tracestate` of `span` (unchanged when tracing is off), so
/// the consumer's span joins the producer's trace.
pub fn with_trace_context(headers: OwnedHeaders, span: &tracing::Span) -> OwnedHeaders {
    pm_telemetry::propagation::headers_of(span)
        .into_iter()
        .fold(headers, |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        })
}

/// All headers as owned pairs (to copy them onto another message).
pub fn pairs<H: Headers>(headers: Option<&H>) -> Vec<(String, String)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                h.value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}
