//! `[money]`: currencies (weighted) and amount ranges, exact to the currency's minor unit.

use std::collections::BTreeMap;

use pm_domain::Currency;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::AmountText;
use crate::error::Problems;

/// Largest amount a scenario may generate, in major units.
const MAX_AMOUNT: i64 = 1_000_000_000;

/// The `[money]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoneyConfig {
    /// ISO 4217 code → weight.
    pub currencies: BTreeMap<String, u32>,
    /// Smallest amount, in major units (`"1.00"`), for currencies without a range.
    pub min: AmountText,
    /// Largest amount, in major units, for currencies without a range.
    pub max: AmountText,
    /// Per-currency ranges that replace `min`/`max` (e.g. `JPY = { min = "100", max = "150000" }`).
    pub ranges: BTreeMap<String, AmountRange>,
}

/// An amount range for one currency, in major units, both ends included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountRange {
    /// Smallest amount.
    pub min: AmountText,
    /// Largest amount.
    pub max: AmountText,
}

impl Default for MoneyConfig {
    fn default() -> Self {
        MoneyConfig {
            currencies: [
                ("USD", 50),
                ("EUR", 25),
                ("GBP", 10),
                ("UAH", 10),
                ("JPY", 5),
            ]
            .into_iter()
            .map(|(c, w)| (c.to_owned(), w))
            .collect(),
            min: AmountText(Decimal::new(100, 2)),
            max: AmountText(Decimal::new(100_000, 2)),
            ranges: BTreeMap::new(),
        }
    }
}

/// A currency ready to draw from: its weight and its range in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CurrencyChoice {
    pub(crate) currency: Currency,
    pub(crate) weight: u64,
    pub(crate) min_minor: i64,
    pub(crate) max_minor: i64,
}

impl MoneyConfig {
    /// Checks the section and returns the currencies to draw from (in code order).
    pub(crate) fn resolve(&self, p: &mut Problems) -> Vec<CurrencyChoice> {
        if self.currencies.values().map(|w| u64::from(*w)).sum::<u64>() == 0 {
            p.push(
                "money.currencies",
                "needs at least one currency with a weight above 0",
            );
        }
        for code in self.ranges.keys() {
            if !self.currencies.contains_key(code) {
                p.push(
                    format!("money.ranges.{code}"),
                    "names a currency that is not in money.currencies",
                );
            }
        }
        let mut out = Vec::new();
        for (code, weight) in &self.currencies {
            let field = format!("money.currencies.{code}");
            let currency = match Currency::parse(code) {
                Ok(c) => c,
                Err(e) => {
                    p.push(field, e.to_string());
                    continue;
                }
            };
            let (range_field, min, max) = match self.ranges.get(code) {
                Some(r) => (format!("money.ranges.{code}"), r.min.0, r.max.0),
                None => ("money".to_owned(), self.min.0, self.max.0),
            };
            if let Some((min_minor, max_minor)) = minor_range(p, &range_field, currency, min, max) {
                out.push(CurrencyChoice {
                    currency,
                    weight: u64::from(*weight),
                    min_minor,
                    max_minor,
                });
            }
        }
        out
    }
}

/// The range in minor units: `min` rounded up and `max` rounded down to the currency's
/// precision.
fn minor_range(
    p: &mut Problems,
    field: &str,
    currency: Currency,
    min: Decimal,
    max: Decimal,
) -> Option<(i64, i64)> {
    let bad = |p: &mut Problems, which: &str, msg: String| {
        p.push(format!("{field}.{which}"), msg);
        None
    };
    if min <= Decimal::ZERO {
        return bad(p, "min", format!("must be greater than 0 (got {min})"));
    }
    if max > Decimal::from(MAX_AMOUNT) {
        return bad(
            p,
            "max",
            format!("must be at most {MAX_AMOUNT} (got {max})"),
        );
    }
    if min > max {
        return bad(p, "min", format!("must not exceed max ({min} > {max})"));
    }
    let scale = Decimal::from(10_i64.pow(currency.minor_units()));
    let lo = (min * scale).ceil().to_i64();
    let hi = (max * scale).floor().to_i64();
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo.max(1), hi)),
        _ => bad(
            p,
            "max",
            format!(
                "the range {min} ..= {max} holds no amount with {} decimal places for {currency}",
                currency.minor_units()
            ),
        ),
    }
}
