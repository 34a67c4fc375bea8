//! Disputes: reads, evidence, and the two halves of submitting a representment (the
//! provider is called between them, outside any transaction).

use chrono::{DateTime, Utc};
use pm_domain::dispute::DisputeStatus;
use pm_domain::event::DisputeEventKind;
use pm_domain::evidence::{Evidence, EvidenceFile};
use pm_domain::pagination::{Page, PageRequest};
use pm_domain::{Amount, Currency, DisputeId, EventId, Money, OrderId, UserId};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, QueryBuilder};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::events::{insert_event, push_keyset, EventTable};
use crate::statement;
use crate::StorageError;
use pm_domain::domain_event::EventType;

/// A dispute as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRecord {
    pub dispute_id: DisputeId,
    pub order_id: String,
    pub user_id: UserId,
    pub status: DisputeStatus,
    pub reason: String,
    pub money: Money,
    pub opened_at: DateTime<Utc>,
    pub evidence_due_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub submission_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DisputeRow {
    dispute_id: Uuid,
    order_id: String,
    user_id: Uuid,
    status: String,
    reason: String,
    amount: Decimal,
    currency: String,
    opened_at: DateTime<Utc>,
    evidence_due_at: Option<DateTime<Utc>>,
    submitted_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    submission_id: Option<String>,
    created_at: DateTime<Utc>,
}

const DISPUTE_COLUMNS: &str =
    "dispute_id, order_id, user_id, status, reason, amount, currency, opened_at, \
     evidence_due_at, submitted_at, closed_at, submission_id, created_at";

impl TryFrom<DisputeRow> for DisputeRecord {
    type Error = StorageError;
    fn try_from(r: DisputeRow) -> Result<Self, StorageError> {
        let currency = Currency::parse(&r.currency)
            .map_err(|_| StorageError::corrupt("disputes.currency", &r.currency))?;
        let money = Amount::new(r.amount)
            .and_then(|a| Money::new(a, currency))
            .map_err(|_| StorageError::corrupt("disputes.amount", r.amount))?;
        Ok(DisputeRecord {
            dispute_id: DisputeId::from_uuid(r.dispute_id),
            status: r
                .status
                .parse()
                .map_err(|_| StorageError::corrupt("disputes.status", &r.status))?,
            order_id: r.order_id,
            user_id: UserId::from_uuid(r.user_id),
            reason: r.reason,
            money,
            opened_at: r.opened_at,
            evidence_due_at: r.evidence_due_at,
            submitted_at: r.submitted_at,
            closed_at: r.closed_at,
            submission_id: r.submission_id,
            created_at: r.created_at,
        })
    }
}

/// Filters of `GET /disputes`.
#[derive(Debug, Clone, Default)]
pub struct DisputeFilter {
    /// Any of these disputes; empty means all.
    pub dispute_ids: Vec<DisputeId>,
    /// Disputes of any of these orders; empty means all.
    pub order_ids: Vec<OrderId>,
    /// Any of these statuses; empty means all.
    pub statuses: Vec<DisputeStatus>,
    pub reason: Option<String>,
}

async fn fetch(
    conn: &mut PgConnection,
    id: DisputeId,
    lock: bool,
) -> Result<Option<DisputeRecord>, StorageError> {
    let sql = format!(
        "SELECT {DISPUTE_COLUMNS} FROM disputes WHERE dispute_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let statement = sqlx::query_as(&sql).bind(id.as_uuid()).fetch_optional(conn);
    let row: Option<DisputeRow> = statement::run("SELECT", "disputes", statement).await?;
    row.map(DisputeRecord::try_from).transpose()
}

pub async fn get(pool: &PgPool, id: DisputeId) -> Result<Option<DisputeRecord>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    fetch(&mut conn, id, false).await
}

