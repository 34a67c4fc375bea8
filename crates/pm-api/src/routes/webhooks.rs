//! Provider webhooks (sync mode) and the internal update routes of ingest's HTTP sink.
//! Both end in the same storage transaction; they differ in how the webhook is
//! authenticated (provider signature vs service token) and who assigned its event id.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook, WebhookKind};
use pm_domain::InputError;
use pm_http::intake::read_json_body;
use pm_http::Problem;
use pm_storage::webhooks::{ChargebackOutcome, Delivery, OrderOutcome};
use pm_telemetry::CorrelationId;
use pm_tls::ClientCertificate;

use crate::dto::WebhookAck;
use crate::error::ApiResult;
use crate::state::AppState;

fn accepted(event_id: pm_domain::EventId, effect: &'static str) -> Response {
    let ack = WebhookAck {
        status: "accepted".to_owned(),
        event_id: Some(event_id.as_uuid()),
        effect: Some(effect.to_owned()),
    };
    (StatusCode::ACCEPTED, Json(ack)).into_response()
}

fn duplicate() -> Response {
    (
        StatusCode::OK,
        Json(WebhookAck {
            status: "duplicate".to_owned(),
            event_id: None,
            effect: None,
        }),
    )
        .into_response()
}

/// A webhook accepted now, under the request's correlation id.
fn delivery_now(correlation: &CorrelationId) -> Delivery {
    Delivery {
        correlation_id: Some(correlation.as_str().into()),
        ..Delivery::now()
    }
}

async fn apply_order(app: &AppState, w: OrderWebhook, delivery: Delivery) -> ApiResult<Response> {
    let outcome = app
        .inner
        .groups
        .apply_order(app.pool(), w, delivery)
        .await
        .inspect_err(|e| app.inner.metrics.count_apply_error("order", e))?;
    Ok(match outcome {
        OrderOutcome::Applied { event_id, effect } => {
            app.count_webhook("order", effect.as_str());
            accepted(event_id, effect.as_str())
        }
        OrderOutcome::Duplicate => {
            app.count_webhook("order", "duplicate");
            duplicate()
        }
    })
}

async fn apply_chargeback(
    app: &AppState,
    w: ChargebackWebhook,
    delivery: Delivery,
) -> ApiResult<Response> {
    let order_id = w.order_id.clone();
    let outcome = app
        .inner
        .groups
        .apply_chargeback(app.pool(), w, delivery)
        .await
        .inspect_err(|e| app.inner.metrics.count_apply_error("chargeback", e))?;
    Ok(match outcome {
        ChargebackOutcome::Applied {
            event_id, effect, ..
        } => {
            app.count_webhook("chargeback", effect.as_str());
            accepted(event_id, effect.as_str())
        }
        ChargebackOutcome::Duplicate => {
            app.count_webhook("chargeback", "duplicate");
            duplicate()
        }
        ChargebackOutcome::OrderUnknown => {
            app.count_webhook("chargeback", "order_unknown");
            // Retryable: nothing was stored, so a later delivery applies it in full.
            return Err(Problem::not_found(format!(
                "order {order_id} is not known yet; nothing was stored, deliver the chargeback again after the order",
            ))
            .into());
        }
    })
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[utoipa::path(post, path = "/webhooks/payments/orders", tag = "webhooks",
    request_body(content = crate::dto::requests::OrderWebhookRequest, content_type = "application/json"),
    params(("Webhook-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 202, description = "Stored and applied", body = WebhookAck),
        (status = 200, description = "Duplicate of an event already processed", body = WebhookAck),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 401, description = "Missing or invalid signature, or stale timestamp", body = Problem),
        (status = 413, description = "Body over the limit", body = Problem),
        (status = 415, description = "Not JSON", body = Problem),
        (status = 422, description = "Invalid fields (all listed)", body = Problem),
        (status = 503, description = "Database unavailable; retry", body = Problem),
    ))]
pub(crate) async fn order_webhook(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let bytes = app
        .inner
        .config
        .intake
        .accept(&headers, body, now_unix())
        .await?;
    let w = OrderWebhook::parse(&bytes)?;
    apply_order(&app, w, delivery_now(&correlation)).await
}

#[utoipa::path(post, path = "/webhooks/payments/chargebacks", tag = "webhooks",
    request_body(content = crate::dto::requests::ChargebackWebhookRequest, content_type = "application/json"),
    params(("Webhook-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 202, description = "Stored and applied", body = WebhookAck),
        (status = 200, description = "Duplicate", body = WebhookAck),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, description = "Order not known yet; retry later", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem),
    ))]
