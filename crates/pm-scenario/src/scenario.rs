//! A validated scenario: the only thing that can generate a plan.

use chrono::{DateTime, Utc};

use crate::arrival::Arrival;
use crate::config::{CurrencyChoice, ScenarioConfig};
use crate::error::{Problems, ScenarioError};
use crate::plan::Plan;

/// A scenario whose every value was checked. Build one with [`Scenario::from_toml`] or
/// [`Scenario::new`]; then [`Scenario::generate`] is pure and cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    config: ScenarioConfig,
    start: DateTime<Utc>,
    id_prefix: String,
    currencies: Vec<CurrencyChoice>,
}

impl Scenario {
    /// Parses and checks a scenario file's text (the caller reads the file).
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        Scenario::new(ScenarioConfig::from_toml(text)?)
    }

    /// Checks a configuration, reporting every invalid field at once.
    pub fn new(config: ScenarioConfig) -> Result<Self, ScenarioError> {
        let mut p = Problems::default();
        let start = config.check_top(&mut p);
        config.traffic.check(&mut p);
        config.orders.check(&mut p);
        config.disputes.check(&mut p);
        let currencies = config.money.resolve(&mut p);
        config.users.check(&mut p);
        config.faults.check(&mut p);
        p.into_result()?;
        let Some(start) = start else {
            return Err(ScenarioError::Invalid(Vec::new()));
        };
        Ok(Scenario {
            id_prefix: config.effective_id_prefix(),
            config,
            start,
            currencies,
        })
    }

    /// The same scenario with another seed (and, unless `id_prefix` is set, other ids).
    pub fn with_seed(&self, seed: u64) -> Scenario {
        let mut next = self.clone();
        next.config.seed = seed;
        next.id_prefix = next.config.effective_id_prefix();
        next
    }

    /// The checked configuration.
    pub fn config(&self) -> &ScenarioConfig {
        &self.config
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The prefix of every id the plan uses.
    pub fn id_prefix(&self) -> &str {
        &self.id_prefix
    }

    /// The provider clock at the start (timestamps inside webhooks).
    pub fn start_time(&self) -> DateTime<Utc> {
        self.start
    }

    /// The send-time schedule.
    pub fn arrival(&self) -> Arrival {
        Arrival::new(&self.config.traffic)
    }

    pub(crate) fn currencies(&self) -> &[CurrencyChoice] {
        &self.currencies
    }

    /// Generates the plan: deliveries, actions and ledger. Deterministic: the same
    /// configuration (seed included) always gives the same plan, byte for byte.
    pub fn generate(&self) -> Plan {
        crate::generate::generate(self)
    }
}
