//! The generation pipeline: stories → disorder → layout → ledger.

use crate::config::Traffic;
use crate::disorder::Disorder;
use crate::layout;
use crate::ledger;
use crate::plan::Plan;
use crate::scenario::Scenario;
use crate::story::StoryMaker;

/// Generates a plan (see [`Scenario::generate`]).
pub(crate) fn generate(scenario: &Scenario) -> Plan {
    let config = scenario.config();
    let (max_orders, target) = volume(scenario, &config.traffic);
    let mut maker = StoryMaker::new(scenario);
    let mut disorder = Disorder::new(config.seed, &config.faults, config.traffic.mean_rate());
    let mut stories = Vec::new();
    let mut extras = Vec::new();
    let mut deliveries = 0_u64;
    let mut k = 0;
    // Draw story and disorder together, so a timed run knows when it has enough.
    while k < max_orders && deliveries < target {
        let story = maker.story(k);
        let drawn = disorder.draw(&story, maker.ids());
        deliveries += story.events.len() as u64
            + drawn
                .iter()
                .map(|e| e.extra_deliveries() as u64)
                .sum::<u64>();
        stories.push(story);
        extras.push(drawn);
        k += 1;
    }
    let laid = layout::lay_out(scenario, &stories, &extras);
    let ledger = ledger::build::build(scenario, &stories, &laid);
    Plan {
        deliveries: laid.deliveries,
        actions: laid.actions,
        ledger,
    }
}

/// Most orders, and how many deliveries to reach (a timed run: the arrival slots that
/// start before the end of `duration_secs`).
fn volume(scenario: &Scenario, traffic: &Traffic) -> (u64, u64) {
    match (traffic.orders, traffic.duration_secs) {
        (Some(n), _) => (n, u64::MAX),
        (None, Some(secs)) => (
            crate::config::MAX_ORDERS,
            scenario
                .arrival()
                .count_before(secs.saturating_mul(1000))
                .max(1),
        ),
        (None, None) => (1, u64::MAX),
    }
}
