//! Response shapes (PRODUCT.md §3.2.1; field names kept from the original system).
//! Timestamps are RFC 3339 in UTC with `Z`; absent values are `null`; amounts are JSON
//! numbers with the currency's precision, written from exact decimals.

pub mod requests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pm_domain::evidence::EvidenceFile;
use pm_domain::pagination::Page;
use pm_domain::time::rfc3339;
use pm_storage::captures::CaptureRecord;
use pm_storage::disputes::{DisputeRecord, EvidenceRecord};
use pm_storage::events::EventRecord;
use pm_storage::orders::OrderRecord;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// A list page: `items` is never `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T: ToSchema> List<T> {
    pub fn from_page<R>(page: Page<R>, f: impl Fn(R) -> T) -> Self {
        let has_more = page.has_more();
        List {
            items: page.items.into_iter().map(f).collect(),
            next_cursor: page.next_cursor,
            has_more,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub order_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub user_id: uuid::Uuid,
    #[schema(example = "created")]
    pub status: String,
    pub on_hold: bool,
    pub hold_reason: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<OrderRecord> for Order {
    fn from(o: OrderRecord) -> Self {
        Order {
            order_id: o.order_id,
            user_id: o.user_id.as_uuid(),
            status: o.status.as_str().to_owned(),
            on_hold: o.on_hold,
            hold_reason: o.hold_reason.map(|r| r.as_str().to_owned()),
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Hold {
    pub order_id: String,
    pub on_hold: bool,
    pub hold_reason: Option<String>,
    /// When the hold last changed (the order's creation time if it never did).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<OrderRecord> for Hold {
    fn from(o: OrderRecord) -> Self {
        Hold {
            updated_at: o.hold_updated_at.unwrap_or(o.created_at),
            order_id: o.order_id,
            on_hold: o.on_hold,
            hold_reason: o.hold_reason.map(|r| r.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dispute {
    #[schema(value_type = String, format = Uuid)]
    pub dispute_id: uuid::Uuid,
    pub order_id: String,
    #[schema(example = "open")]
    pub status: String,
    pub reason: String,
    #[schema(value_type = f64, example = 100.50)]
    pub amount: Box<RawValue>,
    #[schema(example = "USD")]
    pub currency: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub evidence_due_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<DateTime<Utc>>,
    pub submission_id: Option<String>,
}

impl From<DisputeRecord> for Dispute {
    fn from(d: DisputeRecord) -> Self {
        Dispute {
            dispute_id: d.dispute_id.as_uuid(),
            order_id: d.order_id,
            status: d.status.as_str().to_owned(),
            reason: d.reason,
            amount: d.money.amount_json(),
            currency: d.money.currency().code().to_owned(),
            opened_at: d.opened_at,
            evidence_due_at: d.evidence_due_at,
            submitted_at: d.submitted_at,
            closed_at: d.closed_at,
            submission_id: d.submission_id,
        }
    }
}

/// An event of an order (`order_id`) or of a dispute (`dispute_id`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    #[schema(value_type = String, format = Uuid)]
    pub event_id: uuid::Uuid,
    #[serde(flatten)]
    pub aggregate: Aggregate,
    pub kind: String,
    pub provider_event_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

/// Whose event it is.
#[derive(Debug, Serialize, ToSchema)]
pub enum Aggregate {
    #[serde(rename = "order_id")]
    Order(String),
    #[serde(rename = "dispute_id")]
    Dispute(String),
}

impl Event {
    pub fn order(e: EventRecord) -> Self {
        Self::with(Aggregate::Order(e.aggregate_id.clone()), e)
    }

    pub fn dispute(e: EventRecord) -> Self {
        Self::with(Aggregate::Dispute(e.aggregate_id.clone()), e)
    }

    fn with(aggregate: Aggregate, e: EventRecord) -> Self {
        Event {
            event_id: e.event_id,
            aggregate,
            kind: e.kind,
            provider_event_id: e.provider_event_id,
            data: e.data,
            created_at: e.created_at,
        }
    }
}

/// One row of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub audit_id: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// The API key's name; `reconciliation`; or `cli:<command>:<login>`.
    pub actor: String,
    pub action: String,
    /// `order`, `dispute` or `api_key`.
    pub object_type: String,
    pub object_id: String,
    pub outcome: String,
    pub correlation_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Box<RawValue>,
}

impl From<pm_storage::audit::AuditRecord> for AuditEntry {
    fn from(r: pm_storage::audit::AuditRecord) -> Self {
        AuditEntry {
            audit_id: r.audit_id,
            created_at: r.created_at,
            actor: r.actor,
            action: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            outcome: r.outcome,
            correlation_id: r.correlation_id,
            detail: RawValue::from_string(r.detail)
                .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Capture {
    pub order_id: String,
    pub idempotency_key: String,
    #[schema(value_type = f64, example = 100.50)]
    pub amount: Box<RawValue>,
    pub currency: String,
    /// `success` or `failed`; `pending` while the provider is being asked; `unknown` when
    /// its answer was lost (retry with the same key, or wait for the reconciliation).
    pub status: String,
    pub provider_tx_id: Option<String>,
    /// Why the provider did not capture (`failed`).
    pub failure_reason: Option<String>,
    /// Why the last provider call ended without an answer (`unknown`).
    pub last_error: Option<String>,
    /// Provider calls made under this key.
    pub attempts: i32,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub captured_at: Option<DateTime<Utc>>,
}

impl From<&CaptureRecord> for Capture {
    fn from(c: &CaptureRecord) -> Self {
        Capture {
            order_id: c.order_id.to_string(),
            idempotency_key: c.idempotency_key.to_string(),
            amount: c.money.amount_json(),
            currency: c.money.currency().code().to_owned(),
            status: c.status.as_str().to_owned(),
            provider_tx_id: c.provider_tx_id.clone(),
            failure_reason: c.failure_reason.clone(),
            last_error: c.last_error.clone(),
            attempts: c.attempts,
            captured_at: c.captured_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceFileDto {
    pub file_id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Evidence {
    #[schema(value_type = String, format = Uuid)]
    pub dispute_id: uuid::Uuid,
    pub fields: BTreeMap<String, String>,
    pub files: Vec<EvidenceFileDto>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<EvidenceRecord> for Evidence {
    fn from(e: EvidenceRecord) -> Self {
        Evidence {
            dispute_id: e.dispute_id.as_uuid(),
            fields: e.evidence.fields,
            files: e
                .evidence
                .files
                .into_iter()
                .map(
                    |EvidenceFile {
                         file_id,
                         name,
                         content_type,
                         size,
                     }| EvidenceFileDto {
                        file_id,
                        name,
                        content_type,
                        size,
                    },
                )
                .collect(),
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Submission {
    pub submission_id: String,
    /// The dispute's status after the submission (normally `submitted`).
    pub status: String,
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<DateTime<Utc>>,
}

/// The answer to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// `accepted` (new; 202) or `duplicate` (seen before; 200).
    pub status: &'static str,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub event_id: Option<uuid::Uuid>,
    /// What the webhook did: `created`, `applied`, `stale` or `final_kept`.
    pub effect: Option<&'static str>,
}

/// Readiness of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub checks: BTreeMap<&'static str, String>,
}
