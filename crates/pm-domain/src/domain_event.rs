//! Domain events: what changed in an order or a dispute, as other systems learn it from the
//! `domain-events` topic (through the transactional outbox).
//!
//! Each event is one message: an [`Envelope`] naming the event, its aggregate and that
//! aggregate's sequence number, with the event's data. The data of each type is described by a
//! JSON Schema in `docs/events/` (one file per type and version); a change that is not
//! backwards compatible gets a new [`SCHEMA_VERSION`]. The producing side writes an
//! [`Envelope`]; consumers read messages back with [`incoming::IncomingEvent`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

pub mod incoming;

pub use incoming::{IncomingError, IncomingEvent};

/// The version of every event type's data schema.
pub const SCHEMA_VERSION: i32 = 1;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    Order,
    Dispute,
}

impl AggregateType {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::Order => "order",
            AggregateType::Dispute => "dispute",
        }
    }
}

macro_rules! event_types {
    ($($variant:ident => ($name:literal, $aggregate:ident)),+ $(,)?) => {
        /// Every domain event type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),+ }
            }

            /// The kind of aggregate events of this type are about.
            pub fn aggregate(self) -> AggregateType {
                match self { $(EventType::$variant => AggregateType::$aggregate),+ }
            }
        }

        impl std::str::FromStr for EventType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(EventType::$variant),)+
                    _ => Err(format!("unknown domain event type {s:?}")),
                }
            }
        }
    };
}

event_types! {
    OrderCreated => ("order_created", Order),
    OrderStatusChanged => ("order_status_changed", Order),
    OrderHeld => ("order_held", Order),
    OrderReleased => ("order_released", Order),
    OrderCaptured => ("order_captured", Order),
    OrderCaptureFailed => ("order_capture_failed", Order),
    DisputeOpened => ("dispute_opened", Dispute),
    DisputeStatusChanged => ("dispute_status_changed", Dispute),
    DisputeEvidenceUpdated => ("dispute_evidence_updated", Dispute),
    DisputeSubmitted => ("dispute_submitted", Dispute),
    DisputeWon => ("dispute_won", Dispute),
    DisputeLost => ("dispute_lost", Dispute),
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One event as published: the message value on `domain-events` (its key is the aggregate
/// id, so one aggregate's events stay in order on one partition).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// Unique per event: consumers deduplicate on it (the outbox may publish an event twice).
    pub event_id: uuid::Uuid,
    pub event_type: EventType,
    pub schema_version: i32,
    pub aggregate_type: AggregateType,
    pub aggregate_id: String,
    /// 1, 2, 3… per aggregate, without gaps: a consumer that sees n+2 after n missed one.
    pub sequence: i64,
    #[serde(with = "crate::time::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    /// The type's data (`docs/events/<event_type>.v<schema_version>.json`).
    pub data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_and_names_its_aggregate() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
            assert!(t.as_str().starts_with(t.aggregate().as_str()));
        }
        assert!("order_deleted".parse::<EventType>().is_err());
    }
}
