//! Provider webhook payloads, parsed from raw JSON into typed values.
//!
//! Parsing reports every field error at once (missing, wrong type, bad UUID, bad currency,
//! negative amount, …) and distinguishes a body that is not a JSON object at all
//! (malformed, HTTP 400) from one whose fields are wrong (HTTP 422). Each field is taken
//! as raw JSON text first, so the amount is read from its digits and never from a float,
//! and unknown fields are ignored (providers add fields without notice).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::dispute::{ChargebackStatus, Resolution};
use crate::ids::{OrderId, ProviderEventId, UserId};
use crate::json_fields::{parse_object, Fields};
use crate::money::{Amount, Currency, Money};
use crate::order::OrderStatus;
use crate::time;
use crate::validation::{text_problem, InputError, ValidationErrors};

/// Free-form provider metadata: string keys to string values.
pub type Meta = BTreeMap<String, String>;

/// The two webhook families a provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Order,
    Chargeback,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Order => "order",
            WebhookKind::Chargeback => "chargeback",
        }
    }
}

/// An order webhook (`POST /webhooks/payments/orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderWebhook {
    pub provider_event_id: ProviderEventId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub meta: Meta,
}

/// A chargeback webhook (`POST /webhooks/payments/chargebacks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargebackWebhook {
    pub provider_event_id: ProviderEventId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: ChargebackStatus,
    pub reason: String,
    pub money: Money,
    pub occurred_at: DateTime<Utc>,
    pub evidence_due_at: Option<DateTime<Utc>>,
    pub meta: Meta,
    /// From `meta.resolution` on `closed`; [`Resolution::Closed`] otherwise.
    pub resolution: Resolution,
}

/// Longest `reason` we keep.
const MAX_REASON_LEN: usize = 255;

#[derive(Deserialize)]
struct RawOrder<'a> {
    #[serde(borrow, default)]
    provider_event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawChargeback<'a> {
    #[serde(borrow, default)]
    provider_event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<&'a RawValue>,
    #[serde(borrow, default)]
    occurred_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    evidence_due_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    meta: Option<&'a RawValue>,
}

impl OrderWebhook {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let raw: RawOrder<'_> = parse_object(body)?;
        let mut f = Fields(ValidationErrors::new());
        let provider_event_id = f.parsed("provider_event_id", raw.provider_event_id, |s| {
            ProviderEventId::parse(s)
        });
        let order_id = f.parsed("order_id", raw.order_id, |s| OrderId::parse(s));
        let user_id = f.parsed("user_id", raw.user_id, UserId::parse);
        let status = f.parsed("status", raw.status, str::parse::<OrderStatus>);
        let created_at = f.timestamp("created_at", raw.created_at);
        let updated_at = f.timestamp("updated_at", raw.updated_at);
        let meta = f.meta(raw.meta);
        if let (Some(c), Some(u)) = (created_at, updated_at) {
            if u < c {
                f.0.push("updated_at", "must not be earlier than created_at");
            }
        }
        match (
            provider_event_id,
            order_id,
            user_id,
            status,
            created_at,
            updated_at,
            meta,
        ) {
            (
                Some(provider_event_id),
                Some(order_id),
                Some(user_id),
                Some(status),
                Some(created_at),
                Some(updated_at),
                Some(meta),
            ) if f.0.is_empty() => Ok(OrderWebhook {
                provider_event_id,
                order_id,
                user_id,
                status,
                created_at,
                updated_at,
                meta,
            }),
            _ => Err(InputError::Invalid(f.0)),
        }
    }
}

