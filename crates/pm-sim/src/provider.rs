//! The provider API (PRODUCT.md §2.5), as the merchant sees it.
//!
//! - `POST /api/v1/capture` `{order_id, amount, currency, idempotency_key}` →
//!   `200 {transaction_id, status}`; `status` is `success`, or `declined` at the configured
//!   decline rate; `400` for an invalid request.
//! - `POST /api/v1/dispute-representments/create` `{order_id, evidences_file_id}` →
//!   `200 {id}`; `400` for a blank order id or no files; `422` when a file is not ready
//!   (file ids starting with `pending_`, or at the configured rate).
//! - `GET /api/v1/captures/{idempotency_key}` → `200 {transaction_id, status}` of the capture
//!   made under that key, or `404` with code `capture_not_found`; it never captures.
//! - Any call fails with `503` at the configured failure rate, after the configured latency.
//! - A repeated `Idempotency-Key` gets the first answer again and is not recorded twice,
//!   as a real provider does.
//! - At the configured capture-fault rate a capture is made (or found, for a repeated key)
//!   and its answer then lost: the provider never answers, or answers `500`. This is the
//!   *unknown outcome* the merchant must settle by retrying with the same key or by the
//!   lookup above.
//! - `GET /_sim/accepted` lists what was accepted (captures and representments).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pm_provider::wire::{
    CaptureRequest, CaptureResponse, ErrorBody, RepresentmentRequest, RepresentmentResponse,
    CAPTURES_PATH, CAPTURE_NOT_FOUND, CAPTURE_PATH, CAPTURE_SUCCESS, IDEMPOTENCY_KEY_HEADER,
    REPRESENTMENT_PATH,
};
use serde::Serialize;

/// How the simulated provider behaves.
#[derive(Debug, Clone)]
pub struct ProviderBehaviour {
    /// Each answer is delayed by a uniform random time in this range.
    pub latency: (Duration, Duration),
    /// Share of calls answered `503` (transient; the merchant retries).
    pub failure_rate: f64,
    /// Share of captures answered `status: declined`.
    pub decline_rate: f64,
    /// Share of representments answered `422` (file not ready).
    pub not_ready_rate: f64,
    /// What happens to the answer of a capture after the money was captured.
    pub capture_fault: CaptureFault,
    /// Share of captures (new or repeated keys) that `capture_fault` applies to.
    pub capture_fault_rate: f64,
}

/// How a capture's answer is lost after the capture was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CaptureFault {
    /// The answer arrives.
    #[default]
    None,
    /// The provider captures, then does not answer for [`HANG`]: the merchant's request
    /// times out.
    ChargeThenTimeout,
    /// The provider captures, then answers `500`.
    ChargeThenError,
}

/// How long a [`CaptureFault::ChargeThenTimeout`] answer is held back: far longer than any
/// sensible client timeout, short enough not to hold a shutting-down simulator for long.
pub const HANG: Duration = Duration::from_secs(60);

impl Default for ProviderBehaviour {
    fn default() -> Self {
        Self {
            latency: (Duration::ZERO, Duration::ZERO),
            failure_rate: 0.0,
            decline_rate: 0.0,
            not_ready_rate: 0.0,
            capture_fault: CaptureFault::None,
            capture_fault_rate: 0.0,
        }
    }
}

/// Something the provider accepted.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Accepted {
    Capture {
        idempotency_key: String,
        order_id: String,
        amount: String,
        currency: String,
        transaction_id: String,
        status: String,
    },
    Representment {
        idempotency_key: String,
        order_id: String,
        file_ids: Vec<String>,
        id: String,
    },
}

#[derive(Default)]
struct Book {
    accepted: Vec<Accepted>,
    /// Idempotency key → the first answer.
    answers: HashMap<String, (StatusCode, serde_json::Value)>,
}

/// The provider's state, shared by its handlers.
#[derive(Clone)]
pub struct ProviderSim {
    behaviour: Arc<RwLock<ProviderBehaviour>>,
    book: Arc<Mutex<Book>>,
}

