//! The admin UI's actions (`POST`): each answers with the page it acted on, the result at
//! the top; a refusal keeps the problem's status (a `read` key's action is a `403`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use pm_domain::api_key::Scope;
use pm_domain::command::{CaptureCommand, HoldChange};
use pm_domain::evidence::Evidence as EvidenceInput;
use pm_domain::InputError;
use pm_http::Problem;
use pm_kafka::replay::{Filter, ReplayOptions, ReplaySummary};
use pm_storage::audit::{self, Actor};
use pm_storage::captures::CaptureStatus;
use pm_storage::partitions::{self, MaintainError, MaintainOptions};
use pm_telemetry::CorrelationId;
use serde_json::{json, Map, Value};

use super::pages::{self, EvidenceDraft};
use super::views::{self, Flash};
use super::{forms, session, Action};
use crate::auth::{self, Denied};
use crate::error::ApiError;
use crate::routes::{disputes as dispute_routes, orders as order_routes, PathParam};
use crate::state::AppState;

fn failed(e: impl Into<ApiError>) -> Flash {
    Flash::Failed(e.into().into_problem())
}

/// Where a login goes on to: a page of the admin UI, never another site.
fn safe_next(next: &str) -> bool {
    next.starts_with("/admin/")
        && !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
}

/// `POST /admin/login`: an API key for a session cookie.
pub(crate) async fn login(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let secure = super::over_tls(&app, &parts);
    let again =
        |p: Problem, next: Option<&str>| pages::login_page(secure, next, Some(&Flash::Failed(p)));
    if let Err(p) = forms::same_site(&parts) {
        return again(p, None);
    }
    let form = match forms::Form::read(&parts, body).await {
        Ok(f) => f,
        Err(p) => return again(p, None),
    };
    let next = form.text("next").filter(|n| safe_next(n));
    let token_ok = session::cookie(&parts.headers, session::LOGIN_COOKIE)
        .zip(form.get("login_token"))
        .is_some_and(|(cookie, field)| session::same_token(cookie, field));
    if !token_ok {
        return again(
            Problem::bad_request(
                "the login form expired or this browser refuses cookies (the admin UI needs them); \
                 try again with this form",
            ),
            next,
        );
    }
    let ip = auth::request_address(&app, &parts);
    let token = form.get("api_key").unwrap_or_default().trim();
    let key = match auth::authenticate(&app, ip, token).await {
        Ok(key) => key,
        Err(Denied::Invalid) => {
            return again(
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "that API key is not valid: unknown, revoked, expired, or mistyped",
                ),
                next,
            )
        }
        Err(Denied::Throttled(retry)) => return again(auth::throttled(retry), next),
        Err(Denied::Unavailable(e)) => return again(e.into_problem(), next),
    };
    let now = pm_domain::time::now();
    let correlation = parts
        .extensions
        .get::<CorrelationId>()
        .map(|c| c.as_str().to_owned());
    let recorded = audit::record_alone(
        app.pool(),
        &audit::Entry {
            actor: &Actor::new(&key.name, correlation),
            action: "admin_login",
            object_type: "api_key",
            object_id: key.key_id.as_str(),
            outcome: "applied",
            detail: json!({ "address": ip.to_string() }),
        },
        now,
    )
    .await;
    if let Err(e) = recorded {
        // No session the audit trail does not know of.
        return again(ApiError::from(e).into_problem(), next);
    }
    let sessions = &app.inner.admin.sessions;
    let response = Redirect::to(next.unwrap_or("/admin/orders")).into_response();
    let response = super::with_cookie(
        response,
        &session::set_cookie(
            session::COOKIE,
            &sessions.issue(&key.key_id, now),
            "/admin",
            sessions.ttl(),
            secure,
        ),
    );
    super::with_cookie(
        response,
        &session::set_cookie(
            session::LOGIN_COOKIE,
            "",
            "/admin/login",
            std::time::Duration::ZERO,
            secure,
        ),
    )
}

