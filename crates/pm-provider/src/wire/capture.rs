//! Bodies of `POST /api/v1/capture`.

use pm_domain::money::{AmountError, CurrencyError};
use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Request body of a capture: take `amount` of `currency` for the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// The provider's order id.
    pub order_id: String,
    /// The amount as the exact JSON text of a number with the currency's precision
    /// (`100.50`); read it with [`CaptureRequest::amount`].
    pub amount: Box<RawValue>,
    /// ISO 4217 code such as `USD`; read it with [`CaptureRequest::currency`].
    pub currency: String,
    /// Repeated in the body because the provider's API asks for it there as well as in the
    /// `Idempotency-Key` header.
    pub idempotency_key: String,
}

impl CaptureRequest {
    /// Builds the body the merchant sends for a capture of `money`.
    pub fn new(order_id: &OrderId, money: &Money, key: &IdempotencyKey) -> Self {
        CaptureRequest {
            order_id: order_id.as_str().to_owned(),
            amount: money.amount_json(),
            currency: money.currency().code().to_owned(),
            idempotency_key: key.as_str().to_owned(),
        }
    }

    /// The amount parsed exactly from the number's text (a JSON string is accepted too).
    pub fn amount(&self) -> Result<Amount, AmountError> {
        Amount::from_json(&self.amount)
    }

    /// The currency, checked against ISO 4217.
    pub fn currency(&self) -> Result<Currency, CurrencyError> {
        Currency::parse(&self.currency)
    }
}

/// Response body of a capture that the provider processed (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureResponse {
    /// The provider's id of the capture transaction.
    pub transaction_id: String,
    /// [`CAPTURE_SUCCESS`](super::CAPTURE_SUCCESS) when the money was captured; anything else
    /// is a failed capture.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Money {
        let amount = Amount::parse(text).expect("amount");
        Money::new(amount, Currency::parse("USD").expect("currency")).expect("money")
    }

    #[test]
    fn request_writes_the_amount_as_an_exact_number() {
        let request = CaptureRequest::new(
            &OrderId::parse("ord-1").expect("order id"),
            &usd("100.5"),
            &IdempotencyKey::parse("key-1").expect("key"),
        );
        let json = serde_json::to_string(&request).expect("serialize");
        assert_eq!(
            json,
            r#"{"order_id":"ord-1","amount":100.50,"currency":"USD","idempotency_key":"key-1"}"#
        );
    }

    #[test]
    fn request_read_by_a_server_keeps_the_amount_text() {
        let body = r#"{"order_id":"o","amount":100.50,"currency":"USD","idempotency_key":"k"}"#;
        let request: CaptureRequest = serde_json::from_str(body).expect("deserialize");
        assert_eq!(request.amount.get(), "100.50");
        assert_eq!(request.amount(), Amount::parse("100.50"));
        assert_eq!(request.currency(), Currency::parse("USD"));
    }

    #[test]
    fn request_with_a_bad_amount_still_deserializes_so_a_server_can_reject_it() {
        let body = r#"{"order_id":"o","amount":"ten","currency":"usd","idempotency_key":"k"}"#;
        let request: CaptureRequest = serde_json::from_str(body).expect("deserialize");
        assert!(request.amount().is_err());
        assert!(request.currency().is_err());
    }
}