impl std::fmt::Debug for ProviderSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSim")
            .field("behaviour", &self.behaviour())
            .finish_non_exhaustive()
    }
}

impl ProviderSim {
    pub fn new(behaviour: ProviderBehaviour) -> Self {
        Self {
            behaviour: Arc::new(RwLock::new(behaviour)),
            book: Arc::default(),
        }
    }

    /// How the provider behaves now.
    pub fn behaviour(&self) -> ProviderBehaviour {
        self.behaviour
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Changes how the provider behaves from the next call on (a test's fault injection).
    pub fn set_behaviour(&self, behaviour: ProviderBehaviour) {
        match self.behaviour.write() {
            Ok(mut b) => *b = behaviour,
            Err(poisoned) => *poisoned.into_inner() = behaviour,
        }
    }

    /// What was accepted so far, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.book
            .lock()
            .map(|b| b.accepted.clone())
            .unwrap_or_default()
    }

    /// The router of the provider API.
    pub fn router(&self) -> Router {
        Router::new()
            .route(CAPTURE_PATH, post(capture))
            .route(&format!("{CAPTURES_PATH}/{{key}}"), get(capture_status))
            .route(REPRESENTMENT_PATH, post(representment))
            .route("/_sim/accepted", get(accepted))
            .route("/health/live", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Latency, then maybe a transient failure.
    async fn behave(&self) -> Option<Response> {
        let behaviour = self.behaviour();
        let (lo, hi) = behaviour.latency;
        if hi > Duration::ZERO {
            let wait = if hi > lo {
                lo + (hi - lo).mul_f64(rand::random::<f64>())
            } else {
                lo
            };
            tokio::time::sleep(wait).await;
        }
        (rand::random::<f64>() < behaviour.failure_rate).then(|| {
            let body = ErrorBody::new(
                "unavailable",
                "the provider is temporarily unavailable (simulated)",
            );
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        })
    }

    /// What every call goes through first: latency, a simulated outage, the required
    /// idempotency key, and the replay of an earlier answer to the same key. `Ok` is the
    /// key of a call to process; `Err` is the answer already decided.
    async fn admit(&self, headers: &HeaderMap) -> Result<String, Response> {
        if let Some(failure) = self.behave().await {
            return Err(failure);
        }
        let key =
            key_of(headers).ok_or_else(|| bad_request("the Idempotency-Key header is required"))?;
        match self.replay(&key) {
            Some(previous) => Err(previous),
            None => Ok(key),
        }
    }

    /// The stored answer of an earlier call with this key, if any.
    fn replay(&self, key: &str) -> Option<Response> {
        let book = self.book.lock().ok()?;
        book.answers
            .get(key)
            .map(|(status, body)| (*status, Json(body.clone())).into_response())
    }

    fn remember(
        &self,
        key: &str,
        status: StatusCode,
        body: serde_json::Value,
        accepted: Option<Accepted>,
    ) -> Response {
        if let Ok(mut book) = self.book.lock() {
            book.answers.insert(key.to_owned(), (status, body.clone()));
            book.accepted.extend(accepted);
        }
        (status, Json(body)).into_response()
    }
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ErrorBody::new("validation_error", message)),
    )
        .into_response()
}

fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

async fn capture(
    State(sim): State<ProviderSim>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let answer = capture_answer(&sim, &headers, &body).await;
    if !answer.status().is_success() {
        return answer;
    }
    let behaviour = sim.behaviour();
    if rand::random::<f64>() >= behaviour.capture_fault_rate {
        return answer;
    }
    match behaviour.capture_fault {
        CaptureFault::None => answer,
        CaptureFault::ChargeThenTimeout => {
            tokio::time::sleep(HANG).await;
            answer
        }
        CaptureFault::ChargeThenError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody::new(
                "internal_error",
                "the capture's answer was lost (simulated)",
            )),
        )
            .into_response(),
    }
}

