//! The admin UI's page frame, shared pieces, and its two static files.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use pm_domain::api_key::Scope;
use pm_http::Problem;

use super::forms;
use super::Session;
use crate::routes::PathParam;

/// htmx, vendored from its npm package by `scripts/vendor-htmx.sh` (version in
/// `assets/htmx/VERSION`, licence in `assets/htmx/LICENSE`).
pub(crate) const HTMX: &[u8] = include_bytes!("../../assets/htmx/htmx.min.js");
const CSS: &str = include_str!("../../assets/admin.css");

/// htmx's settings: swap every answer (an error page is a page too, not a failed request),
/// and no inline style element (the content security policy allows none).
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"responseHandling":[{"code":"204","swap":false},{"code":".*","swap":true}]}"#;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /admin/assets/{file}`.
pub(crate) async fn asset(PathParam(file): PathParam) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "admin.css" => (CSS.as_bytes(), "text/css; charset=utf-8"),
        _ => return Problem::not_found(format!("no admin asset {file}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// What an action did, shown at the top of the page it answers with.
#[derive(Debug)]
pub(crate) enum Flash {
    Done(String),
    Failed(Problem),
}

impl Flash {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Flash::Done(_) => StatusCode::OK,
            Flash::Failed(p) => {
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

fn flash_box(flash: &Flash) -> Markup {
    match flash {
        Flash::Done(message) => html! { div.flash.done role="status" { (message) } },
        Flash::Failed(p) => html! {
            div.flash.failed role="alert" {
                strong { (p.title) } " — " (p.detail)
                @if let Some(errors) = &p.errors {
                    ul { @for e in errors { li { code { (e.field) } ": " (e.message) } } }
                }
            }
        },
    }
}

const NAV: [(&str, &str, Scope); 5] = [
    ("orders", "Orders", Scope::Read),
    ("disputes", "Disputes", Scope::Read),
    ("dead-letters", "Dead letters", Scope::Read),
    ("partitions", "Partitions", Scope::Read),
    ("audit", "Audit trail", Scope::Admin),
];

/// A whole page: the frame around `body`, answered with `status` (or the flash's).
pub(crate) fn page(
    session: Option<&Session>,
    title: &str,
    section: &str,
    flash: Option<&Flash>,
    body: Markup,
) -> Response {
    let status = flash.map_or(StatusCode::OK, Flash::status);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · Payment Manager" }
                link rel="stylesheet" href="/admin/assets/admin.css";
                script src="/admin/assets/htmx.min.js" defer {}
            }
            body hx-boost="true" {
                header.top {
                    a.brand href="/admin/orders" { "Payment Manager" }
                    @if let Some(s) = session {
                        nav {
                            @for (path, label, scope) in NAV {
                                @if s.can(scope) {
                                    a href={ "/admin/" (path) } class=[(section == path).then_some("active")] { (label) }
                                }
                            }
                        }
                        div.who {
                            span.key title="the API key this session was opened with" { (s.operator.key_name) }
                            span.scopes { @for scope in &s.scopes { span.scope { (scope) } } }
                            form method="post" action="/admin/logout" {
                                (csrf(s))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(f) = flash { (flash_box(f)) }
                    (body)
                }
            }
        }
    };
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A page that only says what went wrong (with the problem's status and `Retry-After`).
pub(crate) fn error_page(session: Option<&Session>, problem: Problem) -> Response {
    let retry = problem.retry_after;
    let title = problem.title.clone();
    let mut response = page(
        session,
        &title,
        "",
        Some(&Flash::Failed(problem)),
        html! { p { a href="/admin/orders" { "Back to the orders" } } },
    );
    if let Some(r) = retry.and_then(|r| HeaderValue::from_str(&r.to_string()).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, r);
    }
    response
}

/// The hidden CSRF field every form of a session carries.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// An instant, readable and machine-readable.
pub(crate) fn time(t: &DateTime<Utc>) -> Markup {
    html! { time datetime=(pm_domain::time::format(t)) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

pub(crate) fn maybe_time(t: Option<&DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

/// A status as a coloured label.
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class={ "badge badge-" (status) } { (status) } }
}

/// A `<select>` of `options` (`""` = any) with `current` selected.
pub(crate) fn select(
    name: &str,
    options: &[(&str, impl AsRef<str>)],
    current: Option<&str>,
) -> Markup {
    html! {
        select name=(name) id=(name) {
            @for (value, label) in options {
                option value=(value) selected[current.unwrap_or("") == *value] { (label.as_ref()) }
            }
        }
    }
}

/// The value a filter field shows.
pub(crate) fn current<'a>(filters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    filters
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A filter field's value for its input (dates shown as the day the operator picked).
pub(crate) fn field_value(filters: &[(String, String)], name: &str) -> String {
    current(filters, name)
        .map(|v| forms::shown_value(name, v))
        .unwrap_or_default()
}

/// "Next page" (and "first page") links that keep the filters.
pub(crate) fn pager(base: &str, filters: &[(String, String)], next: Option<&str>) -> Markup {
    let kept: Vec<(String, String)> = filters
        .iter()
        .filter(|(k, _)| k != "cursor")
        .cloned()
        .collect();
    let paged = filters.iter().any(|(k, _)| k == "cursor");
    let link = |cursor: Option<&str>| {
        let mut q = kept.clone();
        if let Some(c) = cursor {
            q.push(("cursor".to_owned(), c.to_owned()));
        }
        let q = forms::query(&q);
        if q.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{q}")
        }
    };
    html! {
        nav.pager {
            @if paged { a href=(link(None)) { "« First page" } }
            @if let Some(c) = next { a.next href=(link(Some(c))) rel="next" { "Next page »" } }
        }
    }
}

/// Stored JSON, shown compactly.
pub(crate) fn json(raw: &str) -> Markup {
    html! { code.json { (raw) } }
}
