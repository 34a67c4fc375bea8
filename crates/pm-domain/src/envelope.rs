//! The envelope in which an accepted webhook travels from ingest to the API, over Kafka
//! or over HTTP: `{event_id, type, received_at, payload}`. The payload is the webhook's
//! JSON exactly as validated, so the consumer applies precisely what ingest accepted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::EventId;
use crate::time;
use crate::webhook::WebhookKind;

/// One accepted webhook on its way to being applied.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookEnvelope {
    /// Assigned by ingest when it accepted the webhook (UUIDv7).
    pub event_id: EventId,
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// When ingest accepted it; the event rows are stamped with this time.
    #[serde(with = "time::rfc3339")]
    pub received_at: DateTime<Utc>,
    pub payload: Box<RawValue>,
}

impl WebhookEnvelope {
    /// Wraps an already validated webhook.
    pub fn new<T: Serialize>(
        kind: WebhookKind,
        webhook: &T,
        received_at: DateTime<Utc>,
    ) -> serde_json::Result<Self> {
        Ok(Self {
            event_id: EventId::generate(),
            kind,
            received_at,
            payload: serde_json::value::to_raw_value(webhook)?,
        })
    }
}
