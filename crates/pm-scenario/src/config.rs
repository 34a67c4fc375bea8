//! The scenario file as written: a TOML document, section by section.
//!
//! These types mirror `scenarios/README.md` field for field. They only describe the file;
//! [`crate::Scenario::new`] checks every value and is the only way to generate traffic, so
//! a [`ScenarioConfig`] may be built or edited freely (for example to override the seed
//! from a command-line flag) and is validated again when it becomes a scenario.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Problems;

mod amount_text;
mod disputes;
mod faults;
mod lifecycle;
mod money;
mod traffic;
mod users;

pub use amount_text::AmountText;
pub use disputes::{Disputes, Outcomes};
pub use faults::Faults;
pub use lifecycle::Lifecycle;
pub use money::{AmountRange, MoneyConfig};
pub use traffic::{ArrivalKind, Traffic, MAX_DURATION_DELIVERIES, MAX_ORDERS, MAX_RATE};
pub use users::{Users, MAX_USERS};

pub(crate) use money::CurrencyChoice;

/// The provider clock starts here unless the file says otherwise (a fixed instant, so the
/// same file always produces the same bytes).
pub const DEFAULT_START_TIME: &str = "2026-01-01T00:00:00Z";

/// Longest scenario name and id prefix.
pub const MAX_NAME_LEN: usize = 64;

/// A whole scenario file. Every section but `[traffic]` may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Short name: letters, digits, `-`, `_`, `.`; at most 64 characters.
    pub name: String,
    /// Free text for people; not used by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The random seed: the same file and seed give the same plan, byte for byte.
    pub seed: u64,
    /// Prefix of every order, event and file id; `<name>-<seed>` when absent. Change it to
    /// replay a scenario against a database that already holds an earlier run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// The provider's clock at the start of the scenario (RFC 3339), used for the
    /// timestamps inside the webhooks. Signature timestamps are the emitter's wall clock.
    #[serde(default = "default_start_time", deserialize_with = "start_time_text")]
    pub start_time: String,
    /// Volume and arrival process.
    pub traffic: Traffic,
    /// Order lifecycles.
    #[serde(default)]
    pub orders: Lifecycle,
    /// Chargebacks and the merchant's evidence.
    #[serde(default)]
    pub disputes: Disputes,
    /// Currencies and amounts.
    #[serde(default)]
    pub money: MoneyConfig,
    /// Customers and hot keys.
    #[serde(default)]
    pub users: Users,
    /// Delivery faults.
    #[serde(default)]
    pub faults: Faults,
}

fn default_start_time() -> String {
    DEFAULT_START_TIME.to_owned()
}

/// Accepts `start_time` as a quoted string or as a bare TOML date-time.
fn start_time_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Quoted(String),
        Bare(toml::value::Datetime),
    }
    Ok(match Text::deserialize(d)? {
        Text::Quoted(s) => s,
        Text::Bare(dt) => dt.to_string(),
    })
}

impl ScenarioConfig {
    /// Parses a TOML document; unknown fields and wrong types are refused here, values are
    /// checked by [`crate::Scenario::new`].
    pub fn from_toml(text: &str) -> Result<Self, crate::ScenarioError> {
        toml::from_str(text).map_err(|e| crate::ScenarioError::Syntax(e.to_string()))
    }

    /// The id prefix in effect: `id_prefix`, or `<name>-<seed>`.
    pub fn effective_id_prefix(&self) -> String {
        self.id_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, self.seed))
    }

    /// Checks the top-level fields and returns the parsed start time.
    pub(crate) fn check_top(&self, p: &mut Problems) -> Option<DateTime<Utc>> {
        check_name(p, "name", &self.name);
        if let Some(prefix) = &self.id_prefix {
            check_name(p, "id_prefix", prefix);
        }
        match pm_domain::time::parse_rfc3339(&self.start_time) {
            Ok(t) if (2000..=2100).contains(&chrono::Datelike::year(&t)) => Some(t),
            Ok(_) => {
                p.push("start_time", "must be between the years 2000 and 2100");
                None
            }
            Err(e) => {
                p.push("start_time", e.to_string());
                None
            }
        }
    }
}

fn check_name(p: &mut Problems, field: &str, value: &str) {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if value.is_empty() || value.len() > MAX_NAME_LEN || !ok_chars {
        p.push(
            field,
            format!("must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.' (got {value:?})"),
        );
    }
}
