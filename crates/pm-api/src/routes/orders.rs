//! Order reads, hold and capture.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use pm_domain::command::{CaptureCommand, HoldChange};
use pm_domain::event::OrderEventKind;
use pm_domain::order::OrderStatus;
use pm_domain::pagination::{PageRequest, Sort};
use pm_domain::{IdempotencyKey, OrderId, UserId};
use pm_http::intake::read_json_body;
use pm_http::Problem;
use pm_storage::audit;
use pm_storage::captures::{self, CaptureStart, CaptureStatus, SettledBy};
use pm_storage::events::{self, EventFilter, EventTable};
use pm_storage::orders::{self, OrderFilter};
use pm_telemetry::CorrelationId;

use super::{PathParam, MAX_COMMAND_BODY};
use crate::auth::Operator;
use crate::captures::Answer;
use crate::dto::{self, Capture, Event, Hold, List, Order};
use crate::error::{ApiError, ApiResult};
use crate::query::{check_window, Params};
use crate::state::AppState;

pub(crate) fn order_id(raw: &str) -> Result<OrderId, Problem> {
    OrderId::parse(raw).map_err(|e| Problem::bad_request(format!("order_id {e}")))
}

fn unknown_order(id: &OrderId) -> Problem {
    Problem::not_found(format!("order {id} does not exist"))
}

#[utoipa::path(get, path = "/orders", tag = "orders",
    params(
        ("order_id" = Option<Vec<String>>, Query, description = "only these orders; repeatable (at most 100)"),
        ("order_ids" = Option<String>, Query, description = "the same, comma-separated"),
        ("status" = Option<Vec<crate::dto::requests::names::OrderStatus>>, Query, description = "created | updated | success | failed; repeatable"),
        ("user_id" = Option<String>, Query, format = Uuid),
        ("on_hold" = Option<bool>, Query),
        ("created_from" = Option<String>, Query, format = DateTime, description = "inclusive"),
        ("created_to" = Option<String>, Query, format = DateTime, description = "exclusive"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "default 50"),
        ("sort" = Option<crate::dto::requests::names::Sort>, Query, description = "asc | desc (default desc)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = List<Order>), (status = 400, body = Problem)))]
pub(crate) async fn list_orders(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<Order>>> {
    let (filter, page) = order_filter(Params::new(q.as_deref()))?;
    let result = orders::list(app.read_pool(), &filter, &page).await?;
    Ok(Json(dto::list(result, dto::order)))
}

/// The filters and page of `GET /orders` (and the admin UI's orders list).
pub(crate) fn order_filter(mut p: Params) -> Result<(OrderFilter, PageRequest), ApiError> {
    let filter = OrderFilter {
        order_ids: p.ids("order_id", "order_ids", |id: &str| OrderId::parse(id))?,
        statuses: p.all::<OrderStatus>("status")?,
        user_id: p.one::<UserId>("user_id")?,
        on_hold: p.flag("on_hold")?,
        created_from: p.time("created_from")?,
        created_to: p.time("created_to")?,
    };
    let page = p.page(Sort::Desc)?;
    p.finish()?;
    check_window(
        filter.created_from,
        filter.created_to,
        ("created_from", "created_to"),
    )?;
    Ok((filter, page))
}

#[utoipa::path(get, path = "/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path)),
    responses((status = 200, body = Order), (status = 404, body = Problem)))]
pub(crate) async fn get_order(
    State(app): State<AppState>,
    PathParam(id): PathParam,
) -> ApiResult<Json<Order>> {
    let id = order_id(&id)?;
    let order = orders::get(app.read_pool(), &id)
        .await?
        .ok_or_else(|| unknown_order(&id))?;
    Ok(Json(dto::order(order)))
}

/// The filters shared by both event routes.
pub(crate) fn event_filter<K>(
    p: &mut Params,
    aggregate_ids: Vec<String>,
) -> Result<EventFilter, Problem>
where
    K: std::str::FromStr + std::fmt::Display,
    K::Err: std::fmt::Display,
{
    let filter = EventFilter {
        aggregate_ids,
        kinds: p
            .all::<K>("kind")?
            .iter()
            .map(ToString::to_string)
            .collect(),
        time_from: p.time("time_from")?,
        time_to: p.time("time_to")?,
    };
    check_window(filter.time_from, filter.time_to, ("time_from", "time_to"))?;
    Ok(filter)
}

#[utoipa::path(get, path = "/orders/events", tag = "orders",
    params(
        ("order_id" = Option<Vec<String>>, Query, description = "only events of these orders; repeatable (at most 100)"),
        ("order_ids" = Option<String>, Query, description = "the same, comma-separated"),
        ("kind" = Option<Vec<crate::dto::requests::names::OrderEventKind>>, Query, description = "event kind; repeatable"),
        ("time_from" = Option<String>, Query, format = DateTime, description = "inclusive"),
        ("time_to" = Option<String>, Query, format = DateTime, description = "exclusive"),
        ("sort" = Option<crate::dto::requests::names::Sort>, Query, description = "asc (default) | desc"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = List<Event>), (status = 400, body = Problem)))]