pub async fn list(
    pool: &PgPool,
    filter: &DisputeFilter,
    page: &PageRequest,
) -> Result<Page<DisputeRecord>, StorageError> {
    let mut q = QueryBuilder::new(format!("SELECT {DISPUTE_COLUMNS} FROM disputes WHERE true"));
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        q.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(reason) = &filter.reason {
        q.push(" AND reason = ").push_bind(reason.clone());
    }
    if !filter.dispute_ids.is_empty() {
        let ids: Vec<uuid::Uuid> = filter.dispute_ids.iter().map(|d| d.as_uuid()).collect();
        q.push(" AND dispute_id = ANY(").push_bind(ids).push(")");
    }
    if !filter.order_ids.is_empty() {
        let ids: Vec<&str> = filter.order_ids.iter().map(OrderId::as_str).collect();
        q.push(" AND order_id = ANY(").push_bind(ids).push(")");
    }
    push_keyset(&mut q, "dispute_id", "uuid", page)?;
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<DisputeRow> = statement::run(
        "SELECT",
        "disputes",
        q.build_query_as().fetch_all(&mut *conn),
    )
    .await?;
    let rows = rows
        .into_iter()
        .map(DisputeRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page, |d| {
        (d.created_at, d.dispute_id.to_string())
    }))
}

/// Stored evidence with its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub dispute_id: DisputeId,
    pub evidence: Evidence,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EvidenceRow {
    dispute_id: Uuid,
    fields: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    files: sqlx::types::Json<Vec<EvidenceFile>>,
    updated_at: DateTime<Utc>,
}

impl From<EvidenceRow> for EvidenceRecord {
    fn from(r: EvidenceRow) -> Self {
        EvidenceRecord {
            dispute_id: DisputeId::from_uuid(r.dispute_id),
            evidence: Evidence {
                fields: r.fields.0,
                files: r.files.0,
            },
            updated_at: r.updated_at,
        }
    }
}

async fn fetch_evidence(
    conn: &mut PgConnection,
    id: DisputeId,
) -> Result<Option<EvidenceRecord>, StorageError> {
    let row: Option<EvidenceRow> = statement::run("SELECT", "dispute_evidence", sqlx::query_as(
        "SELECT dispute_id, fields, files, updated_at FROM dispute_evidence WHERE dispute_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(conn)).await?;
    Ok(row.map(Into::into))
}

pub async fn get_evidence(
    pool: &PgPool,
    id: DisputeId,
) -> Result<Option<EvidenceRecord>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    fetch_evidence(&mut conn, id).await
}

/// The outcome of storing evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceOutcome {
    Stored(EvidenceRecord),
    NotFound,
    /// The dispute no longer accepts evidence (submitted or final).
    NotAccepted(DisputeStatus),
}

