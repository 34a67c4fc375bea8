//! The router: two webhook routes and the operations routes, behind the telemetry
//! middleware. Nothing else is exposed: this port faces the internet.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use pm_http::Problem;

use crate::state::IngestState;

mod ops;
mod webhooks;

/// Builds the gateway's router, with `limits` on every route.
pub fn router(state: IngestState, limits: &pm_http::limits::Limits) -> Router {
    let http_metrics = state.metrics().http.clone();
    let routes = Router::new()
        .route("/webhooks/payments/orders", post(webhooks::order_webhook))
        .route(
            "/webhooks/payments/chargebacks",
            post(webhooks::chargeback_webhook),
        )
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(pm_http::problem::method_not_allowed);
    // Limits inside the metrics middleware, so shed and timed-out requests are counted.
    limits
        .apply(routes)
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            pm_http::telemetry::track,
        ))
        .with_state(state)
}

/// 404 naming what this gateway does serve (it has no OpenAPI document to point to).
async fn no_route() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such route; ingest serves POST /webhooks/payments/orders and POST /webhooks/payments/chargebacks",
    )
}