/// The answer to a capture (a replay for a repeated key), before any capture fault.
async fn capture_answer(sim: &ProviderSim, headers: &HeaderMap, body: &[u8]) -> Response {
    let key = match sim.admit(headers).await {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    let Ok(req) = serde_json::from_slice::<CaptureRequest>(body) else {
        return bad_request("the body must be {order_id, amount, currency, idempotency_key}");
    };
    if req.order_id.trim().is_empty() {
        return bad_request("order_id must not be blank");
    }
    let (Ok(amount), Ok(currency)) = (req.amount(), req.currency()) else {
        return bad_request("amount must be a positive number and currency an ISO 4217 code");
    };
    let Ok(money) = pm_domain::Money::new(amount, currency) else {
        return bad_request("amount has more decimal places than the currency allows");
    };
    let declined = rand::random::<f64>() < sim.behaviour().decline_rate;
    let status = if declined {
        "declined"
    } else {
        CAPTURE_SUCCESS
    }
    .to_owned();
    let transaction_id = format!("tx_{}", uuid::Uuid::new_v4().simple());
    let response = CaptureResponse {
        transaction_id: transaction_id.clone(),
        status: status.clone(),
    };
    let accepted = Accepted::Capture {
        idempotency_key: key.clone(),
        order_id: req.order_id,
        amount: money.amount_text(),
        currency: currency.code().to_owned(),
        transaction_id,
        status,
    };
    sim.remember(
        &key,
        StatusCode::OK,
        serde_json::to_value(response).unwrap_or_default(),
        Some(accepted),
    )
}

async fn representment(
    State(sim): State<ProviderSim>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = match sim.admit(&headers).await {
        Ok(key) => key,
        Err(answer) => return answer,
    };
    let Ok(req) = serde_json::from_slice::<RepresentmentRequest>(&body) else {
        return bad_request("the body must be {order_id, evidences_file_id}");
    };
    if req.order_id.trim().is_empty() {
        return bad_request("order_id must not be blank");
    }
    if req.evidences_file_id.is_empty() {
        let body = ErrorBody::new("validation_error", "at least one evidence file is required")
            .with_constraints(serde_json::json!({"evidences_file_id": "min 1 item"}));
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let pending = req
        .evidences_file_id
        .iter()
        .find(|f| f.starts_with("pending_"));
    if pending.is_some() || rand::random::<f64>() < sim.behaviour().not_ready_rate {
        let file = pending
            .cloned()
            .unwrap_or_else(|| req.evidences_file_id[0].clone());
        let body = ErrorBody::new(
            "file_not_ready",
            format!("file {file} is still being processed"),
        );
        // Not remembered: the same key may succeed once the file is ready.
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }
    let id = format!("rep_{}", uuid::Uuid::new_v4().simple());
    let accepted = Accepted::Representment {
        idempotency_key: key.clone(),
        order_id: req.order_id,
        file_ids: req.evidences_file_id,
        id: id.clone(),
    };
    let response = RepresentmentResponse { id };
    sim.remember(
        &key,
        StatusCode::OK,
        serde_json::to_value(response).unwrap_or_default(),
        Some(accepted),
    )
}

async fn capture_status(State(sim): State<ProviderSim>, Path(key): Path<String>) -> Response {
    if let Some(failure) = sim.behave().await {
        return failure;
    }
    let found = sim.accepted().into_iter().find_map(|a| match a {
        Accepted::Capture {
            idempotency_key,
            transaction_id,
            status,
            ..
        } if idempotency_key == key => Some(CaptureResponse {
            transaction_id,
            status,
        }),
        _ => None,
    });
    match found {
        Some(capture) => (StatusCode::OK, Json(capture)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody::new(
                CAPTURE_NOT_FOUND,
                format!("no capture was made under idempotency key {key}"),
            )),
        )
            .into_response(),
    }
}

async fn accepted(State(sim): State<ProviderSim>) -> Json<Vec<Accepted>> {
    Json(sim.accepted())
}
