//! Where accepted webhooks go: Kafka, or the API over HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pm_domain::EventId;
use pm_kafka::{KafkaError, Producer, Topics};
use pm_telemetry::CorrelationId;

use crate::webhook::AcceptedWebhook;

pub(crate) mod http;
pub(crate) mod kafka;

use self::http::{ForwardError, HttpSink, HttpSinkConfig, HttpSinkError};
use self::kafka::KafkaSink;

/// The downstream of the gateway. One per process, chosen by `--sink`.
#[derive(Debug)]
pub enum Sink {
    Kafka(KafkaSink),
    Http(HttpSink),
}

/// What became of a webhook the sink took.
#[derive(Debug)]
pub enum Delivered {
    /// The broker stored it (Kafka sink): answer `202`.
    Stored { event_id: EventId },
    /// Stored recently already, not produced again (Kafka sink): answer `200`.
    Duplicate,
    /// The API's final answer, `2xx` or `4xx` (HTTP sink), to pass through unchanged.
    Forwarded(Forwarded),
}

/// An API response passed through to the provider: status, body and the headers that
/// carry meaning for it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

impl IntoResponse for Forwarded {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        if let Some(ct) = self.content_type {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        if let Some(ra) = self.retry_after {
            headers.insert(header::RETRY_AFTER, ra);
        }
        response
    }
}

/// Why a webhook was not handed on. Every variant means: nothing was acknowledged, the
/// provider must deliver again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Kafka did not store the message: {0}")]
    Kafka(#[source] KafkaError),
    #[error("the API did not take the webhook after {attempts} attempt(s): {last}")]
    ApiUnavailable {
        attempts: u32,
        #[source]
        last: ForwardError,
    },
    #[error("cannot encode the envelope: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Sink {
    /// A Kafka sink producing to `topics` (which must exist: see
    /// [`pm_kafka::topics::ensure_topics`]).
    pub fn kafka(producer: Producer, topics: Topics) -> Self {
        Sink::Kafka(KafkaSink::new(producer, topics))
    }

    /// An HTTP sink forwarding to the API.
    pub fn http(config: HttpSinkConfig) -> Result<Self, HttpSinkError> {
        HttpSink::new(config).map(Sink::Http)
    }

    /// `kafka` or `http`, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => "kafka",
            Sink::Http(_) => "http",
        }
    }

    /// What the sink hands webhooks to, in words for a problem's detail.
    pub fn downstream(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => "message broker",
            Sink::Http(_) => "API",
        }
    }

    /// Hands one webhook on; `Ok` only when it was durably taken (or is a known duplicate,
    /// or the API gave a final answer to pass through).
    pub async fn deliver(
        &self,
        webhook: &AcceptedWebhook,
        correlation: &CorrelationId,
    ) -> Result<Delivered, SinkError> {
        match self {
            Sink::Kafka(k) => k.deliver(webhook, correlation).await,
            Sink::Http(h) => h.deliver(webhook, correlation).await,
        }
    }

    /// Readiness of the downstream: `(check name, result)`.
    pub async fn ready(&self) -> (&'static str, Result<(), String>) {
        match self {
            Sink::Kafka(k) => ("kafka", k.ready().await),
            Sink::Http(h) => ("api", h.ready().await),
        }
    }
}

impl From<KafkaSink> for Sink {
    fn from(s: KafkaSink) -> Self {
        Sink::Kafka(s)
    }
}

impl From<HttpSink> for Sink {
    fn from(s: HttpSink) -> Self {
        Sink::Http(s)
    }
}
