//! The admin UI's pages (`GET`). Each page is also what an action on it answers with,
//! with the action's result at the top.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use pm_domain::api_key::Scope;
use pm_domain::dispute::DisputeStatus;
use pm_domain::order::{HoldReason, OrderStatus};
use pm_domain::pagination::{Page, PageRequest, Sort};
use pm_domain::DisputeId;
use pm_http::Problem;
use pm_kafka::dlq::ErrorClass;
use pm_kafka::replay::{DeadLetter, Filter};
use pm_storage::captures::{self, CaptureRecord, CaptureStatus};
use pm_storage::disputes;
use pm_storage::events::{self, EventFilter, EventRecord, EventTable};
use pm_storage::{audit, orders, partitions, PgPool};

use super::views::{self, badge, csrf, field_value, maybe_time, page, pager, select, time, Flash};
use super::{forms, session, Session};
use crate::error::ApiError;
use crate::query::Params;
use crate::routes::PathParam;
use crate::routes::{audit as audit_route, disputes as dispute_routes, orders as order_routes};
use crate::state::AppState;

/// Most timeline entries an order or dispute page shows.
const TIMELINE: i64 = 500;
/// Most dead letters the page lists per DLQ.
const DEAD_LETTERS_SHOWN: usize = 200;

fn problem(e: impl Into<ApiError>) -> Problem {
    e.into().into_problem()
}

/// Reads after an action go to the primary (the pool the action wrote with); plain page
/// views to the read pool.
fn pool_for<'a>(app: &'a AppState, flash: Option<&Flash>) -> &'a PgPool {
    if flash.is_some() {
        app.pool()
    } else {
        app.read_pool()
    }
}

/// `GET /admin/login`.
pub(crate) async fn login(
    State(app): State<AppState>,
    session: Option<Session>,
    parts: axum::http::request::Parts,
) -> Response {
    if session.is_some() {
        return Redirect::to("/admin/orders").into_response();
    }
    let next = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    login_page(super::over_tls(&app, &parts), next.as_deref(), None)
}

/// The login form, with a fresh login token in it and in its cookie.
pub(crate) fn login_page(secure: bool, next: Option<&str>, flash: Option<&Flash>) -> Response {
    let token = session::Sessions::login_token();
    let body = html! {
        section.login {
            h1 { "Log in" }
            p { "Paste an API key (" code { "pmctl api-keys create" } "). The page offers what its scopes allow." }
            form method="post" action="/admin/login" hx-boost="false" {
                input type="hidden" name="login_token" value=(token);
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" autocomplete="off" required placeholder="pmk_…" autofocus;
                button type="submit" { "Log in" }
            }
        }
    };
    let response = page(None, "Log in", "", flash, body);
    super::with_cookie(
        response,
        &session::set_cookie(
            session::LOGIN_COOKIE,
            &token,
            "/admin/login",
            std::time::Duration::from_secs(3600),
            secure,
        ),
    )
}

/// `GET /admin/orders`: the orders, filtered and paged like `GET /orders`.
pub(crate) async fn orders(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let filters = forms::query_filters(q.as_deref());
    let (items, next, flash) = listed(&filters, order_routes::order_filter, |f, page| async move {
        orders::list(app.read_pool(), &f, &page).await
    })
    .await;
    let body = html! {
        h1 { "Orders" }
        form.filters method="get" action="/admin/orders" {
            label { "Status " (select("status", &statuses(OrderStatus::ALL.iter().map(|s| s.as_str())), views::current(&filters, "status"))) }
            label { "Hold " (select("on_hold", &[("", "any"), ("true", "on hold"), ("false", "not on hold")], views::current(&filters, "on_hold"))) }
            label { "User " input type="text" name="user_id" size="36" placeholder="user id (UUID)" value=(field_value(&filters, "user_id")); }
            label { "Order " input type="text" name="order_id" placeholder="order id" value=(field_value(&filters, "order_id")); }
            label { "Created from " input type="date" name="created_from" value=(field_value(&filters, "created_from")); }
            label { "to " input type="date" name="created_to" value=(field_value(&filters, "created_to")); }
            button type="submit" { "Filter" }
            a.reset href="/admin/orders" { "Reset" }
        }
        @if items.is_empty() {
            p.empty { "No orders match." }
        } @else {
            table.list #orders {
                thead { tr { th { "Order" } th { "User" } th { "Status" } th { "Hold" } th { "Created" } th { "Updated" } } }
                tbody {
                    @for o in &items {
                        tr {
                            td { a href={ "/admin/orders/" (url(&o.order_id)) } { (o.order_id) } }
                            td.mono { (o.user_id.as_uuid()) }
                            td { (badge(o.status.as_str())) }
                            td { @if o.on_hold { (badge("hold")) " " (o.hold_reason.map_or("", HoldReason::as_str)) } }
                            td { (time(&o.created_at)) }
                            td { (time(&o.updated_at)) }
                        }
                    }
                }
            }
        }
        (pager("/admin/orders", &filters, next.as_deref()))
    };
    page(Some(&session), "Orders", "orders", flash.as_ref(), body)
}

