//! Load traffic from a scenario: the scenario's real deliveries, re-timed onto the
//! step's fixed arrival schedule.
//!
//! The scenario engine gives signed, realistic lifecycles — orders, their updates and final
//! statuses, chargebacks and decisions, duplicates and (unless `keep_faults` is off) the bad
//! deliveries the scenario asks for — in its send order. The load test keeps that order and
//! ignores the scenario's own send times (`at_ms`) and rate: delivery `i` is sent at
//! `i / rate` (see [`crate::loadtest::schedule`]).
//!
//! When a step needs more deliveries than one plan holds, more plans are generated, each
//! with its own seed and its own `id_prefix` (`<name>-<run id>-<step>-<plan>`), so event
//! and order ids never collide across plans, sweep steps or runs against the same
//! database. The last plan is cut where the step ends; orders cut in half are fine, because
//! the expected state is rebuilt from what was actually sent (see [`crate::loadtest::expect`]).
//!
//! **Merchant actions are not performed.** A load test drives webhooks only; storing
//! evidence and submitting it are operator calls with their own latency, and mixing them
//! in would blur what is measured. The provider's decisions that the scenario holds back
//! until those actions are done ([`pm_scenario::Delivery::wait_for_action`]) are sent
//! anyway, at their place in the schedule — as a real provider does when the merchant
//! never answers. The expected state follows: no evidence, and a dispute whose decision
//! was accepted ends in that decision.

use pm_scenario::config::MAX_ORDERS;
use pm_scenario::{Delivery, DeliveryKind, Scenario};
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Orders of the small plan generated to learn how many deliveries an order makes.
const PROBE_ORDERS: u64 = 200;
/// Longest part of the scenario name kept in id prefixes (the prefix may have 64 characters).
const NAME_IN_PREFIX: usize = 24;

/// How traffic is drawn from the scenario.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    /// Keep the scenario's bad deliveries (malformed, badly signed, stale, invalid).
    pub keep_faults: bool,
    /// A short id unique to this run (letters and digits), part of every id prefix.
    pub run_id: String,
}

/// One generated plan a step drew deliveries from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanUse {
    /// The seed it was generated with.
    pub seed: u64,
    /// The prefix of its ids.
    pub id_prefix: String,
    /// Orders in the plan.
    pub orders: u64,
    /// Deliveries taken from it.
    pub deliveries_used: u64,
}

/// The deliveries of one step, in send order.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Request `i` of the step is `deliveries[i]`.
    pub deliveries: Vec<Delivery>,
    /// Where they came from.
    pub plans: Vec<PlanUse>,
}

/// Makes the traffic of the steps of one run. Plans are numbered across the whole run, so
/// each has its own seed (`scenario seed + plan number`) and prefix.
#[derive(Debug)]
pub struct TrafficSource {
    scenario: Scenario,
    options: TrafficOptions,
    next_plan: u64,
    per_order: Option<f64>,
}

impl TrafficSource {
    /// A source of traffic from `scenario` (with its seed already chosen).
    pub fn new(scenario: Scenario, options: TrafficOptions) -> Result<Self, LabError> {
        let ok = !options.run_id.is_empty()
            && options.run_id.len() <= 16
            && options.run_id.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(LabError::Invalid(format!(
                "a run id must be 1 to 16 letters or digits (got {:?})",
                options.run_id
            )));
        }
        Ok(TrafficSource {
            scenario,
            options,
            next_plan: 0,
            per_order: None,
        })
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Exactly `count` deliveries for step `step` (CPU-bound: run it off the async runtime).
    pub fn traffic(&mut self, step: usize, count: u64) -> Result<Traffic, LabError> {
        let per_order = match self.per_order {
            Some(p) => p,
            None => {
                let p = self.deliveries_per_order()?;
                self.per_order = Some(p);
                p
            }
        };
        let want = usize::try_from(count)
            .map_err(|_| LabError::Invalid(format!("{count} deliveries is too many")))?;
        let mut deliveries = Vec::with_capacity(want);
        let mut plans = Vec::new();
        while deliveries.len() < want {
            let missing = (want - deliveries.len()) as f64;
            // A little more than needed, so one more plan is rarely required.
            let orders = ((missing / per_order) * 1.05).ceil() as u64 + 16;
            let plan_no = self.next_plan;
            self.next_plan += 1;
            let scenario = self.variant(step, plan_no, orders)?;
            let plan = scenario.generate();
            let before = deliveries.len();
            deliveries.extend(
                plan.deliveries
                    .into_iter()
                    .filter(|d| {
                        self.options.keep_faults || !matches!(d.kind, DeliveryKind::Fault(_))
                    })
                    .take(want - before),
            );
            plans.push(PlanUse {
                seed: scenario.seed(),
                id_prefix: scenario.id_prefix().to_owned(),
                orders: plan.ledger.counts.orders,
                deliveries_used: (deliveries.len() - before) as u64,
            });
            if deliveries.len() == before {
                return Err(LabError::Invalid(
                    "the scenario produces no usable deliveries".to_owned(),
                ));
            }
        }
        Ok(Traffic { deliveries, plans })
    }

