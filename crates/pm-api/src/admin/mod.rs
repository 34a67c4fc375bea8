//! The admin UI, under `/admin`: server-rendered HTML pages for operators.
//!
//! - **Who**: an operator logs in with an API key and works under a session cookie
//!   ([`session`]); what the key's scopes allow is what the pages offer — a `read` key sees
//!   the lists and pages without action buttons, and an action it sends anyway is refused
//!   with `403`. `operate` holds, captures, stores and submits evidence and replays dead
//!   letters; `admin` sees the audit trail and runs partition maintenance.
//! - **The same paths as the API**: every action calls the function the JSON route calls
//!   (capture, evidence, submission) or the storage call it makes (hold), with the operator
//!   as the actor, so the audit trail, the metrics and the idempotency rules are the API's.
//!   The list filters are parsed by the JSON routes' parsers. The dead-letter replay is
//!   `pmctl replay-dlq`'s ([`pm_kafka::replay`]).
//! - **HTML first**: every page and form works without JavaScript (plain links, `GET`
//!   filter forms, `POST` forms answered with the resulting page); htmx, embedded in the
//!   binary ([`views::HTMX`]), swaps pages in place. Templates are `maud` macros: checked
//!   at compile time and escaped by construction.
//! - **Headers**: pages are `no-store`, framing is refused, and the content security
//!   policy allows scripts and styles from this origin only (no inline script exists).

mod actions;
mod forms;
mod pages;
pub(crate) mod session;
mod views;

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pm_domain::api_key::Scope;
use pm_kafka::{KafkaConfig, Producer};
use secrecy::SecretString;

use crate::auth::Operator;
use crate::state::AppState;
use session::{Opened, Sessions};

/// How the admin UI runs.
#[derive(Clone)]
pub struct AdminSettings {
    /// Signs the session cookies. Give every instance behind one address the same secret;
    /// without one, each process makes its own (sessions end when it restarts).
    pub session_secret: Option<SecretString>,
    /// How long a session lasts from login.
    pub session_ttl: Duration,
    /// The listener terminates TLS: cookies are marked `Secure` (they are too when a trusted
    /// proxy reports `X-Forwarded-Proto: https`).
    pub tls: bool,
    /// Kafka mode: where the dead letters are, for the dead-letters page and its replay.
    pub dead_letters: Option<DeadLetters>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            session_secret: None,
            session_ttl: Duration::from_secs(8 * 3600),
            tls: false,
            dead_letters: None,
        }
    }
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field(
                "session_secret",
                &self.session_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("session_ttl", &self.session_ttl)
            .field("tls", &self.tls)
            .field("dead_letters", &self.dead_letters)
            .finish()
    }
}

/// The dead-letter topics of kafka mode and what the replay publishes with.
#[derive(Clone)]
pub struct DeadLetters {
    pub config: KafkaConfig,
    pub producer: Producer,
    /// `(label, DLQ topic)`: `orders` and `disputes`.
    pub topics: Vec<(String, String)>,
    /// Skip messages already replayed this many times (as `pmctl replay-dlq --max-replays`).
    pub max_replays: u32,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("brokers", &self.config.brokers)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// The admin UI's state inside [`AppState`].
#[derive(Debug)]
pub(crate) struct Admin {
    sessions: Sessions,
    tls: bool,
    dead_letters: Option<DeadLetters>,
}

impl Admin {
    pub(crate) fn new(settings: &AdminSettings) -> Self {
        Admin {
            sessions: Sessions::new(settings.session_secret.as_ref(), settings.session_ttl),
            tls: settings.tls,
            dead_letters: settings.dead_letters.clone(),
        }
    }
}

/// The routes under `/admin`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/orders") }))
        .route("/admin/", get(|| async { Redirect::to("/admin/orders") }))
        .route("/admin/assets/{file}", get(views::asset))
        .route("/admin/login", get(pages::login).post(actions::login))
        .route("/admin/logout", post(actions::logout).get(back))
        .route("/admin/orders", get(pages::orders))
        .route("/admin/orders/{order_id}", get(pages::order))
        .route(
            "/admin/orders/{order_id}/hold",
            post(actions::hold).get(back),
        )
        .route(
            "/admin/orders/{order_id}/capture",
            post(actions::capture).get(back),
        )
        .route("/admin/disputes", get(pages::disputes))
        .route("/admin/disputes/{dispute_id}", get(pages::dispute))
        .route(
            "/admin/disputes/{dispute_id}/evidence",
            post(actions::evidence).get(back),
        )
        .route(
            "/admin/disputes/{dispute_id}/submit",
            post(actions::submit).get(back),
        )
        .route("/admin/dead-letters", get(pages::dead_letters))
        .route(
            "/admin/dead-letters/replay",
            post(actions::replay).get(back),
        )
        .route("/admin/partitions", get(pages::partitions))
        .route(
            "/admin/partitions/maintain",
            post(actions::maintain).get(back),
        )
        .route("/admin/audit", get(pages::audit))
}