pub(crate) async fn list_order_events(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<Event>>> {
    let mut p = Params::new(q.as_deref());
    let orders = p.ids("order_id", "order_ids", |id: &str| OrderId::parse(id))?;
    let filter =
        event_filter::<OrderEventKind>(&mut p, orders.into_iter().map(String::from).collect())?;
    let page = p.page(Sort::Asc)?;
    p.finish()?;
    let result = events::list_events(app.read_pool(), EventTable::Order, &filter, &page).await?;
    Ok(Json(dto::list(result, dto::order_event)))
}

#[utoipa::path(get, path = "/orders/{order_id}/events", tag = "orders",
    params(("order_id" = String, Path), ("kind" = Option<Vec<crate::dto::requests::names::OrderEventKind>>, Query), ("time_from" = Option<String>, Query),
           ("time_to" = Option<String>, Query), ("sort" = Option<crate::dto::requests::names::Sort>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = List<Event>), (status = 404, body = Problem)))]
pub(crate) async fn order_events(
    State(app): State<AppState>,
    PathParam(id): PathParam,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<Event>>> {
    let id = order_id(&id)?;
    let mut p = Params::new(q.as_deref());
    let filter = event_filter::<OrderEventKind>(&mut p, vec![id.to_string()])?;
    let page = p.page(Sort::Asc)?;
    p.finish()?;
    if orders::get(app.read_pool(), &id).await?.is_none() {
        return Err(unknown_order(&id).into());
    }
    let result = events::list_events(app.read_pool(), EventTable::Order, &filter, &page).await?;
    Ok(Json(dto::list(result, dto::order_event)))
}

#[utoipa::path(post, path = "/orders/{order_id}/hold", tag = "orders",
    params(("order_id" = String, Path)),
    request_body(content = crate::dto::requests::HoldRequest, content_type = "application/json"),
    responses((status = 200, body = Hold), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn hold(
    State(app): State<AppState>,
    PathParam(id): PathParam,
    Extension(operator): Extension<Operator>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Hold>> {
    let id = order_id(&id)?;
    let change = HoldChange::parse(&read_json_body(&headers, body, MAX_COMMAND_BODY).await?)?;
    let actor = operator.actor(&correlation);
    let order = orders::set_hold(app.pool(), &id, change, &actor, pm_domain::time::now())
        .await?
        .ok_or_else(|| unknown_order(&id))?;
    Ok(Json(dto::hold(order)))
}

/// A settled capture: 200 with the capture, or 502 with the provider's reason.
pub(crate) fn capture_response(c: &captures::CaptureRecord) -> Response {
    match capture_problem(c) {
        None => (StatusCode::OK, Json(dto::capture(c))).into_response(),
        Some(p) => p.into_response(),
    }
}

/// Why a capture did not (or may not have) charged: `None` when it captured.
pub(crate) fn capture_problem(c: &captures::CaptureRecord) -> Option<Problem> {
    match c.status {
        CaptureStatus::Success => None,
        CaptureStatus::Pending | CaptureStatus::Unknown => Some(outcome_unknown(
            c.last_error.as_deref().unwrap_or("no answer yet"),
            &c.idempotency_key,
        )),
        CaptureStatus::Failed => {
            let reason = c
                .failure_reason
                .as_deref()
                .unwrap_or("the provider did not capture");
            let mut p = Problem::new(
                StatusCode::BAD_GATEWAY,
                "capture-failed",
                format!("the provider did not capture: {reason}"),
            );
            p.title = "Capture failed".to_owned();
            Some(p)
        }
    }
}

fn outcome_unknown(error: &str, key: &IdempotencyKey) -> Problem {
    let mut p = Problem::new(
        StatusCode::BAD_GATEWAY,
        "capture-outcome-unknown",
        format!(
            "the provider's answer was lost ({error}); it may have captured. Retry with the \
             same idempotency_key {key} to learn the outcome, or wait for the reconciliation; \
             no other key can capture this order until then"
        ),
    );
    p.title = "Capture outcome unknown".to_owned();
    p.retry_after = Some(5);
    p
}

#[utoipa::path(post, path = "/orders/{order_id}/capture", tag = "orders",
    params(("order_id" = String, Path)),
    request_body(content = crate::dto::requests::CaptureRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Captured (or the stored result of the same request)", body = Capture),
        (status = 404, body = Problem),
        (status = 409, description = "On hold, final, already captured, in progress, or another key's capture is unsettled (the detail names the key to retry with)", body = Problem),
        (status = 422, description = "Invalid body, or the key was used for a different request", body = Problem),
        (status = 502, description = "The provider declined (capture-failed) or its answer was lost (capture-outcome-unknown: retry with the same key)", body = Problem),
    ))]
pub(crate) async fn capture(
    State(app): State<AppState>,
    PathParam(id): PathParam,
    Extension(operator): Extension<Operator>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let id = order_id(&id)?;
    let cmd = CaptureCommand::parse(&read_json_body(&headers, body, MAX_COMMAND_BODY).await?)?;
    let record = run_capture(&app, &id, &cmd, &operator, &correlation).await?;
    Ok(capture_response(&record))
}

/// Captures `cmd` on order `id` for `operator`: the one capture path of the JSON route and
/// the admin UI. `Ok` is the capture as it stands — captured, declined, or with an unknown
/// outcome (the provider's answer was lost); `Err` is a refusal, nothing was charged.
pub(crate) async fn run_capture(
    app: &AppState,
    id: &OrderId,
    cmd: &CaptureCommand,
    operator: &Operator,
    correlation: &CorrelationId,
) -> ApiResult<captures::CaptureRecord> {
    let key = &cmd.idempotency_key;
    let actor = operator.actor(correlation);
    let start = captures::begin(
        app.pool(),
        id,
        &cmd.money,
        key,
        &actor,
        pm_domain::time::now(),
        app.inner.config.capture_stale_after,
    )
    .await?;
    if let Some(refusal) = refusal_of(&start) {
        audit::record_alone(
            app.pool(),
            &audit::Entry {
                actor: &actor,
                action: "capture_requested",
                object_type: "order",
                object_id: id.as_str(),
                outcome: &format!("refused: {refusal}"),
                detail: serde_json::json!({ "idempotency_key": key.as_str() }),
            },
            pm_domain::time::now(),
        )
        .await?;
    }
    let pending = match start {
        CaptureStart::Proceed(record) => record,
        CaptureStart::Replay(record) => return Ok(record),
        CaptureStart::InProgress => {
            let mut p = Problem::conflict(
                "capture-in-progress",
                "a capture with this idempotency_key is calling the provider; retry with the same key",
            );
            p.retry_after = Some(1);
            return Err(p.into());
        }
        CaptureStart::OpenUnderOtherKey {
            idempotency_key,
            in_flight,
        } => {
            let what = if in_flight {
                "is calling the provider"
            } else {
                "has an unknown outcome (the provider may have captured)"
            };
            let mut p = Problem::conflict(
                "capture-unsettled",
                format!(
                    "a capture of order {id} under idempotency_key {idempotency_key} {what}; \
                     retry with that key to settle it — another key could charge twice"
                ),
            );
            p.retry_after = Some(1);
            return Err(p.into());
        }
        CaptureStart::KeyReused => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this idempotency_key was used for a different capture request",
            )
            .into())
        }
        CaptureStart::OrderNotFound => return Err(unknown_order(id).into()),
        CaptureStart::OnHold(reason) => {
            let why = reason.map_or(String::new(), |r| format!(" ({})", r.as_str()));
            return Err(Problem::conflict(
                "order-on-hold",
                format!("order {id} is on hold{why}; clear the hold first"),
            )
            .into());
        }
        CaptureStart::Final(status) => {
            return Err(Problem::conflict(
                "order-final",
                format!("order {id} is {status}; a final order cannot be captured"),
            )
            .into())
        }
        CaptureStart::AlreadyCaptured { idempotency_key } => {
            return Err(Problem::conflict(
                "already-captured",
                format!("order {id} was already captured (idempotency_key {idempotency_key})"),
            )
            .into())
        }
    };

    // No transaction is open here: the provider may take seconds.
    let answer = Answer::of_capture(
        app.inner
            .provider
            .capture(id, &pending.money, key, correlation.as_str())
            .await,
    );
    let result = match answer {
        Answer::Known(result) => result,
        Answer::Unknown(error) => {
            tracing::warn!(%error, order_id = %id, "capture: the provider's answer was lost; outcome unknown");
            captures::mark_unknown(app.pool(), key, &error, &actor, pm_domain::time::now()).await?;
            app.inner.metrics.count_capture("unknown", "request");
            return Ok(captures::CaptureRecord {
                status: CaptureStatus::Unknown,
                last_error: Some(error),
                ..pending
            });
        }
    };
    let stored = captures::finish(
        app.pool(),
        key,
        &result,
        SettledBy::Request,
        &actor,
        pm_domain::time::now(),
    )
    .await?;
    app.inner
        .metrics
        .count_capture(stored.status.as_str(), "request");
    Ok(stored)
}