pub(crate) async fn chargeback_webhook(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let bytes = app
        .inner
        .config
        .intake
        .accept(&headers, body, now_unix())
        .await?;
    let w = ChargebackWebhook::parse(&bytes)?;
    apply_chargeback(&app, w, delivery_now(&correlation)).await
}

/// Authenticates a service call and reads its envelope.
async fn internal_envelope(
    app: &AppState,
    headers: &HeaderMap,
    client_certificate: Option<Extension<ClientCertificate>>,
    body: Body,
    expected: WebhookKind,
) -> ApiResult<WebhookEnvelope> {
    if app.inner.config.internal_needs_client_certificate && client_certificate.is_none() {
        return Err(Problem::unauthorized(
            "internal routes need a client certificate signed by the API's client CA (--tls-client-ca)",
        )
        .into());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented.map(|t| app.internal_token_matches(t)) {
        _ if app.inner.config.internal_token.is_none() => {
            return Err(Problem::unauthorized("internal routes are disabled: the API has no internal token configured (PM_INTERNAL_TOKEN)").into())
        }
        Some(Some(true)) => {}
        Some(_) => return Err(Problem::unauthorized("the service token is not valid").into()),
        None => return Err(Problem::unauthorized("send the service token as Authorization: Bearer <token>").into()),
    }
    // The envelope adds a few hundred bytes around the webhook.
    let limit = app.inner.config.intake.max_body_bytes + 4096;
    let bytes = read_json_body(headers, body, limit).await?;
    let envelope: WebhookEnvelope = serde_json::from_slice(&bytes)
        .map_err(|e| InputError::Malformed(format!("not a webhook envelope: {e}")))?;
    if envelope.kind != expected {
        let wrong = pm_domain::ValidationErrors::single(
            "type",
            format!("must be {} on this route", expected.as_str()),
        );
        return Err(InputError::Invalid(wrong).into());
    }
    Ok(envelope)
}

#[utoipa::path(post, path = "/internal/updates/orders", tag = "internal",
    request_body(content = crate::dto::requests::EnvelopeRequest, content_type = "application/json", description = "Envelope {event_id, type: order, received_at, payload}"),
    security(("service_token" = [])),
    responses((status = 202, body = WebhookAck), (status = 200, body = WebhookAck), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn internal_order_update(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    client_certificate: Option<Extension<ClientCertificate>>,
    body: Body,
) -> ApiResult<Response> {
    let env =
        internal_envelope(&app, &headers, client_certificate, body, WebhookKind::Order).await?;
    let w = OrderWebhook::parse(env.payload.get().as_bytes())?;
    apply_order(
        &app,
        w,
        Delivery {
            event_id: env.event_id,
            received_at: env.received_at,
            correlation_id: Some(correlation.as_str().into()),
        },
    )
    .await
}

#[utoipa::path(post, path = "/internal/updates/disputes", tag = "internal",
    request_body(content = crate::dto::requests::EnvelopeRequest, content_type = "application/json", description = "Envelope {event_id, type: chargeback, received_at, payload}"),
    security(("service_token" = [])),
    responses((status = 202, body = WebhookAck), (status = 200, body = WebhookAck), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub(crate) async fn internal_dispute_update(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    client_certificate: Option<Extension<ClientCertificate>>,
    body: Body,
) -> ApiResult<Response> {
    let env = internal_envelope(
        &app,
        &headers,
        client_certificate,
        body,
        WebhookKind::Chargeback,
    )
    .await?;
    let w = ChargebackWebhook::parse(env.payload.get().as_bytes())?;
    apply_chargeback(
        &app,
        w,
        Delivery {
            event_id: env.event_id,
            received_at: env.received_at,
            correlation_id: Some(correlation.as_str().into()),
        },
    )
    .await
}
