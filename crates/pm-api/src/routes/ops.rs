//! Health, metrics and the OpenAPI document.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use crate::dto::Health;
use crate::state::AppState;

#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
pub(crate) async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        checks: BTreeMap::new(),
    })
}

#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "A dependency is not ready", body = Health)))]
pub(crate) async fn ready(State(app): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    let db = tokio::time::timeout(Duration::from_secs(2), pm_storage::db::ping(app.pool())).await;
    let mut ok = matches!(db, Ok(Ok(())));
    checks.insert(
        "database".to_owned(),
        match db {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        },
    );
    for (name, check) in &app.inner.readiness {
        let result = check().await;
        ok &= result.is_ok();
        checks.insert(
            (*name).to_owned(),
            result.err().unwrap_or_else(|| "ok".to_owned()),
        );
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ok { "ok" } else { "unavailable" }.to_owned(),
            checks,
        }),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, pm_telemetry::metrics::CONTENT_TYPE)],
        app.inner.registry.render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}
