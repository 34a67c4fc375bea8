//! A webhook that passed validation, wrapped for its journey downstream.

use chrono::{DateTime, Utc};
use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook, WebhookKind};
use pm_domain::{InputError, ProviderEventId, UserId};

/// Why a verified body could not become an envelope.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Malformed JSON (400) or invalid fields (422): the provider's fault.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A validated webhook could not be serialised again: a bug, never the provider's fault.
    #[error("cannot encode the envelope: {0}")]
    Envelope(#[from] serde_json::Error),
}

/// A validated webhook in its envelope, with what the sinks need to route it.
#[derive(Debug)]
pub struct AcceptedWebhook {
    pub kind: WebhookKind,
    /// The Kafka key: all of a user's events land on one partition, in order.
    pub user_id: UserId,
    /// The provider's id of this delivery, the key of deduplication.
    pub provider_event_id: ProviderEventId,
    pub envelope: WebhookEnvelope,
}

impl AcceptedWebhook {
    /// Parses and validates `body` (already verified) as a webhook of `kind`.
    pub fn parse(
        kind: WebhookKind,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Self, ParseError> {
        match kind {
            WebhookKind::Order => {
                let w = OrderWebhook::parse(body)?;
                Ok(AcceptedWebhook {
                    kind,
                    user_id: w.user_id,
                    envelope: WebhookEnvelope::new(kind, &w, received_at)?,
                    provider_event_id: w.provider_event_id,
                })
            }
            WebhookKind::Chargeback => {
                let w = ChargebackWebhook::parse(body)?;
                Ok(AcceptedWebhook {
                    kind,
                    user_id: w.user_id,
                    envelope: WebhookEnvelope::new(kind, &w, received_at)?,
                    provider_event_id: w.provider_event_id,
                })
            }
        }
    }

    /// The envelope as JSON, as it goes on the wire.
    pub fn envelope_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARGEBACK: &str = r#"{"provider_event_id":"cb-1","order_id":"ord-1",
        "user_id":"0B6F5C3E-8D1A-4C7E-9A51-2F0E1B2C3D4E","status":"opened","reason":"fraud",
        "amount":100.50,"currency":"USD","occurred_at":"2026-01-02T00:00:00Z","extra":1}"#;

    #[test]
    fn the_envelope_carries_the_validated_payload_with_the_amount_as_written() {
        let now = Utc::now();
        let w = AcceptedWebhook::parse(WebhookKind::Chargeback, CHARGEBACK.as_bytes(), now)
            .expect("valid");
        assert_eq!(
            w.user_id.to_string(),
            "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e"
        );
        assert_eq!(w.provider_event_id.as_str(), "cb-1");
        let json = String::from_utf8(w.envelope_json().expect("json")).expect("utf-8");
        assert!(json.contains(r#""amount":100.50"#), "{json}");
        assert!(json.contains(r#""type":"chargeback""#), "{json}");
    }

    #[test]
    fn malformed_and_invalid_bodies_are_told_apart() {
        let now = Utc::now();
        assert!(matches!(
            AcceptedWebhook::parse(WebhookKind::Order, b"{", now),
            Err(ParseError::Input(InputError::Malformed(_)))
        ));
        assert!(matches!(
            AcceptedWebhook::parse(WebhookKind::Order, br#"{"order_id":42}"#, now),
            Err(ParseError::Input(InputError::Invalid(_)))
        ));
    }
}
