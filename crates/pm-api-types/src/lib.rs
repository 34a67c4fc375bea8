//! The core API's response shapes on the wire (PRODUCT.md §3.2.1; field names kept from
//! the original system), in one place for both sides: serve-api serializes them, and
//! every client — `verify`, the load test's lag sampling, the provider simulator, the
//! tests — deserializes the same types instead of a hand-copied subset.
//!
//! Timestamps are RFC 3339 in UTC with `Z`; absent values are `null`; amounts are JSON
//! numbers with the currency's precision, kept as their exact text ([`RawValue`]) so they
//! never pass through a float on either side.
//!
//! With the feature `openapi` the types also describe themselves for `/openapi.json`; with
//! the feature `client`, [`client::ApiAccess`] says where the API is and how to reach it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use pm_domain::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[cfg(feature = "client")]
pub mod client;

/// A list page: `items` is never `null`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Order {
    pub order_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub user_id: uuid::Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "created"))]
    pub status: String,
    pub on_hold: bool,
    pub hold_reason: Option<String>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Hold {
    pub order_id: String,
    pub on_hold: bool,
    pub hold_reason: Option<String>,
    /// When the hold last changed (the order's creation time if it never did).
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Dispute {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub dispute_id: uuid::Uuid,
    pub order_id: String,
    #[cfg_attr(feature = "openapi", schema(example = "open"))]
    pub status: String,
    pub reason: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 100.50))]
    pub amount: Box<RawValue>,
    #[cfg_attr(feature = "openapi", schema(example = "USD"))]
    pub currency: String,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub evidence_due_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub submitted_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub closed_at: Option<DateTime<Utc>>,
    pub submission_id: Option<String>,
}

/// An event of an order (`order_id`) or of a dispute (`dispute_id`).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Event {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub event_id: uuid::Uuid,
    #[serde(flatten)]
    pub aggregate: Aggregate,
    pub kind: String,
    pub provider_event_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Box<RawValue>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
}

/// Whose event it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum Aggregate {
    #[serde(rename = "order_id")]
    Order(String),
    #[serde(rename = "dispute_id")]
    Dispute(String),
}

impl Aggregate {
    /// The order id or dispute id.
    pub fn id(&self) -> &str {
        match self {
            Aggregate::Order(id) | Aggregate::Dispute(id) => id,
        }
    }
}

/// One row of the audit trail.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    pub audit_id: i64,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
    /// The API key's name; `reconciliation`; or `cli:<command>:<login>`.
    pub actor: String,
    pub action: String,
    /// `order`, `dispute` or `api_key`.
    pub object_type: String,
    pub object_id: String,
    pub outcome: String,
    pub correlation_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: Box<RawValue>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Capture {
    pub order_id: String,
    pub idempotency_key: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 100.50))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub captured_at: Option<DateTime<Utc>>,
}

/// A file of the evidence (its metadata: the file itself lives with the provider).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EvidenceFile {
    pub file_id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Evidence {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub dispute_id: uuid::Uuid,
    pub fields: BTreeMap<String, String>,
    pub files: Vec<EvidenceFile>,
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Submission {
    pub submission_id: String,
    /// The dispute's status after the submission (normally `submitted`).
    pub status: String,
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub submitted_at: Option<DateTime<Utc>>,
}

/// The answer to a webhook, from the API and from ingest.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookAck {
    /// `accepted` (new; 202) or `duplicate` (seen before; 200).
    pub status: String,
    /// The event row's id (ingest: the envelope's id); absent for a duplicate.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<uuid::Uuid>,
    /// What the webhook did: `created`, `applied`, `stale` or `final_kept` (the API only:
    /// ingest has not applied it yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

/// Orders created per UTC day (`GET /analytics/orders`), oldest first: the analytics
/// projection's count of `order_created` events by the day they were stored.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OrderVolume {
    pub days: Vec<OrderDay>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OrderDay {
    /// A UTC day, `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub day: NaiveDate,
    pub orders_created: i64,
}

/// Settled captures per UTC day and currency (`GET /analytics/captures`), oldest first.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CaptureVolume {
    pub days: Vec<CaptureDay>,
}

/// One currency's captures on one day: those the provider made, and those it declined.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CaptureDay {
    /// A UTC day, `YYYY-MM-DD`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub day: NaiveDate,
    #[cfg_attr(feature = "openapi", schema(example = "USD"))]
    pub currency: String,
    pub captured: i64,
    /// Their sum in the currency's minor units (cents for USD, yen for JPY).
    pub captured_minor_units: i64,
    /// The same sum as a number with the currency's precision.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 100.50))]
    pub captured_amount: Box<RawValue>,
    pub failed: i64,
    pub failed_minor_units: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 0.00))]
    pub failed_amount: Box<RawValue>,
}

/// Decided disputes (`GET /analytics/disputes`): outcomes per reason and the time from
/// opening to decision, over the disputes decided on the requested days.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DisputeAnalytics {
    /// Most decided reason first.
    pub outcomes: Vec<ReasonOutcome>,
    pub time_to_decision: DecisionTimes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReasonOutcome {
    pub reason: String,
    pub won: i64,
    pub lost: i64,
    /// won / (won + lost).
    pub win_rate: f64,
}

/// Seconds from a dispute's opening to its decision (the provider's times); `null` when no
/// dispute was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DecisionTimes {
    pub decided: i64,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// Readiness of each dependency: `status` is `ok` or `unavailable`; each check says `ok`
/// or what is wrong.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Health {
    pub status: String,
    pub checks: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_say_whose_they_are_and_amounts_keep_their_digits() {
        let text = r#"{"event_id":"0190a5c4-0000-7000-8000-000000000001","dispute_id":"d-1",
            "kind":"evidence_saved","provider_event_id":null,"data":{"a":1},
            "created_at":"2026-03-01T12:00:00Z"}"#;
        let event: Event = serde_json::from_str(text).expect("an event");
        assert_eq!(event.aggregate, Aggregate::Dispute("d-1".to_owned()));
        assert_eq!(event.aggregate.id(), "d-1");
        let back = serde_json::to_value(&event).expect("serializes");
        assert_eq!(back["dispute_id"], "d-1");
        assert!(back.get("order_id").is_none());

        let dispute = r#"{"dispute_id":"0190a5c4-0000-7000-8000-000000000002","order_id":"o",
            "status":"open","reason":"fraud","amount":100.50,"currency":"EUR",
            "opened_at":"2026-03-01T12:00:00Z","evidence_due_at":null,"submitted_at":null,
            "closed_at":null,"submission_id":null}"#;
        let d: Dispute = serde_json::from_str(dispute).expect("a dispute");
        assert_eq!(d.amount.get(), "100.50");
        let page: List<Dispute> = serde_json::from_str(&format!(
            r#"{{"items":[{dispute}],"next_cursor":null,"has_more":false}}"#
        ))
        .expect("a page");
        assert_eq!(page.items.len(), 1);
    }

    #[test]
    fn an_ack_leaves_out_what_it_does_not_know() {
        let ack = WebhookAck {
            status: "duplicate".to_owned(),
            event_id: None,
            effect: None,
        };
        assert_eq!(
            serde_json::to_string(&ack).expect("serializes"),
            r#"{"status":"duplicate"}"#
        );
        let read: WebhookAck = serde_json::from_str(
            r#"{"status":"accepted","event_id":"0190a5c4-0000-7000-8000-000000000003"}"#,
        )
        .expect("ingest's ack");
        assert!(read.event_id.is_some() && read.effect.is_none());
    }
}
