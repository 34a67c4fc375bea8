//! The reading side of domain events: what a consumer of `domain-events` makes of one
//! message. The envelope is parsed here, once, into an [`IncomingEvent`], and the data of
//! the types consumers read into typed values ([`EventData`]) — exact money, UTC times,
//! typed ids — so a consumer never handles a field its schema (`docs/events/`) does not
//! promise.
//!
//! Two kinds of message are kept apart, because a consumer must treat them differently:
//! - a message that is not an envelope, or a known event whose data breaks its schema, is an
//!   [`IncomingError`]: nothing can be made of it, whoever reads it;
//! - an envelope of a type or schema version this build does not know is *not* an error: a
//!   newer producer wrote it. It parses to [`Content::Unsupported`], naming what it is, so a
//!   consumer can record and skip it instead of stopping at it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use uuid::Uuid;

use super::{EventType, SCHEMA_VERSION};
use crate::dispute::DisputeStatus;
use crate::ids::{DisputeId, IdempotencyKey, OrderId, UserId};
use crate::money::{Amount, Currency, Money};
use crate::order::OrderStatus;
use crate::time;

/// Why a message is not a usable domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncomingError {
    /// Not JSON, or JSON without the envelope's fields.
    #[error("not a domain event envelope: {0}")]
    NotAnEnvelope(String),
    /// An envelope of a known type and version that breaks its schema.
    #[error("domain event {event_id} ({event_type}) is invalid: {reason}")]
    Invalid {
        event_id: Uuid,
        event_type: String,
        reason: String,
    },
}

/// The envelope as it travels, before its type is known.
#[derive(Deserialize)]
struct RawEnvelope {
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    #[serde(with = "time::rfc3339")]
    occurred_at: DateTime<Utc>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    data: Value,
}

/// One domain event as a consumer reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingEvent {
    event_id: Uuid,
    aggregate_id: String,
    sequence: i64,
    occurred_at: DateTime<Utc>,
    correlation_id: Option<String>,
    trace_id: Option<String>,
    content: Content,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A type and schema version this build reads, with its data.
    Known(EventData),
    /// A type or schema version this build does not know (a newer producer's).
    Unsupported {
        event_type: String,
        schema_version: i32,
        aggregate_type: String,
    },
}

/// The data of a known event: typed for the types consumers read, as published otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    OrderCreated(OrderCreated),
    OrderCaptured(OrderCaptured),
    OrderCaptureFailed(OrderCaptureFailed),
    DisputeOpened(DisputeOpened),
    DisputeWon(DisputeDecided),
    DisputeLost(DisputeDecided),
    /// A known type no consumer reads the fields of (yet): its data as published.
    Other(EventType, Value),
}

/// `order_created`: an order webhook created the order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderCreated {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    #[serde(with = "time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// How a capture's outcome was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettledBy {
    /// The provider answered the capture request.
    Request,
    /// The capture reconciliation asked the provider later.
    Reconciliation,
}

/// `order_captured`: the provider captured the order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderCaptured {
    pub order_id: OrderId,
    pub idempotency_key: IdempotencyKey,
    #[serde(flatten, deserialize_with = "money")]
    pub money: Money,
    pub provider_tx_id: String,
    #[serde(with = "time::rfc3339")]
    pub captured_at: DateTime<Utc>,
    pub settled_by: SettledBy,
}

/// `order_capture_failed`: the provider declined the capture, or has no record of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderCaptureFailed {
    pub order_id: OrderId,
    pub idempotency_key: IdempotencyKey,
    #[serde(flatten, deserialize_with = "money")]
    pub money: Money,
    pub reason: String,
    pub settled_by: SettledBy,
}

/// `dispute_opened`: a chargeback webhook opened a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DisputeOpened {
    pub dispute_id: DisputeId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: DisputeStatus,
    pub reason: String,
    #[serde(flatten, deserialize_with = "money")]
    pub money: Money,
    #[serde(with = "time::rfc3339")]
    pub opened_at: DateTime<Utc>,
    #[serde(with = "time::rfc3339::option")]
    pub evidence_due_at: Option<DateTime<Utc>>,
}

/// `dispute_won` and `dispute_lost`: the provider decided the dispute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DisputeDecided {
    pub dispute_id: DisputeId,
    pub order_id: OrderId,
    pub reason: String,
    #[serde(flatten, deserialize_with = "money")]
    pub money: Money,
    #[serde(with = "time::rfc3339")]
    pub opened_at: DateTime<Utc>,
    /// When the provider closed it (its webhook's time).
    #[serde(with = "time::rfc3339::option")]
    pub closed_at: Option<DateTime<Utc>>,
    /// `null` when the dispute's first webhook was already its decision.
    pub previous_status: Option<DisputeStatus>,
}