    /// The scenario with plan `plan`'s seed and prefix, at most `orders` orders (never more
    /// than the scenario's own count).
    fn variant(&self, step: usize, plan: u64, orders: u64) -> Result<Scenario, LabError> {
        let mut config = self.scenario.config().clone();
        config.seed = self.scenario.seed().wrapping_add(plan);
        let name: String = self.scenario.name().chars().take(NAME_IN_PREFIX).collect();
        config.id_prefix = Some(format!("{name}-{}-{step}-{plan}", self.options.run_id));
        let cap = config.traffic.orders.unwrap_or(MAX_ORDERS);
        config.traffic.orders = Some(orders.clamp(1, cap.min(MAX_ORDERS)));
        config.traffic.duration_secs = None;
        Ok(Scenario::new(config)?)
    }

    /// Deliveries per order, from a small plan of the same scenario.
    fn deliveries_per_order(&self) -> Result<f64, LabError> {
        let mut config = self.scenario.config().clone();
        config.traffic.orders = Some(PROBE_ORDERS);
        config.traffic.duration_secs = None;
        let plan = Scenario::new(config)?.generate();
        let kept = plan
            .deliveries
            .iter()
            .filter(|d| self.options.keep_faults || !matches!(d.kind, DeliveryKind::Fault(_)))
            .count();
        Ok((kept as f64 / plan.ledger.counts.orders.max(1) as f64).max(1.0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const SCENARIO: &str = r#"
        name = "unit"
        seed = 7
        [traffic]
        orders = 50
        rate = 100.0
        [disputes]
        share = 0.5
        [faults]
        duplicate = 0.1
        malformed = 0.05
    "#;

    fn source(keep_faults: bool) -> TrafficSource {
        let scenario = Scenario::from_toml(SCENARIO).unwrap();
        TrafficSource::new(
            scenario,
            TrafficOptions {
                keep_faults,
                run_id: "abc123".to_owned(),
            },
        )
        .unwrap()
    }

    #[test]
    fn exactly_the_count_asked_from_several_plans_with_distinct_ids() {
        let mut s = source(true);
        let t = s.traffic(0, 1000).unwrap();
        assert_eq!(t.deliveries.len(), 1000);
        assert!(t.plans.len() > 1, "50 orders cannot make 1000 deliveries");
        let prefixes: HashSet<_> = t.plans.iter().map(|p| p.id_prefix.clone()).collect();
        assert_eq!(prefixes.len(), t.plans.len());
        let seeds: HashSet<_> = t.plans.iter().map(|p| p.seed).collect();
        assert_eq!(seeds.len(), t.plans.len());
        assert_eq!(t.plans.iter().map(|p| p.deliveries_used).sum::<u64>(), 1000);
        // The next step uses new plans: no id is shared.
        let next = s.traffic(1, 300).unwrap();
        let ids = |t: &Traffic| -> HashSet<String> {
            t.deliveries
                .iter()
                .filter_map(|d| d.provider_event_id.as_ref().map(|e| e.to_string()))
                .collect()
        };
        assert!(ids(&t).is_disjoint(&ids(&next)));
        assert!(next.plans[0].id_prefix.starts_with("unit-abc123-1-"));
    }

    #[test]
    fn faults_are_kept_or_left_out() {
        let with = source(true).traffic(0, 2000).unwrap();
        let without = source(false).traffic(0, 2000).unwrap();
        let faults = |t: &Traffic| {
            t.deliveries
                .iter()
                .filter(|d| matches!(d.kind, DeliveryKind::Fault(_)))
                .count()
        };
        assert!(faults(&with) > 0);
        assert_eq!(faults(&without), 0);
        assert_eq!(without.deliveries.len(), 2000);
    }

    #[test]
    fn run_ids_are_checked() {
        let scenario = Scenario::from_toml(SCENARIO).unwrap();
        let bad = TrafficSource::new(
            scenario,
            TrafficOptions {
                keep_faults: true,
                run_id: "no spaces".to_owned(),
            },
        );
        assert!(bad.is_err());
    }
}
