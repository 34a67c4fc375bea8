//! The router: every route of PRODUCT.md §3.2 behind the telemetry middleware.

use axum::routing::{get, post};
use axum::Router;

use crate::auth::{self, Guard};
use crate::state::AppState;
use pm_domain::api_key::Scope;

pub(crate) mod analytics;
pub(crate) mod audit;
pub(crate) mod disputes;
pub(crate) mod ops;
pub(crate) mod orders;
pub(crate) mod profile;
pub(crate) mod webhooks;

/// Builds the API router (and the admin UI's, [`crate::admin`]), with `limits` on every route.
///
/// Who may call what: provider webhooks are signed, `/internal/*` carries the service token,
/// the health probes are open, and everything else needs an API key with a scope — `read`
/// for reads (and `/metrics`, `/openapi.json`), `operate` for operator actions, `admin` for
/// the audit trail and CPU profiles.
pub fn router(state: AppState, limits: &pm_http::limits::Limits) -> Router {
    let http_metrics = state.inner.metrics.http.clone();
    let guard = |scope| {
        axum::middleware::from_fn_with_state(
            Guard {
                app: state.clone(),
                scope,
            },
            auth::require,
        )
    };
    let reads = Router::new()
        .route("/orders", get(orders::list_orders))
        .route("/orders/events", get(orders::list_order_events))
        .route("/orders/{order_id}", get(orders::get_order))
        .route("/orders/{order_id}/events", get(orders::order_events))
        .route("/orders/{order_id}/captures", get(orders::order_captures))
        .route("/disputes", get(disputes::list_disputes))
        .route("/disputes/events", get(disputes::list_dispute_events))
        .route("/disputes/{dispute_id}", get(disputes::get_dispute))
        .route(
            "/disputes/{dispute_id}/evidence",
            get(disputes::get_evidence),
        )
        .route("/analytics/orders", get(analytics::orders))
        .route("/analytics/captures", get(analytics::captures))
        .route("/analytics/disputes", get(analytics::disputes))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::state::choose_read,
        ))
        .route_layer(guard(Scope::Read));
    let actions = Router::new()
        .route("/orders/{order_id}/hold", post(orders::hold))
        .route("/orders/{order_id}/capture", post(orders::capture))
        .route(
            "/disputes/{dispute_id}/evidence",
            post(disputes::put_evidence),
        )
        .route("/disputes/{dispute_id}/submit", post(disputes::submit))
        .route_layer(guard(Scope::Operate));
    let admin = Router::new()
        .route("/audit", get(audit::list_audit))
        .route("/debug/pprof/profile", get(profile::cpu_profile))
        .route_layer(guard(Scope::Admin));
    let routes = Router::new()
        .route("/webhooks/payments/orders", post(webhooks::order_webhook))
        .route(
            "/webhooks/payments/chargebacks",
            post(webhooks::chargeback_webhook),
        )
        .route(
            "/internal/updates/orders",
            post(webhooks::internal_order_update),
        )
        .route(
            "/internal/updates/disputes",
            post(webhooks::internal_dispute_update),
        )
        .route("/health/live", get(ops::live))
        .route("/health/ready", get(ops::ready))
        .merge(reads)
        .merge(actions)
        .merge(admin)
        .merge(crate::admin::router())
        .fallback(pm_http::problem::no_route)
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

/// Largest JSON body of an operator request (evidence is the biggest).
pub(crate) const MAX_COMMAND_BODY: usize = 256 * 1024;

/// A path segment, percent-decoded by axum; a malformed one is a 400 problem.
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = pm_http::Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParam(p))
            .map_err(|e| pm_http::Problem::bad_request(format!("invalid path: {e}")))
    }
}