/// `POST /admin/logout`.
pub(crate) async fn logout(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    parts: axum::http::request::Parts,
    action: Action,
) -> Response {
    let now = pm_domain::time::now();
    app.inner.admin.sessions.end(&action.session.opened, now);
    let recorded = audit::record_alone(
        app.pool(),
        &audit::Entry {
            actor: &action.session.operator.actor(&correlation),
            action: "admin_logout",
            object_type: "api_key",
            object_id: &action.session.operator.key_id,
            outcome: "applied",
            detail: json!({}),
        },
        now,
    )
    .await;
    if let Err(e) = recorded {
        // The session ends anyway: logging out must always work.
        tracing::warn!(error = %e, "cannot record a logout in the audit trail");
    }
    super::with_cookie(
        Redirect::to("/admin/login").into_response(),
        &session::set_cookie(
            session::COOKIE,
            "",
            "/admin",
            std::time::Duration::ZERO,
            super::over_tls(&app, &parts),
        ),
    )
}

/// `POST /admin/orders/{order_id}/hold`: `action` = set (with `reason`) or clear.
pub(crate) async fn hold(
    State(app): State<AppState>,
    PathParam(raw): PathParam,
    Extension(correlation): Extension<CorrelationId>,
    action: Action,
) -> Response {
    if let Some(r) = action.refused(Scope::Operate) {
        return r;
    }
    let s = &action.session;
    let flash = async {
        let id = order_routes::order_id(&raw)?;
        let body =
            json!({ "action": action.form.get("action"), "reason": action.form.text("reason") });
        let change = HoldChange::parse(body.to_string().as_bytes())?;
        let order = pm_storage::orders::set_hold(
            app.pool(),
            &id,
            change,
            &s.operator.actor(&correlation),
            pm_domain::time::now(),
        )
        .await?
        .ok_or_else(|| Problem::not_found(format!("order {id} does not exist")))?;
        Ok::<_, ApiError>(match order.hold_reason {
            Some(r) if order.on_hold => {
                Flash::Done(format!("The order is on hold ({}).", r.as_str()))
            }
            _ => Flash::Done("The order is not on hold.".to_owned()),
        })
    }
    .await
    .unwrap_or_else(failed);
    pages::order_page(&app, s, &raw, Some(flash)).await
}

/// `POST /admin/orders/{order_id}/capture`: `amount`, `currency`, `idempotency_key`.
pub(crate) async fn capture(
    State(app): State<AppState>,
    PathParam(raw): PathParam,
    Extension(correlation): Extension<CorrelationId>,
    action: Action,
) -> Response {
    if let Some(r) = action.refused(Scope::Operate) {
        return r;
    }
    let s = &action.session;
    let flash = async {
        let id = order_routes::order_id(&raw)?;
        let f = &action.form;
        let body = json!({
            "amount": f.text("amount"),
            "currency": f.text("currency").map(str::to_ascii_uppercase),
            "idempotency_key": f.text("idempotency_key"),
        });
        let cmd = CaptureCommand::parse(body.to_string().as_bytes())?;
        let c = order_routes::run_capture(&app, &id, &cmd, &s.operator, &correlation).await?;
        Ok::<_, ApiError>(match order_routes::capture_problem(&c) {
            None => Flash::Done(format!(
                "Captured {} (provider transaction {}).",
                c.money,
                c.provider_tx_id.as_deref().unwrap_or("?")
            )),
            Some(p) => {
                debug_assert_ne!(c.status, CaptureStatus::Success);
                Flash::Failed(p)
            }
        })
    }
    .await
    .unwrap_or_else(failed);
    pages::order_page(&app, s, &raw, Some(flash)).await
}