/// An event's `amount` (exact decimal text) and `currency`, as one [`Money`].
fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
    #[derive(Deserialize)]
    struct Fields {
        amount: String,
        currency: Currency,
    }
    let Fields { amount, currency } = Fields::deserialize(d)?;
    let amount = Amount::parse(&amount).map_err(serde::de::Error::custom)?;
    Money::new(amount, currency).map_err(serde::de::Error::custom)
}

impl EventData {
    fn parse(event_type: EventType, data: Value) -> serde_json::Result<Self> {
        use serde_json::from_value as read;
        Ok(match event_type {
            EventType::OrderCreated => EventData::OrderCreated(read(data)?),
            EventType::OrderCaptured => EventData::OrderCaptured(read(data)?),
            EventType::OrderCaptureFailed => EventData::OrderCaptureFailed(read(data)?),
            EventType::DisputeOpened => EventData::DisputeOpened(read(data)?),
            EventType::DisputeWon => EventData::DisputeWon(read(data)?),
            EventType::DisputeLost => EventData::DisputeLost(read(data)?),
            other => {
                if !data.is_object() {
                    return Err(serde::de::Error::custom("data must be an object"));
                }
                EventData::Other(other, data)
            }
        })
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::OrderCreated(_) => EventType::OrderCreated,
            EventData::OrderCaptured(_) => EventType::OrderCaptured,
            EventData::OrderCaptureFailed(_) => EventType::OrderCaptureFailed,
            EventData::DisputeOpened(_) => EventType::DisputeOpened,
            EventData::DisputeWon(_) => EventType::DisputeWon,
            EventData::DisputeLost(_) => EventType::DisputeLost,
            EventData::Other(t, _) => *t,
        }
    }
}

