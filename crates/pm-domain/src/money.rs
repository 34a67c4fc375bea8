//! Exact money: a positive decimal amount in an ISO 4217 currency.
//!
//! Amounts are never parsed through or computed with floats: they are read from the raw
//! JSON text of a number (or a string) straight into a [`Decimal`], and written back as a
//! JSON number with exactly the currency's minor-unit precision (`100.50`, `1000`, `1.250`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest amount we accept: fits `NUMERIC(19,4)` with room to spare.
const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_7FFF, 0x0003_8D7E, 0, false, 0); // 999_999_999_999_999

mod iso4217;

/// An active ISO 4217 currency code with a defined minor unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

/// Why a currency code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("must be a 3-letter upper-case ISO 4217 code such as USD (got {0:?})")]
    Format(String),
    #[error("{0} is not an active ISO 4217 currency")]
    Unknown(String),
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CurrencyError::Format(code.to_owned()));
        }
        iso4217::minor_units(code)
            .map(|minor_units| {
                let b = code.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    minor_units,
                }
            })
            .ok_or_else(|| CurrencyError::Unknown(code.to_owned()))
    }

    pub fn code(&self) -> &str {
        // The bytes were checked to be ASCII upper-case letters in `parse`.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u32 {
        u32::from(self.minor_units)
    }

    /// `minor` minor units of this currency (a total, so zero is allowed) as exact decimal
    /// text with the currency's precision: `301.50` for 30150 USD cents, `1000` for 1000 JPY.
    pub fn format_minor_units(&self, minor: i64) -> String {
        // At most 3 minor-unit digits: well inside Decimal's scale of 28.
        Decimal::new(minor, self.minor_units()).to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, CurrencyError> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A strictly positive decimal amount, not yet tied to a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Why an amount was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a decimal number such as 100.50 (got {0})")]
    NotANumber(String),
    #[error("must be greater than zero (got {0})")]
    NotPositive(Decimal),
    #[error("must be less than 1000000000000000 (got {0})")]
    TooLarge(Decimal),
    #[error("{currency} allows {allowed} decimal places; {amount} has {got}")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        allowed: u32,
        got: u32,
    },
}

impl Amount {
    pub fn new(value: Decimal) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive(value));
        }
        if value > MAX_AMOUNT {
            return Err(AmountError::TooLarge(value));
        }
        Ok(Amount(value.normalize()))
    }

    /// Parses decimal text exactly: `100.50`, `7`, `1.5e2` (JSON allows exponents).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let t = text.trim();
        let parsed = if t.contains(['e', 'E']) {
            Decimal::from_scientific(t)
        } else {
            Decimal::from_str_exact(t)
        };
        match parsed {
            Ok(d) if !t.starts_with('+') => Amount::new(d),
            _ => Err(AmountError::NotANumber(text.to_owned())),
        }
    }

    /// Reads an amount from the raw JSON of a field: a number (`100.50`) or a string
    /// (`"100.50"`). The number's text is used as written; it never becomes a float.
    pub fn from_json(raw: &RawValue) -> Result<Self, AmountError> {
        let text = raw.get().trim();
        if text.starts_with('"') {
            let s: String =
                serde_json::from_str(text).map_err(|_| AmountError::NotANumber(text.to_owned()))?;
            return Amount::parse(&s);
        }
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Amount::parse(text);
        }
        Err(AmountError::NotANumber(text.to_owned()))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