/// A `GET` of an action's address (a reload after a form was answered): the page it acts on.
async fn back(uri: axum::http::Uri) -> Redirect {
    let path = uri.path();
    let parent = path.rsplit_once('/').map_or("/admin", |(p, _)| p);
    Redirect::to(if parent == "/admin" {
        "/admin/orders"
    } else {
        parent
    })
}

/// A logged-in operator: the session's key as it is now.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) operator: Operator,
    pub(crate) scopes: Vec<Scope>,
    /// The token this session's forms carry.
    pub(crate) csrf: String,
    opened: Opened,
}

impl Session {
    pub(crate) fn can(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Where a request without a session is sent: the login page, coming back here after.
fn to_login(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/admin/orders", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let target = format!("/admin/login?next={next}");
    if parts.headers.contains_key("hx-request") {
        // htmx follows a redirect inside its request; this makes it load the login page.
        return (StatusCode::UNAUTHORIZED, [("hx-redirect", target.as_str())]).into_response();
    }
    Redirect::to(&target).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let sessions = &app.inner.admin.sessions;
        let now = pm_domain::time::now();
        let Some(opened) =
            session::cookie(&parts.headers, session::COOKIE).and_then(|v| sessions.open(v, now))
        else {
            return Err(to_login(parts));
        };
        let key = match crate::auth::session_key(app, &opened.key_id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err(to_login(parts)),
            Err(e) => return Err(views::error_page(None, e.into_problem())),
        };
        Ok(Session {
            operator: Operator::of(&key),
            scopes: key.scopes.clone(),
            csrf: sessions.csrf(&opened),
            opened,
        })
    }
}

/// For a page that serves visitors without a session too (the login page).
impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Session as FromRequestParts<AppState>>::from_request_parts(parts, app)
                .await
                .ok(),
        )
    }
}

/// A `POST` of a logged-in operator: the session and the form, its CSRF token checked.
#[derive(Debug)]
pub(crate) struct Action {
    pub(crate) session: Session,
    pub(crate) form: forms::Form,
}

impl Action {
    /// The `403` page when the session's key lacks `scope`.
    pub(crate) fn refused(&self, scope: Scope) -> Option<Response> {
        (!self.session.can(scope))
            .then(|| views::error_page(Some(&self.session), crate::auth::forbidden(scope)))
    }
}

impl FromRequest<AppState> for Action {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, app).await?;
        forms::same_site(&parts).map_err(|p| views::error_page(Some(&session), p))?;
        let form = forms::Form::read(&parts, body)
            .await
            .map_err(|p| views::error_page(Some(&session), p))?;
        let presented = form.get("csrf").unwrap_or_default();
        if !session::same_token(presented, &session.csrf) {
            return Err(views::error_page(
                Some(&session),
                pm_http::Problem::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "this form is stale or did not come from this site (its CSRF token does not \
                     match your session); reload the page and try again",
                ),
            ));
        }
        Ok(Action { session, form })
    }
}

/// Whether the browser reached this service over TLS (directly or through a trusted proxy).
fn over_tls(app: &AppState, parts: &Parts) -> bool {
    app.inner.admin.tls || crate::auth::forwarded_https(app, parts)
}

/// Adds `Set-Cookie` to a response.
fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
