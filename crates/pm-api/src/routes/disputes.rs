//! Dispute reads, evidence and representment submission.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pm_domain::dispute::DisputeStatus;
use pm_domain::event::DisputeEventKind;
use pm_domain::evidence::Evidence as EvidenceInput;
use pm_domain::pagination::{PageRequest, Sort};
use pm_domain::{DisputeId, OrderId};
use pm_http::intake::read_json_body;
use pm_http::Problem;
use pm_provider::ProviderError;
use pm_storage::disputes::{self, DisputeFilter, EvidenceOutcome, SubmissionPlan};
use pm_storage::events::{self, EventTable};
use pm_telemetry::CorrelationId;

use super::orders::event_filter;
use super::{PathParam, MAX_COMMAND_BODY};
use crate::auth::Operator;
use crate::dto::{self, Dispute, Event, Evidence, List, Submission};
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::AppState;

pub(crate) fn dispute_id(raw: &str) -> Result<DisputeId, Problem> {
    DisputeId::parse(raw).map_err(|e| Problem::bad_request(format!("dispute_id {e}")))
}

fn unknown_dispute(id: DisputeId) -> Problem {
    Problem::not_found(format!("dispute {id} does not exist"))
}

#[utoipa::path(get, path = "/disputes", tag = "disputes",
    params(
        ("status" = Option<Vec<crate::dto::requests::names::DisputeStatus>>, Query, description = "open | under_review | submitted | won | lost | closed | canceled; repeatable"),
        ("reason" = Option<String>, Query),
        ("dispute_id" = Option<Vec<String>>, Query, description = "only these disputes (UUIDs); repeatable (at most 100)"),
        ("dispute_ids" = Option<String>, Query, description = "the same, comma-separated"),
        ("order_id" = Option<Vec<String>>, Query, description = "only disputes of these orders; repeatable (at most 100)"),
        ("order_ids" = Option<String>, Query, description = "the same, comma-separated"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("sort" = Option<crate::dto::requests::names::Sort>, Query, description = "asc | desc (default desc)"),
        ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = List<Dispute>), (status = 400, body = Problem)))]
pub(crate) async fn list_disputes(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<Dispute>>> {
    let (filter, page) = dispute_filter(Params::new(q.as_deref()))?;
    let result = disputes::list(app.read_pool(), &filter, &page).await?;
    Ok(Json(dto::list(result, dto::dispute)))
}

/// The filters and page of `GET /disputes` (and the admin UI's disputes list).
pub(crate) fn dispute_filter(mut p: Params) -> Result<(DisputeFilter, PageRequest), ApiError> {
    let filter = DisputeFilter {
        dispute_ids: p.ids("dispute_id", "dispute_ids", DisputeId::parse)?,
        order_ids: p.ids("order_id", "order_ids", |id: &str| OrderId::parse(id))?,
        statuses: p.all::<DisputeStatus>("status")?,
        reason: p.text("reason")?,
    };
    let page = p.page(Sort::Desc)?;
    p.finish()?;
    Ok((filter, page))
}

#[utoipa::path(get, path = "/disputes/{dispute_id}", tag = "disputes",
    params(("dispute_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Dispute), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_dispute(
    State(app): State<AppState>,
    PathParam(id): PathParam,
) -> ApiResult<Json<Dispute>> {
    let id = dispute_id(&id)?;
    let d = disputes::get(app.read_pool(), id)
        .await?
        .ok_or_else(|| unknown_dispute(id))?;
    Ok(Json(dto::dispute(d)))
}

#[utoipa::path(get, path = "/disputes/events", tag = "disputes",
    params(
        ("dispute_id" = Option<Vec<String>>, Query, description = "only events of these disputes (UUIDs); repeatable (at most 100)"),
        ("dispute_ids" = Option<String>, Query, description = "the same, comma-separated"),
        ("kind" = Option<Vec<crate::dto::requests::names::DisputeEventKind>>, Query, description = "event kind; repeatable"),
        ("time_from" = Option<String>, Query, format = DateTime), ("time_to" = Option<String>, Query, format = DateTime),
        ("sort" = Option<crate::dto::requests::names::Sort>, Query, description = "asc (default) | desc"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = List<Event>), (status = 400, body = Problem)))]