impl ChargebackWebhook {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let raw: RawChargeback<'_> = parse_object(body)?;
        let mut f = Fields(ValidationErrors::new());
        let provider_event_id = f.parsed("provider_event_id", raw.provider_event_id, |s| {
            ProviderEventId::parse(s)
        });
        let order_id = f.parsed("order_id", raw.order_id, |s| OrderId::parse(s));
        let user_id = f.parsed("user_id", raw.user_id, UserId::parse);
        let status = f.parsed("status", raw.status, str::parse::<ChargebackStatus>);
        let reason = f.parsed("reason", raw.reason, |s| {
            let len = s.chars().count();
            if s.trim().is_empty() {
                Err("must not be blank".to_owned())
            } else if len > MAX_REASON_LEN {
                Err(format!(
                    "must be at most {MAX_REASON_LEN} characters (got {len})"
                ))
            } else if let Some(problem) = text_problem(s, false) {
                Err(problem.to_owned())
            } else {
                Ok(s.to_owned())
            }
        });
        let currency = f.parsed("currency", raw.currency, Currency::parse);
        let amount = f
            .required("amount", raw.amount)
            .and_then(|raw| f.0.check("amount", Amount::from_json(raw)));
        let money = match (amount, currency) {
            (Some(a), Some(c)) => f.0.check("amount", Money::new(a, c)),
            _ => None,
        };
        let occurred_at = f.timestamp("occurred_at", raw.occurred_at);
        let evidence_due_at = f.optional_timestamp("evidence_due_at", raw.evidence_due_at);
        let meta = f.meta(raw.meta);
        let resolution = match (status, &meta) {
            (Some(ChargebackStatus::Closed), Some(meta)) => f.0.check(
                "meta.resolution",
                Resolution::from_meta(meta.get("resolution").map(String::as_str)),
            ),
            _ => Some(Resolution::Closed),
        };
        match (
            provider_event_id,
            order_id,
            user_id,
            status,
            reason,
            money,
            occurred_at,
            evidence_due_at,
            meta,
            resolution,
        ) {
            (
                Some(provider_event_id),
                Some(order_id),
                Some(user_id),
                Some(status),
                Some(reason),
                Some(money),
                Some(occurred_at),
                Some(evidence_due_at),
                Some(meta),
                Some(resolution),
            ) if f.0.is_empty() => Ok(ChargebackWebhook {
                provider_event_id,
                order_id,
                user_id,
                status,
                reason,
                money,
                occurred_at,
                evidence_due_at,
                meta,
                resolution,
            }),
            _ => Err(InputError::Invalid(f.0)),
        }
    }
}

/// The wire form of an order webhook, for forwarding and for event data.
#[derive(Serialize)]
struct OrderWire<'a> {
    provider_event_id: &'a ProviderEventId,
    order_id: &'a OrderId,
    user_id: &'a UserId,
    status: OrderStatus,
    #[serde(with = "time::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "time::rfc3339")]
    updated_at: DateTime<Utc>,
    meta: &'a Meta,
}

/// The wire form of a chargeback webhook, for forwarding and for event data.
#[derive(Serialize)]
struct ChargebackWire<'a> {
    provider_event_id: &'a ProviderEventId,
    order_id: &'a OrderId,
    user_id: &'a UserId,
    status: ChargebackStatus,
    reason: &'a str,
    amount: Box<RawValue>,
    currency: Currency,
    #[serde(with = "time::rfc3339")]
    occurred_at: DateTime<Utc>,
    #[serde(with = "time::rfc3339::option")]
    evidence_due_at: Option<DateTime<Utc>>,
    meta: &'a Meta,
}

impl Serialize for OrderWebhook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OrderWire {
            provider_event_id: &self.provider_event_id,
            order_id: &self.order_id,
            user_id: &self.user_id,
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            meta: &self.meta,
        }
        .serialize(s)
    }
}

impl Serialize for ChargebackWebhook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ChargebackWire {
            provider_event_id: &self.provider_event_id,
            order_id: &self.order_id,
            user_id: &self.user_id,
            status: self.status,
            reason: &self.reason,
            amount: self.money.amount_json(),
            currency: self.money.currency(),
            occurred_at: self.occurred_at,
            evidence_due_at: self.evidence_due_at,
            meta: &self.meta,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests;