/// The options of a status filter: any, or one of `all`.
fn statuses(all: impl Iterator<Item = &'static str>) -> Vec<(&'static str, String)> {
    std::iter::once(("", "any status".to_owned()))
        .chain(all.map(|s| (s, s.replace('_', " "))))
        .collect()
}

/// One page of a list for `filters`, parsed by the JSON route's `parse` and read by
/// `fetch`: its rows and next cursor, or the problem to show above an empty list.
async fn listed<F, R, Fut>(
    filters: &[(String, String)],
    parse: impl FnOnce(Params) -> Result<(F, PageRequest), ApiError>,
    fetch: impl FnOnce(F, PageRequest) -> Fut,
) -> (Vec<R>, Option<String>, Option<Flash>)
where
    Fut: std::future::Future<Output = Result<Page<R>, pm_storage::StorageError>>,
{
    let page = match parse(Params::from_pairs(filters.to_vec())) {
        Ok((filter, page)) => fetch(filter, page).await.map_err(problem),
        Err(e) => Err(e.into_problem()),
    };
    match page {
        Ok(p) => (p.items, p.next_cursor, None),
        Err(p) => (Vec::new(), None, Some(Flash::Failed(p))),
    }
}

/// A path segment of a link.
pub(crate) fn url(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `GET /admin/orders/{order_id}`.
pub(crate) async fn order(
    State(app): State<AppState>,
    session: Session,
    PathParam(id): PathParam,
) -> Response {
    order_page(&app, &session, &id, None).await
}

fn timeline_page() -> PageRequest {
    PageRequest::new(Some(TIMELINE), Sort::Asc, None).expect("a valid page size")
}

async fn timeline(
    pool: &PgPool,
    table: EventTable,
    id: String,
) -> Result<Vec<EventRecord>, Problem> {
    let filter = EventFilter {
        aggregate_ids: vec![id],
        kinds: Vec::new(),
        time_from: None,
        time_to: None,
    };
    events::list_events(pool, table, &filter, &timeline_page())
        .await
        .map(|p| p.items)
        .map_err(problem)
}

fn timeline_table(events: &[EventRecord]) -> Markup {
    html! {
        @if events.is_empty() {
            p.empty { "No events yet." }
        } @else {
            ol.timeline {
                @for e in events {
                    li {
                        (time(&e.created_at)) " "
                        span.kind { (e.kind) }
                        @if let Some(p) = &e.provider_event_id { " " span.muted title="the provider's event id" { (p) } }
                        " " (views::json(e.data.get()))
                    }
                }
            }
        }
    }
}

/// The order page, with `flash` when it answers an action.
pub(crate) async fn order_page(
    app: &AppState,
    s: &Session,
    raw_id: &str,
    flash: Option<Flash>,
) -> Response {
    let id = match order_routes::order_id(raw_id) {
        Ok(id) => id,
        Err(p) => return views::error_page(Some(s), p),
    };
    let pool = pool_for(app, flash.as_ref());
    let order = match orders::get(pool, &id).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return views::error_page(
                Some(s),
                Problem::not_found(format!("order {id} does not exist")),
            )
        }
        Err(e) => return views::error_page(Some(s), problem(e)),
    };
    let (events, captures) = match (
        timeline(pool, EventTable::Order, id.to_string()).await,
        captures::of_order(pool, &id).await.map_err(problem),
    ) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(p), _) | (_, Err(p)) => return views::error_page(Some(s), p),
    };
    let operate = s.can(Scope::Operate);
    let base = format!("/admin/orders/{}", url(id.as_str()));
    let body = html! {
        p.crumbs { a href="/admin/orders" { "Orders" } " / " (id) }
        h1 { "Order " (id) " " (badge(order.status.as_str())) }
        dl.facts {
            dt { "User" } dd.mono { (order.user_id.as_uuid()) }
            dt { "Hold" } dd #hold-state {
                @if order.on_hold { (badge("hold")) " " (order.hold_reason.map_or("", HoldReason::as_str)) } @else { "not on hold" }
            }
            dt { "Created" } dd { (time(&order.created_at)) }
            dt { "Updated" } dd { (time(&order.updated_at)) }
        }
        @if operate {
            section.actions {
                h2 { "Hold" }
                form.inline method="post" action={ (base) "/hold" } #hold-form {
                    (csrf(s))
                    @if order.on_hold {
                        input type="hidden" name="action" value="clear";
                        button type="submit" #clear-hold { "Clear the hold" }
                    } @else {
                        input type="hidden" name="action" value="set";
                        label { "Reason " (select("reason", &[("manual_review", "manual review"), ("risk", "risk")], None)) }
                        button type="submit" #place-hold { "Place a hold" }
                    }
                }
            }
        }
        section {
            h2 { "Captures" }
            (captures_table(&captures))
            @if operate { (capture_form(s, &base, &order, &captures)) }
        }
        section {
            h2 { "Timeline" }
            (timeline_table(&events))
        }
    };
    page(
        Some(s),
        &format!("Order {id}"),
        "orders",
        flash.as_ref(),
        body,
    )
}