/// The evidence form as the JSON route's body, and as rows to show again if refused.
fn evidence_body(form: &forms::Form) -> Result<(Value, EvidenceDraft), Problem> {
    let mut draft = EvidenceDraft::default();
    let mut fields = Map::new();
    let names = form.all("field_name");
    let values = form.all("field_value");
    for (i, name) in names.iter().enumerate() {
        let value = values.get(i).copied().unwrap_or_default();
        if name.trim().is_empty() && value.trim().is_empty() {
            continue;
        }
        let name = name.trim();
        draft.fields.push((name.to_owned(), value.to_owned()));
        if fields.insert(name.to_owned(), Value::from(value)).is_some() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("the field {name:?} is given twice"),
            ));
        }
    }
    let column = |n: &str| form.all(n);
    let (ids, file_names, types, sizes) = (
        column("file_id"),
        column("file_name"),
        column("file_type"),
        column("file_size"),
    );
    let mut files = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let at = |c: &[&str]| c.get(i).map_or(String::new(), |v| v.trim().to_owned());
        let row = [
            id.trim().to_owned(),
            at(&file_names),
            at(&types),
            at(&sizes),
        ];
        if row.iter().all(String::is_empty) {
            continue;
        }
        // A size that is not a number goes to the parser as text, to be refused by name.
        let size = row[3]
            .parse::<u64>()
            .map_or_else(|_| Value::from(row[3].clone()), Value::from);
        files.push(
            json!({ "file_id": row[0], "name": row[1], "content_type": row[2], "size": size }),
        );
        draft.files.push(row);
    }
    Ok((json!({ "fields": fields, "files": files }), draft))
}

/// `POST /admin/disputes/{dispute_id}/evidence`: the evidence form (replaces what is stored).
pub(crate) async fn evidence(
    State(app): State<AppState>,
    PathParam(raw): PathParam,
    Extension(correlation): Extension<CorrelationId>,
    action: Action,
) -> Response {
    if let Some(r) = action.refused(Scope::Operate) {
        return r;
    }
    let s = &action.session;
    let (body, draft) = match evidence_body(&action.form) {
        Ok(b) => b,
        Err(p) => return pages::dispute_page(&app, s, &raw, Some(Flash::Failed(p)), None).await,
    };
    let stored = async {
        let id = dispute_routes::dispute_id(&raw)?;
        let evidence = EvidenceInput::from_json(&body).map_err(InputError::Invalid)?;
        dispute_routes::store_evidence(&app, id, &evidence, &s.operator, &correlation).await
    }
    .await;
    match stored {
        Ok(e) => {
            let what = format!(
                "Evidence stored: {} field(s), {} file(s).",
                e.evidence.fields.len(),
                e.evidence.files.len()
            );
            pages::dispute_page(&app, s, &raw, Some(Flash::Done(what)), None).await
        }
        Err(e) => pages::dispute_page(&app, s, &raw, Some(failed(e)), Some(draft)).await,
    }
}

/// `POST /admin/disputes/{dispute_id}/submit`: the stored evidence to the provider.
pub(crate) async fn submit(
    State(app): State<AppState>,
    PathParam(raw): PathParam,
    Extension(correlation): Extension<CorrelationId>,
    action: Action,
) -> Response {
    if let Some(r) = action.refused(Scope::Operate) {
        return r;
    }
    let s = &action.session;
    let flash = async {
        let id = dispute_routes::dispute_id(&raw)?;
        let sub = dispute_routes::run_submit(&app, id, &s.operator, &correlation).await?;
        Ok::<_, ApiError>(Flash::Done(format!(
            "Submitted to the provider as representment {}; the dispute is {}.",
            sub.submission_id, sub.status
        )))
    }
    .await
    .unwrap_or_else(failed);
    pages::dispute_page(&app, s, &raw, Some(flash), None).await
}

