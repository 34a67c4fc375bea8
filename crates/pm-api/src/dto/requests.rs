//! The request bodies, described for the OpenAPI document only.
//!
//! Bodies are parsed by `pm-domain` from raw JSON (so that every field error can be reported
//! at once, and money is read from the number's digits); these types exist so that clients
//! and schema-driven fuzzers know what a valid body looks like. The constraints here are the
//! parsers' constraints; where they differ, the parser decides and answers 422.

#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// `POST /orders/{order_id}/hold`.
#[derive(Debug, ToSchema)]
pub struct HoldRequest {
    /// `set` places a hold (and needs `reason`), `clear` removes it.
    #[schema(pattern = "^(set|clear)$", example = "set")]
    action: String,
    #[schema(pattern = "^(manual_review|risk)$", example = "risk")]
    reason: Option<String>,
}

/// `POST /orders/{order_id}/capture`.
#[derive(Debug, ToSchema)]
pub struct CaptureRequest {
    /// Positive, with at most the currency's minor units (2 for USD, 0 for JPY).
    #[schema(value_type = f64, example = 100.50, exclusive_minimum = 0, maximum = 999999999999999.0, multiple_of = 0.01)]
    amount: f64,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    currency: String,
    /// The capture's idempotency key, sent on to the provider: 1–255 visible ASCII
    /// characters. Retry with the same key; a new key is a new capture.
    #[schema(pattern = "^[!-~]{1,255}$", example = "cap-2026-0001")]
    idempotency_key: String,
}

/// One evidence file reference.
#[derive(Debug, ToSchema)]
pub struct EvidenceFileRequest {
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f]*\\S[^\\x00-\\x1f\\x7f]*$"
    )]
    file_id: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f]*\\S[^\\x00-\\x1f\\x7f]*$"
    )]
    name: String,
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\x00-\\x1f\\x7f]*\\S[^\\x00-\\x1f\\x7f]*$"
    )]
    content_type: String,
    #[schema(minimum = 0)]
    size: u64,
}

/// `POST /disputes/{dispute_id}/evidence`: replaces the evidence. At least one field or
/// file; text without control characters (values may hold tabs and line breaks).
#[derive(Debug, ToSchema)]
pub struct EvidenceRequest {
    /// Named text fields, each at most 10,000 characters.
    fields: Option<BTreeMap<String, String>>,
    #[schema(max_items = 50)]
    files: Option<Vec<EvidenceFileRequest>>,
}

/// A provider's order webhook.
#[derive(Debug, ToSchema)]
pub struct OrderWebhookRequest {
    /// The provider's event id: the key of deduplication.
    #[schema(min_length = 1, max_length = 255)]
    provider_event_id: String,
    #[schema(min_length = 1, max_length = 255)]
    order_id: String,
    #[schema(format = Uuid)]
    user_id: String,
    #[schema(pattern = "^(created|updated|success|failed)$")]
    status: String,
    #[schema(format = DateTime)]
    created_at: String,
    /// Orders the webhooks of one order: an older one never overwrites a newer state.
    #[schema(format = DateTime)]
    updated_at: String,
    meta: Option<BTreeMap<String, String>>,
}

/// A provider's chargeback webhook.
#[derive(Debug, ToSchema)]
pub struct ChargebackWebhookRequest {
    #[schema(min_length = 1, max_length = 255)]
    provider_event_id: String,
    #[schema(min_length = 1, max_length = 255)]
    order_id: String,
    #[schema(format = Uuid)]
    user_id: String,
    #[schema(pattern = "^(opened|updated|closed)$")]
    status: String,
    #[schema(min_length = 1, max_length = 255)]
    reason: String,
    #[schema(value_type = f64, example = 100.50, exclusive_minimum = 0)]
    amount: f64,
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    currency: String,
    #[schema(format = DateTime)]
    occurred_at: String,
    #[schema(format = DateTime)]
    evidence_due_at: Option<String>,
    /// On `closed`, `resolution` (`won` or `lost`) says how the dispute ended.
    meta: Option<BTreeMap<String, String>>,
}

/// What ingest forwards to `/internal/updates/*`.
#[derive(Debug, ToSchema)]
pub struct EnvelopeRequest {
    #[schema(format = Uuid)]
    event_id: String,
    #[schema(pattern = "^(order|chargeback)$")]
    r#type: String,
    #[schema(format = DateTime)]
    received_at: String,
    /// The webhook as the provider sent it.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

/// The values of the query parameters that take a fixed set, for the document.
pub mod names {
    use utoipa::ToSchema;

    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum OrderStatus {
        Created,
        Updated,
        Success,
        Failed,
    }

    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum DisputeStatus {
        Open,
        UnderReview,
        Submitted,
        Won,
        Lost,
        Closed,
        Canceled,
    }

    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum OrderEventKind {
        WebhookReceived,
        HoldSet,
        HoldCleared,
        CaptureRequested,
        CaptureCompleted,
        CaptureFailed,
        CaptureUnknown,
    }

    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum DisputeEventKind {
        WebhookOpened,
        WebhookUpdated,
        ProviderDecision,
        EvidenceAdded,
        EvidenceSubmitted,
    }

    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum Sort {
        Asc,
        Desc,
    }
}