impl IncomingEvent {
    /// Parses a message value of `domain-events`.
    pub fn parse(bytes: &[u8]) -> Result<Self, IncomingError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| IncomingError::NotAnEnvelope(e.to_string()))?;
        let invalid = |reason: String| IncomingError::Invalid {
            event_id: raw.event_id,
            event_type: raw.event_type.clone(),
            reason,
        };
        if raw.aggregate_id.is_empty() {
            return Err(invalid("aggregate_id is empty".to_owned()));
        }
        if raw.sequence < 1 {
            return Err(invalid(format!(
                "sequence must be 1 or more (got {})",
                raw.sequence
            )));
        }
        let known = raw
            .event_type
            .parse::<EventType>()
            .ok()
            .filter(|_| raw.schema_version == SCHEMA_VERSION);
        let content = match known {
            None => Content::Unsupported {
                event_type: raw.event_type.clone(),
                schema_version: raw.schema_version,
                aggregate_type: raw.aggregate_type.clone(),
            },
            Some(event_type) => {
                let expected = event_type.aggregate().as_str();
                if raw.aggregate_type != expected {
                    return Err(invalid(format!(
                        "a {event_type} is about an {expected}, not {:?}",
                        raw.aggregate_type
                    )));
                }
                let data = EventData::parse(event_type, raw.data.clone())
                    .map_err(|e| invalid(format!("data: {e}")))?;
                Content::Known(data)
            }
        };
        Ok(IncomingEvent {
            event_id: raw.event_id,
            aggregate_id: raw.aggregate_id,
            sequence: raw.sequence,
            occurred_at: raw.occurred_at,
            correlation_id: raw.correlation_id,
            trace_id: raw.trace_id,
            content,
        })
    }

    /// Unique per event: what consumers deduplicate on.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The order id, or the dispute id as text.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// 1, 2, 3… per aggregate.
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// When the change was stored.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The event's type as published (known or not).
    pub fn event_type_name(&self) -> &str {
        match &self.content {
            Content::Known(data) => data.event_type().as_str(),
            Content::Unsupported { event_type, .. } => event_type,
        }
    }

    /// The schema version of its data as published.
    pub fn schema_version(&self) -> i32 {
        match &self.content {
            Content::Known(_) => SCHEMA_VERSION,
            Content::Unsupported { schema_version, .. } => *schema_version,
        }
    }

    /// `order` or `dispute` (or, for an unsupported event, what it says).
    pub fn aggregate_type(&self) -> &str {
        match &self.content {
            Content::Known(data) => data.event_type().aggregate().as_str(),
            Content::Unsupported { aggregate_type, .. } => aggregate_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_event::{AggregateType, Envelope};
    use proptest::prelude::*;

    const DISPUTE: &str = "0190a5c4-0000-7000-8000-0000000000d1";

    fn envelope(event_type: EventType, aggregate_id: &str, data: Value) -> Envelope {
        Envelope {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: SCHEMA_VERSION,
            aggregate_type: event_type.aggregate(),
            aggregate_id: aggregate_id.to_owned(),
            sequence: 3,
            occurred_at: time::parse_rfc3339("2026-03-01T12:00:00.5Z").expect("time"),
            correlation_id: Some("corr-1".to_owned()),
            trace_id: None,
            data,
        }
    }

    fn parsed(e: &Envelope) -> Result<IncomingEvent, IncomingError> {
        IncomingEvent::parse(&serde_json::to_vec(e).expect("serializes"))
    }

    fn captured(amount: &str, currency: &str) -> Value {
        serde_json::json!({
            "order_id": "ord-1",
            "idempotency_key": "cap-1",
            "amount": amount,
            "currency": currency,
            "provider_tx_id": "tx-1",
            "captured_at": "2026-03-01T12:00:00Z",
            "settled_by": "request",
        })
    }

    fn decided(closed_at: Value) -> Value {
        serde_json::json!({
            "dispute_id": DISPUTE,
            "order_id": "ord-1",
            "reason": "fraud",
            "amount": "100.50",
            "currency": "USD",
            "opened_at": "2026-03-01T00:00:00Z",
            "closed_at": closed_at,
            "previous_status": null,
        })
    }

    #[test]
    fn what_the_outbox_publishes_parses_back_with_typed_data() {
        let e = envelope(EventType::OrderCaptured, "ord-1", captured("25.50", "EUR"));
        let incoming = parsed(&e).expect("an event");
        assert_eq!(incoming.event_id(), e.event_id);
        assert_eq!(incoming.aggregate_id(), "ord-1");
        assert_eq!(incoming.aggregate_type(), AggregateType::Order.as_str());
        assert_eq!(incoming.sequence(), 3);
        assert_eq!(incoming.occurred_at(), e.occurred_at);
        assert_eq!(incoming.correlation_id(), Some("corr-1"));
        assert_eq!(incoming.event_type_name(), "order_captured");
        assert_eq!(incoming.schema_version(), SCHEMA_VERSION);
        let Content::Known(EventData::OrderCaptured(c)) = incoming.content() else {
            panic!("{incoming:?}");
        };
        assert_eq!(c.money.amount_text(), "25.50");
        assert_eq!(c.money.currency().code(), "EUR");
        assert_eq!(c.money.minor_units(), 2550);
        assert_eq!(c.settled_by, SettledBy::Request);

        let won = envelope(
            EventType::DisputeWon,
            DISPUTE,
            decided("2026-03-03T00:00:00Z".into()),
        );
        let Content::Known(EventData::DisputeWon(d)) = parsed(&won).expect("won").content().clone()
        else {
            panic!("not a decision");
        };
        assert_eq!(d.reason, "fraud");
        assert_eq!(d.previous_status, None);
        assert_eq!(d.closed_at.map(|t| (t - d.opened_at).num_hours()), Some(48));
        let lost = envelope(EventType::DisputeLost, DISPUTE, decided(Value::Null));
        assert!(matches!(
            parsed(&lost).expect("lost").content(),
            Content::Known(EventData::DisputeLost(DisputeDecided {
                closed_at: None,
                ..
            }))
        ));
    }

    proptest! {
        /// Whatever amount a capture had, its event reads back to the same minor units.
        #[test]
        fn captured_amounts_read_back_exactly(
            units in 1i64..1_000_000_000_000,
            currency in prop::sample::select(vec!["USD", "JPY", "KWD", "EUR"]),
        ) {
            let c = Currency::parse(currency).expect("currency");
            let text = c.format_minor_units(units);
            let e = envelope(EventType::OrderCaptured, "ord-1", captured(&text, currency));
            let incoming = parsed(&e).expect("an event");
            let Content::Known(EventData::OrderCaptured(got)) = incoming.content() else {
                panic!("{incoming:?}");
            };
            prop_assert_eq!(got.money.minor_units(), units);
            prop_assert_eq!(got.money.amount_text(), text);
        }
    }

    #[test]
    fn known_types_without_a_typed_reading_keep_their_data() {
        let data = serde_json::json!({"order_id": "ord-1", "reason": "risk"});
        let e = envelope(EventType::OrderHeld, "ord-1", data.clone());
        assert_eq!(
            parsed(&e).expect("held").content(),
            &Content::Known(EventData::Other(EventType::OrderHeld, data))
        );
        let not_an_object = envelope(EventType::OrderHeld, "ord-1", Value::Bool(true));
        assert!(matches!(
            parsed(&not_an_object),
            Err(IncomingError::Invalid { .. })
        ));
    }

    #[test]
    fn unknown_types_and_versions_are_named_not_refused() {
        let mut json = serde_json::to_value(envelope(
            EventType::OrderCreated,
            "ord-1",
            serde_json::json!({"anything": 1}),
        ))
        .expect("json");
        json["event_type"] = "order_refunded".into();
        json["aggregate_type"] = "refund".into();
        let e = IncomingEvent::parse(json.to_string().as_bytes()).expect("parses");
        assert_eq!(
            e.content(),
            &Content::Unsupported {
                event_type: "order_refunded".to_owned(),
                schema_version: 1,
                aggregate_type: "refund".to_owned(),
            }
        );
        assert_eq!(e.event_type_name(), "order_refunded");
        assert_eq!(e.aggregate_type(), "refund");

        json["event_type"] = "order_created".into();
        json["schema_version"] = 2.into();
        let v2 = IncomingEvent::parse(json.to_string().as_bytes()).expect("parses");
        assert!(matches!(
            v2.content(),
            Content::Unsupported {
                schema_version: 2,
                ..
            }
        ));
        assert_eq!(v2.schema_version(), 2);
    }

    #[test]
    fn what_is_not_an_envelope_is_refused_with_the_reason() {
        for bad in [
            &b"not json"[..],
            b"{}",
            b"[1,2]",
            br#"{"event_id":"nope","event_type":"order_created"}"#,
        ] {
            assert!(
                matches!(
                    IncomingEvent::parse(bad),
                    Err(IncomingError::NotAnEnvelope(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut json = serde_json::to_value(envelope(
            EventType::OrderCaptured,
            "ord-1",
            captured("1.00", "USD"),
        ))
        .expect("json");
        json["occurred_at"] = "yesterday".into();
        assert!(matches!(
            IncomingEvent::parse(json.to_string().as_bytes()),
            Err(IncomingError::NotAnEnvelope(_))
        ));
    }

    #[test]
    fn a_known_event_that_breaks_its_schema_is_invalid_and_says_why() {
        let cases = [
            (
                EventType::OrderCaptured,
                "ord-1",
                captured("25.505", "USD"),
                "decimal places",
            ),
            (
                EventType::OrderCaptured,
                "ord-1",
                captured("-1", "USD"),
                "greater than zero",
            ),
            (
                EventType::OrderCaptured,
                "ord-1",
                captured("1.00", "usd"),
                "ISO 4217",
            ),
            (
                EventType::OrderCreated,
                "ord-1",
                serde_json::json!({"order_id": "ord-1"}),
                "missing field",
            ),
            (
                EventType::DisputeWon,
                DISPUTE,
                decided("last week".into()),
                "RFC 3339",
            ),
        ];
        for (event_type, aggregate, data, why) in cases {
            let e = envelope(event_type, aggregate, data);
            match parsed(&e) {
                Err(err @ IncomingError::Invalid { .. }) => {
                    assert!(err.to_string().contains(why), "{err}");
                    assert!(err.to_string().contains(&e.event_id.to_string()), "{err}");
                }
                other => panic!("{event_type}: {other:?}"),
            }
        }
        let mut wrong_aggregate = serde_json::to_value(envelope(
            EventType::OrderCaptured,
            "o",
            captured("1.00", "USD"),
        ))
        .expect("json");
        wrong_aggregate["aggregate_type"] = "dispute".into();
        assert!(matches!(
            IncomingEvent::parse(wrong_aggregate.to_string().as_bytes()),
            Err(IncomingError::Invalid { .. })
        ));
        let mut no_sequence = serde_json::to_value(envelope(
            EventType::OrderCaptured,
            "o",
            captured("1.00", "USD"),
        ))
        .expect("json");
        no_sequence["sequence"] = 0.into();
        assert!(matches!(
            IncomingEvent::parse(no_sequence.to_string().as_bytes()),
            Err(IncomingError::Invalid { .. })
        ));
    }
}
