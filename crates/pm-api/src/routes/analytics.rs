//! The analytics read models (scope `read`): what `pmctl project-analytics` derived from the
//! domain events, over a window of UTC days `[from, to)`.

use axum::extract::{RawQuery, State};
use axum::Json;
use pm_http::Problem;
use pm_storage::analytics::{self, Days};

use crate::dto::{self, CaptureVolume, DisputeAnalytics, OrderVolume};
use crate::error::{ApiError, ApiResult};
use crate::query::{check_window, Params};
use crate::state::AppState;

/// `from` and `to`, the only parameters of these routes.
fn days(raw: Option<&str>) -> Result<Days, ApiError> {
    let mut p = Params::new(raw);
    let days = Days {
        from: p.day("from")?,
        to: p.day("to")?,
    };
    p.finish()?;
    check_window(days.from, days.to, ("from", "to"))?;
    Ok(days)
}

#[utoipa::path(get, path = "/analytics/orders", tag = "analytics",
    params(
        ("from" = Option<String>, Query, format = Date, description = "first UTC day (inclusive), e.g. 2026-01-31"),
        ("to" = Option<String>, Query, format = Date, description = "UTC day after the last (exclusive)"),
    ),
    responses((status = 200, body = OrderVolume), (status = 400, body = Problem)))]
pub(crate) async fn orders(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<OrderVolume>> {
    let days = days(q.as_deref())?;
    let rows = analytics::order_days(app.read_pool(), days).await?;
    Ok(Json(dto::order_volume(rows)))
}

#[utoipa::path(get, path = "/analytics/captures", tag = "analytics",
    params(
        ("from" = Option<String>, Query, format = Date, description = "first UTC day (inclusive), e.g. 2026-01-31"),
        ("to" = Option<String>, Query, format = Date, description = "UTC day after the last (exclusive)"),
    ),
    responses((status = 200, body = CaptureVolume), (status = 400, body = Problem)))]
pub(crate) async fn captures(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<CaptureVolume>> {
    let days = days(q.as_deref())?;
    let rows = analytics::capture_days(app.read_pool(), days).await?;
    Ok(Json(dto::capture_volume(rows)))
}

#[utoipa::path(get, path = "/analytics/disputes", tag = "analytics",
    params(
        ("from" = Option<String>, Query, format = Date, description = "first UTC day of decisions (inclusive), e.g. 2026-01-31"),
        ("to" = Option<String>, Query, format = Date, description = "UTC day after the last (exclusive)"),
    ),
    responses((status = 200, body = DisputeAnalytics), (status = 400, body = Problem)))]
pub(crate) async fn disputes(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<DisputeAnalytics>> {
    let days = days(q.as_deref())?;
    let pool = app.read_pool();
    let outcomes = analytics::dispute_outcomes(pool, days).await?;
    let times = analytics::decision_times(pool, days).await?;
    Ok(Json(dto::dispute_analytics(outcomes, times)))
}