/// `POST /admin/dead-letters/replay`: `one` = `topic:partition:offset`, or the page's
/// filters (and `from_beginning`).
pub(crate) async fn replay(State(app): State<AppState>, action: Action) -> Response {
    if let Some(r) = action.refused(Scope::Operate) {
        return r;
    }
    let s = &action.session;
    let Some(dead) = &app.inner.admin.dead_letters else {
        return views::error_page(
            Some(s),
            Problem::conflict(
                "sync-mode",
                "this instance runs in sync mode: there are no dead letters to replay",
            ),
        );
    };
    let filters: Vec<(String, String)> = action
        .form
        .filters()
        .into_iter()
        .filter(|(k, _)| k != "one" && k != "from_beginning")
        .collect();
    let mut opts = ReplayOptions {
        to: None,
        dry_run: false,
        limit: None,
        rate: None,
        max_replays: dead.max_replays,
        from_beginning: action.form.text("from_beginning").is_some(),
        detached: false,
    };
    let plan = match action.form.text("one") {
        Some(one) => {
            // One chosen dead letter, replayed outside the replay group: the resumable
            // replay's position stays where it was.
            opts.detached = true;
            one_dead_letter(dead, one).map(|(topic, at)| {
                (
                    vec![topic],
                    Filter {
                        at: Some(at),
                        ..Filter::default()
                    },
                )
            })
        }
        None => pages::dlq_filter(dead, &filters)
            .map(|(topics, f)| (topics.into_iter().map(|(_, t)| t).collect(), f)),
    };
    let (topics, filter) = match plan {
        Ok(p) => p,
        Err(p) => return pages::dead_letters_page(&app, s, &filters, Some(Flash::Failed(p))).await,
    };
    let mut total = ReplaySummary::default();
    let mut error = None;
    for topic in topics {
        let (config, producer, filter, opts, t) = (
            dead.config.clone(),
            dead.producer.clone(),
            filter.clone(),
            opts.clone(),
            topic.clone(),
        );
        let done = tokio::task::spawn_blocking(move || {
            pm_kafka::replay::replay(
                &config,
                &t,
                &filter,
                &opts,
                &producer,
                &tokio_util::sync::CancellationToken::new(),
                |_, _| {},
            )
        })
        .await;
        match done {
            Ok(Ok(sum)) => {
                total.replayed += sum.replayed;
                total.skipped += sum.skipped;
                total.over_max_replays += sum.over_max_replays;
                total.failed += sum.failed;
                total.messages.extend(sum.messages);
            }
            Ok(Err(e)) => {
                error = Some(format!("cannot replay {topic}: {e}"));
                break;
            }
            Err(_) => {
                error = Some(format!("the replay of {topic} stopped unexpectedly"));
                break;
            }
        }
    }
    tracing::info!(
        operator = %s.operator.key_name,
        replayed = total.replayed,
        skipped = total.skipped,
        failed = total.failed,
        "dead letters replayed from the admin UI"
    );
    let keys: Vec<String> = total
        .messages
        .iter()
        .map(|d| format!("{} ({}:{})", d.key, d.dlq_partition, d.dlq_offset))
        .collect();
    let summary = format!(
        "Replayed {}{}; skipped {} ({} already replayed {} times); failed {}.",
        total.replayed,
        if keys.is_empty() {
            String::new()
        } else {
            format!(": {}", keys.join(", "))
        },
        total.skipped,
        total.over_max_replays,
        dead.max_replays,
        total.failed
    );
    let flash = match error {
        Some(e) => Flash::Failed(Problem::unavailable(format!("{summary} {e}"), 5)),
        None if total.failed > 0 => Flash::Failed(Problem::unavailable(
            format!("{summary} Republishing failed; run the replay again."),
            5,
        )),
        None => Flash::Done(summary),
    };
    pages::dead_letters_page(&app, s, &filters, Some(flash)).await
}

/// `topic:partition:offset` of one of this instance's DLQs.
fn one_dead_letter(dead: &super::DeadLetters, one: &str) -> Result<(String, (i32, i64)), Problem> {
    let bad = || {
        Problem::bad_request(format!(
            "`one`: {one:?} is not a dead letter of this instance's DLQs (topic:partition:offset)"
        ))
    };
    let mut parts = one.rsplitn(3, ':');
    let (offset, partition, topic) = (parts.next(), parts.next(), parts.next());
    let (Some(offset), Some(partition), Some(topic)) = (offset, partition, topic) else {
        return Err(bad());
    };
    if !dead.topics.iter().any(|(_, t)| t == topic) {
        return Err(bad());
    }
    let at = (
        partition.parse().map_err(|_| bad())?,
        offset.parse().map_err(|_| bad())?,
    );
    Ok((topic.to_owned(), at))
}