fn captures_table(list: &[CaptureRecord]) -> Markup {
    html! {
        @if list.is_empty() {
            p.empty { "No capture yet." }
        } @else {
            table.list #captures {
                thead { tr { th { "State" } th { "Amount" } th { "Idempotency key" } th { "Attempts" } th { "Provider" } th { "Captured" } } }
                tbody {
                    @for c in list {
                        tr {
                            td { (badge(c.status.as_str())) }
                            td { (c.money) }
                            td.mono { (c.idempotency_key) }
                            td { (c.attempts) }
                            td {
                                @match c.status {
                                    CaptureStatus::Success => { "transaction " span.mono { (c.provider_tx_id.as_deref().unwrap_or("?")) } }
                                    CaptureStatus::Failed => { "declined: " (c.failure_reason.as_deref().unwrap_or("no reason given")) }
                                    CaptureStatus::Unknown => { "answer lost (" (c.last_error.as_deref().unwrap_or("no answer")) "): it may have captured; retry with the same key or wait for the reconciliation" }
                                    CaptureStatus::Pending => { "calling the provider since " (time(&c.attempt_started_at)) }
                                }
                            }
                            td { (maybe_time(c.captured_at.as_ref())) }
                        }
                    }
                }
            }
        }
    }
}

fn capture_form(
    s: &Session,
    base: &str,
    order: &orders::OrderRecord,
    list: &[CaptureRecord],
) -> Markup {
    let open = list
        .iter()
        .find(|c| matches!(c.status, CaptureStatus::Pending | CaptureStatus::Unknown));
    let captured = list.iter().any(|c| c.status == CaptureStatus::Success);
    html! {
        @if let Some(c) = open {
            form.inline method="post" action={ (base) "/capture" } #capture-form {
                (csrf(s))
                input type="hidden" name="idempotency_key" value=(c.idempotency_key);
                input type="hidden" name="amount" value=(c.money.amount_text());
                input type="hidden" name="currency" value=(c.money.currency().code());
                button type="submit" #settle-capture { "Ask again (same key " (c.idempotency_key) ")" }
            }
        } @else if captured {
            p.muted { "Captured." }
        } @else if order.status.is_final() {
            p.muted { "The order is " (order.status.as_str()) "; it cannot be captured." }
        } @else {
            form.inline method="post" action={ (base) "/capture" } #capture-form {
                (csrf(s))
                // A key made with the form: sending it twice (a double click, a reload) is
                // one capture, answered with its stored result.
                input type="hidden" name="idempotency_key" value={ "admin-" (uuid::Uuid::new_v4()) };
                label { "Amount " input type="text" name="amount" inputmode="decimal" required size="10" placeholder="12.50"; }
                label { "Currency " input type="text" name="currency" required size="4" maxlength="3" placeholder="EUR"; }
                button type="submit" #capture { "Capture" }
            }
        }
    }
}