/// Replaces the dispute's evidence and moves `open` to `under_review`.
pub async fn upsert_evidence(
    pool: &PgPool,
    id: DisputeId,
    evidence: &Evidence,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<EvidenceOutcome, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let Some(dispute) = fetch(&mut tx, id, true).await? else {
        return Ok(EvidenceOutcome::NotFound);
    };
    if !dispute.status.accepts_evidence() {
        return Ok(EvidenceOutcome::NotAccepted(dispute.status));
    }
    let row: EvidenceRow = statement::run("INSERT", "dispute_evidence", sqlx::query_as(
        "INSERT INTO dispute_evidence (dispute_id, fields, files, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (dispute_id) DO UPDATE SET fields = EXCLUDED.fields, files = EXCLUDED.files,
                                                updated_at = EXCLUDED.updated_at
         RETURNING dispute_id, fields, files, updated_at",
    )
    .bind(id.as_uuid())
    .bind(sqlx::types::Json(&evidence.fields))
    .bind(sqlx::types::Json(&evidence.files))
    .bind(at)
    .fetch_one(&mut *tx)).await?;
    let next = dispute.status.after_evidence();
    if next != dispute.status {
        statement::run(
            "UPDATE",
            "disputes",
            sqlx::query("UPDATE disputes SET status = $2 WHERE dispute_id = $1")
                .bind(id.as_uuid())
                .bind(next.as_str())
                .execute(&mut *tx),
        )
        .await?;
    }
    let data = serde_json::json!({
        "fields": evidence.fields.keys().collect::<Vec<_>>(),
        "file_ids": evidence.file_ids(),
        "status": next.as_str(),
    });
    insert_event(
        &mut tx,
        EventTable::Dispute,
        EventId::generate(),
        &id.to_string(),
        DisputeEventKind::EvidenceAdded.as_str(),
        None,
        &data.to_string(),
        at,
    )
    .await?;
    audit::record(
        &mut tx,
        &audit::Entry {
            actor,
            action: "evidence_saved",
            object_type: "dispute",
            object_id: &id.to_string(),
            outcome: "applied",
            detail: data,
        },
        at,
    )
    .await?;
    // Evidence replaced is one change; the move from open to under_review it may cause is
    // in the event's status.
    crate::outbox::append(
        &mut tx,
        crate::outbox::NewEvent {
            event_type: EventType::DisputeEvidenceUpdated,
            aggregate_id: &id.to_string(),
            data: serde_json::json!({
                "dispute_id": id.as_uuid(),
                "order_id": dispute.order_id,
                "status": next.as_str(),
                "previous_status": dispute.status.as_str(),
                "field_names": evidence.fields.keys().collect::<Vec<_>>(),
                "file_ids": evidence.file_ids(),
            }),
            correlation_id: actor.correlation_id.as_deref(),
            at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(EvidenceOutcome::Stored(row.into()))
}

/// What is needed to call the provider for a submission, or why it cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionPlan {
    Ready {
        dispute: Box<DisputeRecord>,
        evidence: Box<EvidenceRecord>,
    },
    NotFound,
    NotEligible(DisputeStatus),
    NoEvidence,
}

/// Reads the dispute and its evidence and checks that a submission may be made.
pub async fn plan_submission(pool: &PgPool, id: DisputeId) -> Result<SubmissionPlan, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let Some(dispute) = fetch(&mut conn, id, false).await? else {
        return Ok(SubmissionPlan::NotFound);
    };
    if !dispute.status.can_submit() {
        return Ok(SubmissionPlan::NotEligible(dispute.status));
    }
    match fetch_evidence(&mut conn, id).await? {
        Some(evidence) => Ok(SubmissionPlan::Ready {
            dispute: Box::new(dispute),
            evidence: Box::new(evidence),
        }),
        None => Ok(SubmissionPlan::NoEvidence),
    }
}

/// Records that the provider accepted the representment. If the dispute was decided by a
/// webhook while the provider was being called, the submission is recorded as an event
/// but the decided status is kept.
pub async fn record_submission(
    pool: &PgPool,
    id: DisputeId,
    submission_id: &str,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<Option<DisputeRecord>, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let Some(dispute) = fetch(&mut tx, id, true).await? else {
        return Ok(None);
    };
    let applies = dispute.status.can_submit();
    if applies {
        statement::run("UPDATE", "disputes", sqlx::query(
            "UPDATE disputes SET status = 'submitted', submission_id = $2, submitted_at = $3 WHERE dispute_id = $1",
        )
        .bind(id.as_uuid())
        .bind(submission_id)
        .bind(at)
        .execute(&mut *tx)).await?;
    }
    let data = serde_json::json!({ "submission_id": submission_id, "applied": applies });
    insert_event(
        &mut tx,
        EventTable::Dispute,
        EventId::generate(),
        &id.to_string(),
        DisputeEventKind::EvidenceSubmitted.as_str(),
        Some(submission_id),
        &data.to_string(),
        at,
    )
    .await?;
    audit::record(
        &mut tx,
        &audit::Entry {
            actor,
            action: "representment_submitted",
            object_type: "dispute",
            object_id: &id.to_string(),
            outcome: if applies { "applied" } else { "unchanged" },
            detail: data,
        },
        at,
    )
    .await?;
    if applies {
        crate::outbox::append(
            &mut tx,
            crate::outbox::NewEvent {
                event_type: EventType::DisputeSubmitted,
                aggregate_id: &id.to_string(),
                data: serde_json::json!({
                    "dispute_id": id.as_uuid(),
                    "order_id": dispute.order_id,
                    "submission_id": submission_id,
                    "submitted_at": pm_domain::time::format(&at),
                    "previous_status": dispute.status.as_str(),
                }),
                correlation_id: actor.correlation_id.as_deref(),
                at,
            },
        )
        .await?;
    }
    let updated = fetch(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(updated)
}
