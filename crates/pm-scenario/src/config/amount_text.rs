//! Amounts in a scenario file: written as strings (`"100.50"`) or integers, never floats,
//! so the value the author wrote is the value the engine uses.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact decimal amount in major units, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountText(pub Decimal);

impl AmountText {
    /// Parses decimal text exactly (`"100.50"`, `"7"`).
    pub fn parse(text: &str) -> Option<Self> {
        Decimal::from_str_exact(text.trim()).ok().map(AmountText)
    }
}

impl fmt::Display for AmountText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for AmountText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AmountText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount written as a string such as \"100.50\", or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AmountText, E> {
                AmountText::parse(v).ok_or_else(|| {
                    E::custom(format!("{v:?} is not a decimal amount such as \"100.50\""))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AmountText, E> {
                Ok(AmountText(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AmountText, E> {
                Ok(AmountText(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AmountText, E> {
                Err(E::custom(format!(
                    "write amounts as strings such as \"{v}\": TOML floats are not exact"
                )))
            }
        }
        d.deserialize_any(V)
    }
}