/// An amount in a currency, with no more decimal places than the currency allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Amount,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Amount, currency: Currency) -> Result<Self, AmountError> {
        let got = amount.0.scale();
        if got > currency.minor_units() {
            return Err(AmountError::TooPrecise {
                amount: amount.0,
                currency,
                allowed: currency.minor_units(),
                got,
            });
        }
        Ok(Money { amount, currency })
    }

    pub fn amount(&self) -> Amount {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in the currency's minor units: 10050 for 100.50 USD, 1000 for 1000 JPY.
    pub fn minor_units(&self) -> i64 {
        let mut d = self.amount.0;
        d.rescale(self.currency.minor_units());
        // An amount is below 10^15 with at most 3 minor-unit digits: below 10^18 < i64::MAX.
        i64::try_from(d.mantissa()).unwrap_or(i64::MAX)
    }

    /// The amount written with the currency's minor-unit precision: `100.50` for USD.
    pub fn amount_text(&self) -> String {
        let mut d = self.amount.0;
        d.rescale(self.currency.minor_units());
        d.to_string()
    }

    /// The amount as a JSON number with the currency's precision, for response bodies.
    pub fn amount_json(&self) -> Box<RawValue> {
        // A rescaled Decimal prints as plain digits with an optional point: valid JSON.
        RawValue::from_string(self.amount_text())
            .unwrap_or_else(|_| RawValue::from_string("0".to_owned()).expect("literal zero"))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_text(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn money(a: &str, c: &str) -> Result<Money, AmountError> {
        Money::new(Amount::parse(a)?, Currency::parse(c).expect("currency"))
    }

    #[test]
    fn currency_codes_are_checked_against_iso_4217() {
        assert_eq!(Currency::parse("USD").map(|c| c.minor_units()), Ok(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.minor_units()), Ok(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.minor_units()), Ok(3));
        assert_eq!(Currency::parse("UAH").map(|c| c.minor_units()), Ok(2));
        assert!(matches!(
            Currency::parse("usd"),
            Err(CurrencyError::Format(_))
        ));
        assert!(matches!(
            Currency::parse("US"),
            Err(CurrencyError::Format(_))
        ));
        assert!(matches!(
            Currency::parse("ABC"),
            Err(CurrencyError::Unknown(_))
        ));
        assert!(matches!(
            Currency::parse("XAU"),
            Err(CurrencyError::Unknown(_))
        ));
    }

    #[test]
    fn amounts_are_exact_and_positive() {
        assert_eq!(
            money("100.50", "USD").map(|m| m.amount_text()),
            Ok("100.50".into())
        );
        assert_eq!(
            money("100.5", "USD").map(|m| m.amount_text()),
            Ok("100.50".into())
        );
        assert_eq!(
            money("100", "JPY").map(|m| m.amount_text()),
            Ok("100".into())
        );
        assert_eq!(
            money("0.1", "KWD").map(|m| m.amount_text()),
            Ok("0.100".into())
        );
        assert_eq!(
            money("1.5e2", "USD").map(|m| m.amount_text()),
            Ok("150.00".into())
        );
        assert!(matches!(
            money("100.505", "USD"),
            Err(AmountError::TooPrecise { got: 3, .. })
        ));
        assert!(matches!(
            money("1.5", "JPY"),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            Amount::parse("-1"),
            Err(AmountError::NotPositive(_))
        ));
        assert!(matches!(
            Amount::parse("0"),
            Err(AmountError::NotPositive(_))
        ));
        assert!(matches!(
            Amount::parse("abc"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Amount::parse("+1"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Amount::parse("1e20"),
            Err(AmountError::TooLarge(_))
        ));
        // Trailing zeros beyond the currency's precision are not extra precision.
        assert_eq!(
            money("10.500", "USD").map(|m| m.amount_text()),
            Ok("10.50".into())
        );
    }

    #[test]
    fn amounts_read_from_raw_json_numbers_and_strings() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).expect("json");
        assert_eq!(
            Amount::from_json(&raw("100.50")).map(|a| a.value().to_string()),
            Ok("100.5".into())
        );
        assert_eq!(
            Amount::from_json(&raw("\"19.99\"")).map(|a| a.value().to_string()),
            Ok("19.99".into())
        );
        assert!(Amount::from_json(&raw("true")).is_err());
        assert!(Amount::from_json(&raw("[1]")).is_err());
        assert!(Amount::from_json(&raw("\"\"")).is_err());
    }

    #[test]
    fn minor_units_count_exactly_both_ways() {
        let m = |a: &str, c: &str| money(a, c).expect("money").minor_units();
        assert_eq!(m("100.5", "USD"), 10050);
        assert_eq!(m("1000", "JPY"), 1000);
        assert_eq!(m("0.1", "KWD"), 100);
        assert_eq!(m("999999999999999", "KWD"), 999_999_999_999_999_000);
        let usd = Currency::parse("USD").expect("usd");
        assert_eq!(usd.format_minor_units(30150), "301.50");
        assert_eq!(usd.format_minor_units(0), "0.00");
        assert_eq!(usd.format_minor_units(5), "0.05");
        assert_eq!(
            Currency::parse("JPY")
                .expect("jpy")
                .format_minor_units(1000),
            "1000"
        );
        assert_eq!(
            Currency::parse("KWD").expect("kwd").format_minor_units(1),
            "0.001"
        );
    }

    #[test]
    fn amount_json_is_a_number_with_minor_units() {
        let m = money("7", "EUR").expect("money");
        assert_eq!(m.amount_json().get(), "7.00");
    }

    proptest! {
        #[test]
        fn minor_unit_text_round_trips_exactly(cents in 1u64..100_000_000_000u64) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let m = money(&text, "USD").expect("valid");
            prop_assert_eq!(m.amount_text(), text);
        }
    }
}
