//! The webhook routes: intake checks, validation, envelope, sink — and the one place
//! where each outcome becomes an HTTP answer and a metric.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use pm_api_types::WebhookAck;
use pm_domain::webhook::WebhookKind;
use pm_domain::InputError;
use pm_http::intake::webhook_problem;
use pm_http::Problem;
use pm_telemetry::CorrelationId;

use crate::metrics::{Outcome, Reason};
use crate::sink::{Delivered, SinkError};
use crate::state::IngestState;
use crate::webhook::{AcceptedWebhook, ParseError};

/// Seconds a provider is asked to wait before delivering again after a 503.
const RETRY_AFTER_SECS: u32 = 2;

pub(crate) async fn order_webhook(
    State(state): State<IngestState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(&state, WebhookKind::Order, &correlation, &headers, body).await
}

pub(crate) async fn chargeback_webhook(
    State(state): State<IngestState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(
        &state,
        WebhookKind::Chargeback,
        &correlation,
        &headers,
        body,
    )
    .await
}

/// The intake checks answer with the status that names their reason.
fn intake_reason(problem: &Problem) -> Reason {
    match problem.status_code() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Reason::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => Reason::PayloadTooLarge,
        StatusCode::UNAUTHORIZED => Reason::InvalidSignature,
        // The only other refusal is a body that could not be read as sent.
        _ => Reason::MalformedJson,
    }
}

async fn ingest(
    state: &IngestState,
    kind: WebhookKind,
    correlation: &CorrelationId,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.metrics();
    let now = Utc::now();
    let bytes = match state.intake().accept(headers, body, now.timestamp()).await {
        Ok(bytes) => bytes,
        Err(problem) => {
            metrics.rejected(kind, intake_reason(&problem));
            return problem.into_response();
        }
    };
    let webhook = match AcceptedWebhook::parse(kind, &bytes, now) {
        Ok(w) => w,
        Err(ParseError::Input(e)) => {
            let reason = match e {
                InputError::Malformed(_) => Reason::MalformedJson,
                InputError::Invalid(_) => Reason::InvalidFields,
            };
            metrics.rejected(kind, reason);
            return webhook_problem(e).into_response();
        }
        Err(ParseError::Envelope(e)) => return internal(state, kind, &e),
    };

    let sink = state.sink();
    let started = Instant::now();
    let result = sink.deliver(&webhook, correlation).await;
    if !matches!(result, Ok(Delivered::Duplicate)) {
        // The shortcut's microseconds would hide the real produce/forward latency.
        metrics.sink_latency(sink.name(), kind, started.elapsed());
    }
    match result {
        Ok(Delivered::Stored { event_id }) => {
            metrics.outcome(kind, Outcome::Accepted);
            let ack = WebhookAck {
                status: "accepted".to_owned(),
                event_id: Some(event_id.as_uuid()),
                effect: None,
            };
            (StatusCode::ACCEPTED, Json(ack)).into_response()
        }
        Ok(Delivered::Duplicate) => {
            metrics.outcome(kind, Outcome::Duplicate);
            let ack = WebhookAck {
                status: "duplicate".to_owned(),
                event_id: None,
                effect: None,
            };
            (StatusCode::OK, Json(ack)).into_response()
        }
        Ok(Delivered::Forwarded(answer)) => {
            match answer.status {
                StatusCode::OK => metrics.outcome(kind, Outcome::Duplicate),
                s if s.is_success() => metrics.outcome(kind, Outcome::Accepted),
                _ => metrics.rejected(kind, Reason::Downstream4xx),
            }
            answer.into_response()
        }
        Err(SinkError::Encode(e)) => internal(state, kind, &e),
        Err(e) => {
            tracing::warn!(sink = sink.name(), error = %e, "webhook not handed on; asking the provider to retry");
            metrics.rejected(kind, Reason::DownstreamUnavailable);
            Problem::unavailable(
                format!(
                    "the {} is unavailable; nothing was accepted, deliver the webhook again later",
                    sink.downstream()
                ),
                RETRY_AFTER_SECS,
            )
            .into_response()
        }
    }
}

/// A validated webhook that cannot be encoded is a bug: logged here, 500 to the provider
/// (which retries; nothing was handed on).
fn internal(state: &IngestState, kind: WebhookKind, e: &serde_json::Error) -> Response {
    tracing::error!(error = %e, "cannot encode a validated webhook");
    state.metrics().rejected(kind, Reason::Internal);
    Problem::internal().into_response()
}