/// Why `begin` refused a capture (for the audit trail); `None` when it may go on or
/// replays a stored result.
fn refusal_of(start: &CaptureStart) -> Option<&'static str> {
    match start {
        CaptureStart::Proceed(_) | CaptureStart::Replay(_) => None,
        CaptureStart::InProgress => Some("in progress"),
        CaptureStart::OpenUnderOtherKey { .. } => Some("another key's capture is unsettled"),
        CaptureStart::KeyReused => Some("idempotency key reused"),
        CaptureStart::OrderNotFound => Some("order not found"),
        CaptureStart::OnHold(_) => Some("on hold"),
        CaptureStart::Final(_) => Some("final"),
        CaptureStart::AlreadyCaptured { .. } => Some("already captured"),
    }
}

#[utoipa::path(get, path = "/orders/{order_id}/captures", tag = "orders",
    params(("order_id" = String, Path)),
    responses((status = 200, description = "The order's captures, newest first", body = Vec<Capture>), (status = 404, body = Problem)))]
pub(crate) async fn order_captures(
    State(app): State<AppState>,
    PathParam(id): PathParam,
) -> ApiResult<Json<Vec<Capture>>> {
    let id = order_id(&id)?;
    if orders::get(app.read_pool(), &id).await?.is_none() {
        return Err(unknown_order(&id).into());
    }
    let list = captures::of_order(app.read_pool(), &id).await?;
    Ok(Json(list.iter().map(dto::capture).collect()))
}
