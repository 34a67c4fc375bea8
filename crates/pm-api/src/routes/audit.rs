//! The audit trail (scope `admin`).

use axum::extract::{RawQuery, State};
use axum::Json;
use pm_domain::pagination::{PageRequest, Sort};
use pm_storage::audit::{self, AuditFilter};

use crate::dto::{self, AuditEntry, List};
use crate::error::{ApiError, ApiResult};
use crate::query::{check_window, Params};
use crate::state::AppState;

#[utoipa::path(get, path = "/audit", tag = "operations",
    params(
        ("actor" = Option<String>, Query, description = "an API key's name, `reconciliation`, or `cli:…`"),
        ("action" = Option<Vec<String>>, Query, description = "hold_set, hold_cleared, capture_requested, capture_settled, evidence_saved, representment_submitted, api_key_created, api_key_revoked; repeatable"),
        ("object_type" = Option<String>, Query, description = "order | dispute | api_key"),
        ("object_id" = Option<String>, Query),
        ("time_from" = Option<String>, Query, format = DateTime, description = "inclusive"),
        ("time_to" = Option<String>, Query, format = DateTime, description = "exclusive"),
        ("sort" = Option<crate::dto::requests::names::Sort>, Query, description = "asc | desc (default desc)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = List<AuditEntry>)))]
pub(crate) async fn list_audit(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<List<AuditEntry>>> {
    let (filter, page) = audit_filter(Params::new(q.as_deref()))?;
    let result = audit::list(app.read_pool(), &filter, &page).await?;
    Ok(Json(dto::list(result, dto::audit_entry)))
}

/// The filters and page of `GET /audit` (and the admin UI's audit page).
pub(crate) fn audit_filter(mut p: Params) -> Result<(AuditFilter, PageRequest), ApiError> {
    let filter = AuditFilter {
        actor: p.text("actor")?,
        actions: p.all::<String>("action")?,
        object_type: p.text("object_type")?,
        object_id: p.text("object_id")?,
        time_from: p.time("time_from")?,
        time_to: p.time("time_to")?,
    };
    if filter
        .actions
        .iter()
        .any(|a| a.chars().any(char::is_control))
    {
        return Err(pm_http::Problem::bad_request(
            "query parameter `action`: must not contain control characters",
        )
        .into());
    }
    let page = p.page(Sort::Desc)?;
    p.finish()?;
    check_window(filter.time_from, filter.time_to, ("time_from", "time_to"))?;
    Ok((filter, page))
}
