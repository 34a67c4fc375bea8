//! Health and metrics.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pm_api_types::Health;

use crate::state::IngestState;

/// The process is up (no dependency is checked: a restart would not fix them).
pub(crate) async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        checks: BTreeMap::new(),
    })
}

/// Ready when the sink's downstream answers: a broker's metadata, or the API's own
/// readiness. A load balancer then stops sending webhooks that could only get a 503.
pub(crate) async fn ready(State(state): State<IngestState>) -> Response {
    let (name, result) = state.sink().ready().await;
    let ok = result.is_ok();
    let mut checks = BTreeMap::new();
    checks.insert(
        name.to_owned(),
        result.err().unwrap_or_else(|| "ok".to_owned()),
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = Health {
        status: if ok { "ok" } else { "unavailable" }.to_owned(),
        checks,
    };
    (status, Json(health)).into_response()
}

/// Prometheus text format.
pub(crate) async fn metrics(State(state): State<IngestState>) -> Response {
    (
        [(header::CONTENT_TYPE, pm_telemetry::metrics::CONTENT_TYPE)],
        state.registry().render(),
    )
        .into_response()
}