/// `POST /admin/partitions/maintain` (scope `admin`): premake partitions and prune the
/// deduplication table now, as `pmctl partition-maintain` does without a retention.
pub(crate) async fn maintain(
    State(app): State<AppState>,
    Extension(correlation): Extension<CorrelationId>,
    action: Action,
) -> Response {
    if let Some(r) = action.refused(Scope::Admin) {
        return r;
    }
    let s = &action.session;
    let opts = MaintainOptions {
        retention: None,
        dedupe_keep: partitions::MIN_DEDUPE_KEEP,
        dry_run: false,
        cluster_closed: None,
        outbox_retention: partitions::DEFAULT_OUTBOX_RETENTION,
        outbox_relay: Default::default(),
        analytics_inbox_keep: partitions::DEFAULT_ANALYTICS_INBOX_KEEP,
    };
    let result = partitions::maintain(app.pool(), &opts).await;
    let outcome = match &result {
        Ok(_) => "applied".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    let recorded = audit::record_alone(
        app.pool(),
        &audit::Entry {
            actor: &s.operator.actor(&correlation),
            action: "partition_maintenance",
            object_type: "partitions",
            object_id: "event tables",
            outcome: &outcome,
            detail: json!({}),
        },
        pm_domain::time::now(),
    )
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record a maintenance run in the audit trail");
    }
    let flash = match result {
        Ok(report) => {
            let created: usize = report.tables.iter().map(|t| t.created.len()).sum();
            let dropped: usize = report.tables.iter().map(|t| t.dropped.len()).sum();
            Flash::Done(format!(
                "Maintenance done: {created} partition(s) created, {dropped} dropped; {} \
                 deduplication row(s) pruned.",
                report.dedupe_pruned
            ))
        }
        Err(MaintainError::Storage(e)) if e.sqlstate().as_deref() == Some("42501") => {
            Flash::Failed(Problem::conflict(
                "maintenance-not-permitted",
                "this service's database role may not run maintenance: pg_partman creates and \
                 drops partitions as the tables' owner. Run `pmctl partition-maintain` as the \
                 owner (the systemd timer of deploy/ does, daily)",
            ))
        }
        Err(MaintainError::Storage(e)) => failed(e),
        Err(e) => Flash::Failed(Problem::conflict("maintenance-refused", e.to_string())),
    };
    pages::partitions_page(&app, s, Some(flash)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_goes_on_to_admin_pages_only() {
        assert!(safe_next("/admin/orders?status=success"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/admin/..//x",
            "/other",
            "/admin\\x",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn the_evidence_form_becomes_the_routes_body() {
        let form = forms::Form::from_pairs(&[
            ("field_name", "product"),
            ("field_value", "a red bike"),
            ("field_name", ""),
            ("field_value", ""),
            ("file_id", "file_1"),
            ("file_name", "receipt.pdf"),
            ("file_type", "application/pdf"),
            ("file_size", "1234"),
            ("file_id", ""),
            ("file_name", ""),
            ("file_type", ""),
            ("file_size", ""),
        ]);
        let (body, draft) = evidence_body(&form).expect("a body");
        assert_eq!(
            body,
            json!({"fields": {"product": "a red bike"}, "files": [{"file_id": "file_1", "name": "receipt.pdf", "content_type": "application/pdf", "size": 1234}]})
        );
        assert_eq!(draft.fields.len(), 1);
        assert!(EvidenceInput::from_json(&body).is_ok());

        let form = forms::Form::from_pairs(&[
            ("file_id", "f"),
            ("file_name", "n"),
            ("file_type", "t"),
            ("file_size", "lots"),
        ]);
        let (body, _) = evidence_body(&form).expect("a body");
        let errors = EvidenceInput::from_json(&body).expect_err("a size must be a number");
        assert!(
            errors.errors().iter().any(|e| e.field.contains("size")),
            "{errors:?}"
        );

        let twice = forms::Form::from_pairs(&[
            ("field_name", "a"),
            ("field_value", "1"),
            ("field_name", "a"),
            ("field_value", "2"),
        ]);
        assert!(evidence_body(&twice).is_err());
    }
}
