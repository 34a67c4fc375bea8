//! Operator commands sent to the API, parsed like webhooks: every field error at once.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::IdempotencyKey;
use crate::json_fields::{parse_object, Fields};
use crate::money::{Amount, Currency, Money};
use crate::order::HoldReason;
use crate::validation::{InputError, ValidationErrors};

/// `POST /orders/{order_id}/hold`: `{action: set|clear, reason: manual_review|risk}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldChange {
    Set(HoldReason),
    Clear,
}

#[derive(Deserialize)]
struct RawHold<'a> {
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
}

impl HoldChange {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let raw: RawHold<'_> = parse_object(body)?;
        let mut f = Fields(ValidationErrors::new());
        let action = f.parsed("action", raw.action, |s| match s {
            "set" | "clear" => Ok(s.to_owned()),
            _ => Err(format!("must be set or clear (got {s:?})")),
        });
        let reason = match (action.as_deref(), raw.reason) {
            (Some("clear"), None) => None,
            (_, r) => f.parsed("reason", r, str::parse::<HoldReason>),
        };
        match (action.as_deref(), reason) {
            (Some("set"), Some(r)) if f.0.is_empty() => Ok(HoldChange::Set(r)),
            (Some("clear"), _) if f.0.is_empty() => Ok(HoldChange::Clear),
            _ => Err(InputError::Invalid(f.0)),
        }
    }
}

/// `POST /orders/{order_id}/capture`: `{amount, currency, idempotency_key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureCommand {
    pub money: Money,
    pub idempotency_key: IdempotencyKey,
}

#[derive(Deserialize)]
struct RawCapture<'a> {
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<&'a RawValue>,
    #[serde(borrow, default)]
    idempotency_key: Option<&'a RawValue>,
}

impl CaptureCommand {
    pub fn parse(body: &[u8]) -> Result<Self, InputError> {
        let raw: RawCapture<'_> = parse_object(body)?;
        let mut f = Fields(ValidationErrors::new());
        let currency = f.parsed("currency", raw.currency, Currency::parse);
        let amount = f
            .required("amount", raw.amount)
            .and_then(|r| f.0.check("amount", Amount::from_json(r)));
        let money = match (amount, currency) {
            (Some(a), Some(c)) => f.0.check("amount", Money::new(a, c)),
            _ => None,
        };
        let key = f.parsed("idempotency_key", raw.idempotency_key, |s| {
            IdempotencyKey::parse(s)
        });
        match (money, key) {
            (Some(money), Some(idempotency_key)) if f.0.is_empty() => Ok(CaptureCommand {
                money,
                idempotency_key,
            }),
            _ => Err(InputError::Invalid(f.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_commands() {
        assert_eq!(
            HoldChange::parse(br#"{"action":"set","reason":"risk"}"#),
            Ok(HoldChange::Set(HoldReason::Risk))
        );
        assert_eq!(
            HoldChange::parse(br#"{"action":"clear"}"#),
            Ok(HoldChange::Clear)
        );
        assert!(matches!(
            HoldChange::parse(br#"{"action":"set"}"#),
            Err(InputError::Invalid(_))
        ));
        assert!(matches!(
            HoldChange::parse(br#"{"action":"pause","reason":"risk"}"#),
            Err(InputError::Invalid(_))
        ));
        assert!(matches!(
            HoldChange::parse(b"[]"),
            Err(InputError::Malformed(_))
        ));
    }

    #[test]
    fn an_idempotency_key_is_visible_ascii() {
        for key in ["clé", "two words", "tab\\t"] {
            let body = format!(r#"{{"amount":1,"currency":"EUR","idempotency_key":"{key}"}}"#);
            match CaptureCommand::parse(body.as_bytes()) {
                Err(InputError::Invalid(e)) => {
                    assert_eq!(e.errors()[0].field, "idempotency_key", "{key}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        let ok = br#"{"amount":1,"currency":"EUR","idempotency_key":"order-42_retry.1~x"}"#;
        assert!(CaptureCommand::parse(ok).is_ok());
    }

    #[test]
    fn capture_commands_keep_money_exact_and_report_every_error() {
        let c =
            CaptureCommand::parse(br#"{"amount":10.50,"currency":"EUR","idempotency_key":"k1"}"#)
                .expect("valid");
        assert_eq!(c.money.amount_text(), "10.50");
        match CaptureCommand::parse(br#"{"amount":-1,"currency":"EURO"}"#) {
            Err(InputError::Invalid(e)) => {
                let fields: Vec<_> = e.errors().iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["currency", "amount", "idempotency_key"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