/// `GET /admin/disputes`.
pub(crate) async fn disputes(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let filters = forms::query_filters(q.as_deref());
    let (items, next, flash) = listed(
        &filters,
        dispute_routes::dispute_filter,
        |f, page| async move { disputes::list(app.read_pool(), &f, &page).await },
    )
    .await;
    let body = html! {
        h1 { "Disputes" }
        form.filters method="get" action="/admin/disputes" {
            label { "Status " (select("status", &statuses(DisputeStatus::ALL.iter().map(|s| s.as_str())), views::current(&filters, "status"))) }
            label { "Reason " input type="text" name="reason" value=(field_value(&filters, "reason")); }
            label { "Order " input type="text" name="order_id" value=(field_value(&filters, "order_id")); }
            button type="submit" { "Filter" }
            a.reset href="/admin/disputes" { "Reset" }
        }
        @if items.is_empty() {
            p.empty { "No disputes match." }
        } @else {
            table.list #disputes {
                thead { tr { th { "Dispute" } th { "Order" } th { "Status" } th { "Reason" } th { "Amount" } th { "Opened" } th { "Evidence due" } } }
                tbody {
                    @for d in &items {
                        tr {
                            td.mono { a href={ "/admin/disputes/" (d.dispute_id) } { (d.dispute_id) } }
                            td { a href={ "/admin/orders/" (url(&d.order_id)) } { (d.order_id) } }
                            td { (badge(d.status.as_str())) }
                            td { (d.reason) }
                            td { (d.money) }
                            td { (time(&d.opened_at)) }
                            td { (maybe_time(d.evidence_due_at.as_ref())) }
                        }
                    }
                }
            }
        }
        (pager("/admin/disputes", &filters, next.as_deref()))
    };
    page(Some(&session), "Disputes", "disputes", flash.as_ref(), body)
}

/// `GET /admin/disputes/{dispute_id}`.
pub(crate) async fn dispute(
    State(app): State<AppState>,
    session: Session,
    PathParam(id): PathParam,
) -> Response {
    dispute_page(&app, &session, &id, None, None).await
}

/// The evidence form's rows when an operator's input is shown again (after a refusal).
#[derive(Debug, Default)]
pub(crate) struct EvidenceDraft {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) files: Vec<[String; 4]>,
}