pub(crate) async fn list_dispute_events(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<Event>>> {
    let mut p = Params::new(q.as_deref());
    let disputes = p.ids("dispute_id", "dispute_ids", DisputeId::parse)?;
    let filter = event_filter::<DisputeEventKind>(
        &mut p,
        disputes.iter().map(ToString::to_string).collect(),
    )?;
    let page = p.page(Sort::Asc)?;
    p.finish()?;
    let result = events::list_events(app.read_pool(), EventTable::Dispute, &filter, &page).await?;
    Ok(Json(dto::list(result, dto::dispute_event)))
}

#[utoipa::path(get, path = "/disputes/{dispute_id}/evidence", tag = "disputes",
    params(("dispute_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Evidence), (status = 404, description = "No such dispute, or no evidence yet", body = Problem)))]
pub(crate) async fn get_evidence(
    State(app): State<AppState>,
    PathParam(id): PathParam,
) -> ApiResult<Json<Evidence>> {
    let id = dispute_id(&id)?;
    match disputes::get_evidence(app.read_pool(), id).await? {
        Some(e) => Ok(Json(dto::evidence(e))),
        None if disputes::get(app.read_pool(), id).await?.is_some() => {
            Err(Problem::not_found(format!("dispute {id} has no evidence yet")).into())
        }
        None => Err(unknown_dispute(id).into()),
    }
}

#[utoipa::path(post, path = "/disputes/{dispute_id}/evidence", tag = "disputes",
    params(("dispute_id" = String, Path, format = Uuid)),
    request_body(content = crate::dto::requests::EvidenceRequest, content_type = "application/json",
        description = "Replaces earlier evidence"),
    responses((status = 200, body = Evidence), (status = 404, body = Problem),
              (status = 409, description = "The dispute no longer accepts evidence", body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn put_evidence(
    State(app): State<AppState>,
    PathParam(id): PathParam,
    Extension(operator): Extension<Operator>,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Evidence>> {
    let id = dispute_id(&id)?;
    let bytes = read_json_body(&headers, body, MAX_COMMAND_BODY).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| pm_domain::InputError::Malformed(e.to_string()))?;
    let evidence = EvidenceInput::from_json(&value).map_err(pm_domain::InputError::Invalid)?;
    let stored = store_evidence(&app, id, &evidence, &operator, &correlation).await?;
    Ok(Json(dto::evidence(stored)))
}

/// Stores `evidence` for dispute `id`, replacing earlier evidence (the JSON route and the
/// admin UI's evidence form).
pub(crate) async fn store_evidence(
    app: &AppState,
    id: DisputeId,
    evidence: &EvidenceInput,
    operator: &Operator,
    correlation: &CorrelationId,
) -> ApiResult<disputes::EvidenceRecord> {
    match disputes::upsert_evidence(
        app.pool(),
        id,
        evidence,
        &operator.actor(correlation),
        pm_domain::time::now(),
    ).await? {
        EvidenceOutcome::Stored(e) => Ok(e),
        EvidenceOutcome::NotFound => Err(unknown_dispute(id).into()),
        EvidenceOutcome::NotAccepted(status) => Err(Problem::conflict(
            "dispute-not-editable",
            format!("dispute {id} is {status}; evidence can be stored only while it is open or under_review"),
        )
        .into()),
    }
}

#[utoipa::path(post, path = "/disputes/{dispute_id}/submit", tag = "disputes",
    params(("dispute_id" = String, Path, format = Uuid)),
    responses(
        (status = 202, description = "The provider accepted the representment", body = Submission),
        (status = 404, body = Problem),
        (status = 409, description = "Not eligible, or no evidence", body = Problem),
        (status = 422, description = "The provider refused it (its message is in detail)", body = Problem),
        (status = 502, description = "The provider is unavailable", body = Problem),
    ))]
pub(crate) async fn submit(
    State(app): State<AppState>,
    PathParam(id): PathParam,
    Extension(operator): Extension<Operator>,
    Extension(correlation): Extension<CorrelationId>,
) -> ApiResult<Response> {
    let id = dispute_id(&id)?;
    let body = run_submit(&app, id, &operator, &correlation).await?;
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Submits dispute `id`'s evidence to the provider as a representment (the JSON route and
/// the admin UI). The same evidence submitted twice is one representment at the provider.
pub(crate) async fn run_submit(
    app: &AppState,
    id: DisputeId,
    operator: &Operator,
    correlation: &CorrelationId,
) -> ApiResult<Submission> {
    let (dispute, evidence) = match disputes::plan_submission(app.pool(), id).await? {
        SubmissionPlan::Ready { dispute, evidence } => (dispute, evidence),
        SubmissionPlan::NotFound => return Err(unknown_dispute(id).into()),
        SubmissionPlan::NotEligible(status) => {
            return Err(Problem::conflict(
                "dispute-not-eligible",
                format!(
                    "dispute {id} is {status}; only open or under_review disputes can be submitted"
                ),
            )
            .into())
        }
        SubmissionPlan::NoEvidence => {
            return Err(Problem::conflict(
                "no-evidence",
                format!("dispute {id} has no evidence; store evidence first"),
            )
            .into())
        }
    };
    let order_id =
        pm_domain::OrderId::parse(dispute.order_id.clone()).map_err(|_| Problem::internal())?;
    // The same evidence submitted twice is one representment at the provider.
    let idempotency_key = format!(
        "representment:{id}:{}",
        evidence.updated_at.timestamp_micros()
    );
    // No transaction is open during the provider call.
    let submitted = app
        .inner
        .provider
        .submit_representment(
            &order_id,
            &evidence.evidence.file_ids(),
            &idempotency_key,
            correlation.as_str(),
        )
        .await;
    let representment = match submitted {
        Ok(r) => r,
        Err(ProviderError::Rejected { code, message, .. }) => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "provider-rejected",
                format!("the provider refused the representment: {message} ({code})"),
            )
            .into())
        }
        Err(e) => {
            tracing::warn!(error = %e, dispute_id = %id, "submit: provider unavailable");
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "provider-unavailable",
                format!("the provider is unavailable: {e}"),
            )
            .into());
        }
    };
    let updated = disputes::record_submission(
        app.pool(),
        id,
        &representment.id,
        &operator.actor(correlation),
        pm_domain::time::now(),
    )
    .await?
    .ok_or_else(|| unknown_dispute(id))?;
    Ok(Submission {
        submission_id: representment.id,
        status: updated.status.as_str().to_owned(),
        submitted_at: updated.submitted_at,
    })
}