/// The dispute page, with `flash` when it answers an action (and the operator's evidence
/// input when it was refused).
pub(crate) async fn dispute_page(
    app: &AppState,
    s: &Session,
    raw_id: &str,
    flash: Option<Flash>,
    draft: Option<EvidenceDraft>,
) -> Response {
    let id: DisputeId = match dispute_routes::dispute_id(raw_id) {
        Ok(id) => id,
        Err(p) => return views::error_page(Some(s), p),
    };
    let pool = pool_for(app, flash.as_ref());
    let d = match disputes::get(pool, id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return views::error_page(
                Some(s),
                Problem::not_found(format!("dispute {id} does not exist")),
            )
        }
        Err(e) => return views::error_page(Some(s), problem(e)),
    };
    let (events, evidence) = match (
        timeline(pool, EventTable::Dispute, id.to_string()).await,
        disputes::get_evidence(pool, id).await.map_err(problem),
    ) {
        (Ok(e), Ok(ev)) => (e, ev),
        (Err(p), _) | (_, Err(p)) => return views::error_page(Some(s), p),
    };
    let editable = matches!(d.status, DisputeStatus::Open | DisputeStatus::UnderReview);
    let operate = s.can(Scope::Operate);
    let draft = draft.unwrap_or_else(|| EvidenceDraft {
        fields: evidence
            .as_ref()
            .map(|e| e.evidence.fields.clone().into_iter().collect())
            .unwrap_or_default(),
        files: evidence
            .as_ref()
            .map(|e| {
                e.evidence
                    .files
                    .iter()
                    .map(|f| {
                        [
                            f.file_id.clone(),
                            f.name.clone(),
                            f.content_type.clone(),
                            f.size.to_string(),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default(),
    });
    let base = format!("/admin/disputes/{id}");
    let body = html! {
        p.crumbs { a href="/admin/disputes" { "Disputes" } " / " (id) }
        h1 { "Dispute " span.mono { (id) } " " (badge(d.status.as_str())) }
        dl.facts {
            dt { "Order" } dd { a href={ "/admin/orders/" (url(&d.order_id)) } { (d.order_id) } }
            dt { "Reason" } dd { (d.reason) }
            dt { "Amount" } dd { (d.money) }
            dt { "Opened" } dd { (time(&d.opened_at)) }
            dt { "Evidence due" } dd { (maybe_time(d.evidence_due_at.as_ref())) }
            dt { "Submitted" } dd #submitted { (maybe_time(d.submitted_at.as_ref())) @if let Some(sub) = &d.submission_id { " as " span.mono { (sub) } } }
            dt { "Closed" } dd { (maybe_time(d.closed_at.as_ref())) }
        }
        section #evidence {
            h2 { "Evidence" }
            @match &evidence {
                None => p.empty { "No evidence stored yet." },
                Some(e) => {
                    p.muted { "Stored " (time(&e.updated_at)) }
                    @if !e.evidence.fields.is_empty() {
                        dl.facts { @for (k, v) in &e.evidence.fields { dt { (k) } dd.pre { (v) } } }
                    }
                    @if !e.evidence.files.is_empty() {
                        table.list { thead { tr { th { "File id" } th { "Name" } th { "Type" } th { "Bytes" } } }
                            tbody { @for f in &e.evidence.files { tr { td.mono { (f.file_id) } td { (f.name) } td { (f.content_type) } td { (f.size) } } } } }
                    }
                }
            }
            @if operate && editable {
                (evidence_form(s, &base, &draft))
                @if evidence.is_some() {
                    form.inline method="post" action={ (base) "/submit" } #submit-form {
                        (csrf(s))
                        button type="submit" #submit-evidence { "Submit the stored evidence to the provider" }
                    }
                }
            } @else if !editable {
                p.muted { "The dispute is " (d.status.as_str()) ": evidence can no longer change." }
            }
        }
        section {
            h2 { "Timeline" }
            (timeline_table(&events))
        }
    };
    page(
        Some(s),
        &format!("Dispute {id}"),
        "disputes",
        flash.as_ref(),
        body,
    )
}

fn evidence_form(s: &Session, base: &str, draft: &EvidenceDraft) -> Markup {
    let blank_fields = 2;
    let blank_files = 1;
    html! {
        form.evidence method="post" action={ (base) "/evidence" } #evidence-form {
            (csrf(s))
            fieldset {
                legend { "Fields (replace the stored evidence as a whole)" }
                @for (k, v) in &draft.fields {
                    div.row { input type="text" name="field_name" value=(k) placeholder="name"; textarea name="field_value" rows="2" placeholder="text" { (v) } }
                }
                @for _ in 0..blank_fields {
                    div.row { input type="text" name="field_name" placeholder="name, e.g. product_description"; textarea name="field_value" rows="2" placeholder="text" {} }
                }
            }
            fieldset {
                legend { "Files already uploaded to the provider" }
                @for f in &draft.files {
                    div.row.file {
                        input type="text" name="file_id" value=(f[0]) placeholder="file id";
                        input type="text" name="file_name" value=(f[1]) placeholder="name";
                        input type="text" name="file_type" value=(f[2]) placeholder="content type";
                        input type="text" name="file_size" value=(f[3]) placeholder="bytes" inputmode="numeric";
                    }
                }
                @for _ in 0..blank_files {
                    div.row.file {
                        input type="text" name="file_id" placeholder="file id";
                        input type="text" name="file_name" placeholder="name";
                        input type="text" name="file_type" placeholder="content type, e.g. application/pdf";
                        input type="text" name="file_size" placeholder="bytes" inputmode="numeric";
                    }
                }
            }
            button type="submit" #save-evidence { "Store the evidence" }
        }
    }
}

/// The DLQ topics and the filter of a dead-letters query (the page and its replay form).
pub(crate) fn dlq_filter(
    dead: &super::DeadLetters,
    filters: &[(String, String)],
) -> Result<(Vec<(String, String)>, Filter), Problem> {
    let mut p = Params::from_pairs(filters.to_vec());
    let bad = |name: &str, why: String| Problem::bad_request(format!("`{name}`: {why}"));
    let dlq = p.text("dlq")?;
    let topics: Vec<(String, String)> = dead
        .topics
        .iter()
        .filter(|(label, _)| dlq.as_deref().is_none_or(|d| d == label))
        .cloned()
        .collect();
    if topics.is_empty() {
        return Err(bad("dlq", "must be orders or disputes".to_owned()));
    }
    let error_class = match p.text("error_class")? {
        None => None,
        Some(c) => Some(
            ErrorClass::parse(&c)
                .ok_or_else(|| bad("error_class", "must be retryable or permanent".to_owned()))?,
        ),
    };
    let since: Option<DateTime<Utc>> = p.time("since")?;
    let until: Option<DateTime<Utc>> = p.time("until")?;
    let filter = Filter {
        since,
        until,
        error_class,
        error_contains: p.text("error_contains")?,
        key: p.text("key")?,
        event_type: p.text("type")?,
        at: None,
    };
    p.finish()?;
    Ok((topics, filter))
}

/// `GET /admin/dead-letters`.
pub(crate) async fn dead_letters(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let filters = forms::query_filters(q.as_deref());
    dead_letters_page(&app, &session, &filters, None).await
}

/// The dead letters matching `filters`, listed from the start of each DLQ to its end.
async fn list_dead_letters(
    dead: &super::DeadLetters,
    filters: &[(String, String)],
) -> Result<Vec<(String, DeadLetter)>, Problem> {
    let (topics, filter) = dlq_filter(dead, filters)?;
    let mut all = Vec::new();
    for (_, topic) in topics {
        let (config, filter, t) = (dead.config.clone(), filter.clone(), topic.clone());
        let found = tokio::task::spawn_blocking(move || {
            pm_kafka::replay::list(&config, &t, &filter, DEAD_LETTERS_SHOWN)
        })
        .await
        .map_err(|_| Problem::internal())?
        .map_err(|e| Problem::unavailable(format!("cannot read {topic}: {e}"), 5))?;
        all.extend(found.into_iter().map(|d| (topic.clone(), d)));
    }
    Ok(all)
}

/// The dead-letters page, with `flash` when it answers a replay.
pub(crate) async fn dead_letters_page(
    app: &AppState,
    s: &Session,
    filters: &[(String, String)],
    flash: Option<Flash>,
) -> Response {
    let Some(dead) = &app.inner.admin.dead_letters else {
        let body = html! {
            h1 { "Dead letters" }
            p.empty { "This instance runs in sync mode: webhooks are applied as they arrive and refused ones are retried by the provider, so there are no dead letters. They exist in kafka mode (" code { "serve-api --mode kafka" } ")." }
        };
        return page(
            Some(s),
            "Dead letters",
            "dead-letters",
            flash.as_ref(),
            body,
        );
    };
    let (listed, flash) = match (list_dead_letters(dead, filters).await, flash) {
        (Ok(l), f) => (l, f),
        (Err(p), None) => (Vec::new(), Some(Flash::Failed(p))),
        (Err(_), f) => (Vec::new(), f),
    };
    let operate = s.can(Scope::Operate);
    let labels: Vec<(&str, &str)> = std::iter::once(("", "both"))
        .chain(dead.topics.iter().map(|(l, _)| (l.as_str(), l.as_str())))
        .collect();
    let body = html! {
        h1 { "Dead letters" }
        form.filters method="get" action="/admin/dead-letters" {
            label { "DLQ " (select("dlq", &labels, views::current(filters, "dlq"))) }
            label { "Class " (select("error_class", &[("", "any"), ("retryable", "retryable"), ("permanent", "permanent")], views::current(filters, "error_class"))) }
            label { "Type " (select("type", &[("", "any"), ("order", "order"), ("chargeback", "chargeback")], views::current(filters, "type"))) }
            label { "Error contains " input type="text" name="error_contains" value=(field_value(filters, "error_contains")); }
            label { "Key " input type="text" name="key" placeholder="user id" value=(field_value(filters, "key")); }
            label { "Failed from " input type="date" name="since" value=(field_value(filters, "since")); }
            label { "to " input type="date" name="until" value=(field_value(filters, "until")); }
            button type="submit" { "Filter" }
            a.reset href="/admin/dead-letters" { "Reset" }
        }
        @if listed.is_empty() {
            p.empty { "No dead letters match." }
        } @else {
            table.list #dead-letters {
                thead { tr { th { "DLQ" } th { "Position" } th { "Key" } th { "Type" } th { "Class" } th { "Attempts" } th { "Replays" } th { "First failed" } th { "Error" } @if operate { th {} } } }
                tbody {
                    @for (topic, d) in &listed {
                        @let info = d.info.as_ref();
                        tr {
                            td { (topic) }
                            td.mono { (d.dlq_partition) ":" (d.dlq_offset) }
                            td.mono { (d.key) }
                            td { (d.event_type.as_deref().unwrap_or("?")) }
                            td { @if let Some(i) = info { (badge(i.class.as_str())) } @else { "?" } }
                            td { (info.map_or(String::from("?"), |i| i.attempts.to_string())) }
                            td { (d.replay_count) }
                            td { (maybe_time(info.map(|i| &i.first_failed_at))) }
                            td.error { (info.map_or("(no dead-letter headers)", |i| i.error.as_str())) }
                            @if operate {
                                td {
                                    form.inline method="post" action="/admin/dead-letters/replay" {
                                        (csrf(s))
                                        input type="hidden" name="one" value={ (topic) ":" (d.dlq_partition) ":" (d.dlq_offset) };
                                        button type="submit" class="replay-one" { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if operate {
                form.replay method="post" action="/admin/dead-letters/replay" #replay-matching {
                    (csrf(s))
                    @for (k, v) in filters { input type="hidden" name=(k) value=(v); }
                    button type="submit" { "Replay the matching dead letters" }
                    label.check { input type="checkbox" name="from_beginning" value="true"; " rescan from the start" }
                    p.muted {
                        "As " code { "pmctl replay-dlq replay" } ": resumes after the last replay, so dead letters an earlier replay read are not sent again unless rescanned. Each is republished to its original topic; a message already replayed "
                        (dead.max_replays) " times is skipped."
                    }
                }
            }
        }
    };
    page(
        Some(s),
        "Dead letters",
        "dead-letters",
        flash.as_ref(),
        body,
    )
}

/// `GET /admin/partitions`.
pub(crate) async fn partitions(State(app): State<AppState>, session: Session) -> Response {
    partitions_page(&app, &session, None).await
}

pub(crate) async fn partitions_page(app: &AppState, s: &Session, flash: Option<Flash>) -> Response {
    let overview = match partitions::overview(pool_for(app, flash.as_ref())).await {
        Ok(o) => o,
        Err(e) => return views::error_page(Some(s), problem(e)),
    };
    let now = pm_domain::time::now();
    let body = html! {
        h1 { "Partitions" }
        @if s.can(Scope::Admin) {
            form.inline method="post" action="/admin/partitions/maintain" #maintain-form {
                (csrf(s))
                button type="submit" #maintain { "Run maintenance now" }
                span.muted { " premakes partitions and prunes the deduplication table, as " code { "pmctl partition-maintain" } " does (no retention drop)" }
            }
        }
        @if overview.is_empty() {
            p.empty { "No partitioned tables: this database uses the unpartitioned layout." }
        }
        @for (t, parts) in &overview {
            section.table {
                h2 { code { (t.table) } }
                dl.facts {
                    dt { "Partitions" } dd { (t.partitions) }
                    dt { "Oldest from" } dd { (maybe_time(t.oldest.as_ref())) }
                    dt { "Covered until" } dd { (maybe_time(t.newest_until.as_ref())) }
                    dt { "Premade" } dd {
                        @match t.newest_until {
                            Some(until) => { ((until - now).num_days().max(0)) " days ahead" }
                            None => { "none" }
                        }
                    }
                    dt { "Rows in default" } dd class=[(t.default_rows > 0).then_some("warn")] {
                        (t.default_rows)
                        @if t.default_rows > 0 { " — a partition was missing when they arrived; move them with pg_partman's partition_data_proc" }
                    }
                }
                details {
                    summary { "Each partition (" (parts.len()) ")" }
                    table.list {
                        thead { tr { th { "Partition" } th { "From" } th { "To" } th { "Rows (estimate)" } } }
                        tbody {
                            @for p in parts.iter().rev() {
                                tr {
                                    td.mono { (p.partition.name) }
                                    td { (maybe_time(p.partition.from.as_ref())) }
                                    td { (maybe_time(p.partition.to.as_ref())) }
                                    td { (p.estimated_rows) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(Some(s), "Partitions", "partitions", flash.as_ref(), body)
}

/// `GET /admin/audit` (scope `admin`, like `GET /audit`).
pub(crate) async fn audit(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    if !session.can(Scope::Admin) {
        return views::error_page(Some(&session), crate::auth::forbidden(Scope::Admin));
    }
    let filters = forms::query_filters(q.as_deref());
    let (items, next, flash) = listed(&filters, audit_route::audit_filter, |f, page| async move {
        audit::list(app.read_pool(), &f, &page).await
    })
    .await;
    let body = html! {
        h1 { "Audit trail" }
        form.filters method="get" action="/admin/audit" {
            label { "Actor " input type="text" name="actor" value=(field_value(&filters, "actor")); }
            label { "Action " input type="text" name="action" placeholder="e.g. hold_set" value=(field_value(&filters, "action")); }
            label { "Object " (select("object_type", &[("", "any"), ("order", "order"), ("dispute", "dispute"), ("api_key", "API key")], views::current(&filters, "object_type"))) }
            label { "Id " input type="text" name="object_id" value=(field_value(&filters, "object_id")); }
            button type="submit" { "Filter" }
            a.reset href="/admin/audit" { "Reset" }
        }
        @if items.is_empty() {
            p.empty { "Nothing recorded matches." }
        } @else {
            table.list #audit {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Object" } th { "Outcome" } th { "Detail" } } }
                tbody {
                    @for a in &items {
                        tr {
                            td { (time(&a.created_at)) }
                            td { (a.actor) }
                            td { (a.action) }
                            td {
                                @match a.object_type.as_str() {
                                    "order" => { "order " a href={ "/admin/orders/" (url(&a.object_id)) } { (a.object_id) } }
                                    "dispute" => { "dispute " a.mono href={ "/admin/disputes/" (url(&a.object_id)) } { (a.object_id) } }
                                    other => { (other) " " span.mono { (a.object_id) } }
                                }
                            }
                            td { (a.outcome) }
                            td { (views::json(&a.detail)) }
                        }
                    }
                }
            }
        }
        (pager("/admin/audit", &filters, next.as_deref()))
    };
    page(Some(&session), "Audit trail", "audit", flash.as_ref(), body)
}
