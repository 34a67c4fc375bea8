//! On a large scenario the plan follows the configured probabilities.

use std::collections::BTreeMap;

use pm_domain::dispute::DisputeStatus;
use pm_domain::order::OrderStatus;
use pm_scenario::config::Outcomes;
use pm_scenario::{FaultReason, Plan};

use crate::support::{build, config};

fn near(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual:.4} is not within {tolerance} of {expected}"
    );
}

fn large() -> Plan {
    let mut c = config(20_000, 77);
    c.orders.updates_min = 1;
    c.orders.updates_max = 3;
    c.orders.success_share = 0.7;
    c.orders.failed_share = 0.2;
    c.disputes.share = 0.3;
    c.disputes.outcomes = Outcomes {
        won: 1,
        lost: 1,
        closed: 1,
        undecided: 1,
    };
    c.disputes.updated_share = 0.5;
    c.disputes.evidence_share = 0.4;
    c.disputes.submit_share = 0.5;
    c.users.count = 10_000;
    c.users.hot_users = 10;
    c.users.hot_share = 0.4;
    c.faults.duplicate = 0.1;
    c.faults.reorder = 0.1;
    c.faults.late = 0.05;
    c.faults.malformed = 0.02;
    c.faults.bad_signature = 0.02;
    c.faults.stale_timestamp = 0.02;
    c.faults.invalid_fields = 0.02;
    build(c).generate()
}

#[test]
fn shares_roughly_match_the_configuration() {
    let plan = large();
    let l = &plan.ledger;
    let orders = l.orders.len() as f64;
    let with = |s: OrderStatus| l.orders.iter().filter(|o| o.final_status == s).count() as f64;
    near("success", with(OrderStatus::Success) / orders, 0.7, 0.02);
    near("failed", with(OrderStatus::Failed) / orders, 0.2, 0.02);
    near(
        "unfinished",
        (with(OrderStatus::Created) + with(OrderStatus::Updated)) / orders,
        0.1,
        0.02,
    );
    let updates = l
        .orders
        .iter()
        .map(|o| o.provider_event_ids.len())
        .sum::<usize>() as f64
        / orders
        - 1.0
        - 0.9; // created, plus a final webhook for 90 % of orders
    near("updates per order", updates, 2.0, 0.05);

    let disputes = l.disputes.len() as f64;
    near(
        "disputed successes",
        disputes / with(OrderStatus::Success),
        0.3,
        0.02,
    );
    let status =
        |s: DisputeStatus| l.disputes.iter().filter(|d| d.final_status == s).count() as f64;
    for s in [
        DisputeStatus::Won,
        DisputeStatus::Lost,
        DisputeStatus::Closed,
    ] {
        near(s.as_str(), status(s) / disputes, 0.25, 0.03);
    }
    let undecided = status(DisputeStatus::Open)
        + status(DisputeStatus::UnderReview)
        + status(DisputeStatus::Submitted);
    near("undecided", undecided / disputes, 0.25, 0.03);
    let evidence = l.disputes.iter().filter(|d| d.evidence_added).count() as f64;
    near("evidence", evidence / disputes, 0.4, 0.03);
    let submitted = l.disputes.iter().filter(|d| d.evidence_submitted).count() as f64;
    near("submitted", submitted / evidence, 0.5, 0.05);
    let updated = l
        .disputes
        .iter()
        .filter(|d| {
            d.provider_event_ids.len() == 3
                || (d.closed_at.is_none() && d.provider_event_ids.len() == 2)
        })
        .count() as f64;
    near("dispute updates", updated / disputes, 0.5, 0.03);

    let c = &l.counts;
    let originals = c.originals as f64;
    near("duplicates", c.duplicates as f64 / originals, 0.1, 0.01);
    near("reordered", c.reordered as f64 / originals, 0.1, 0.01);
    near("late", c.late as f64 / originals, 0.05, 0.01);
    for reason in FaultReason::ALL {
        near(
            reason.as_str(),
            c.faults[&reason] as f64 / originals,
            0.02,
            0.004,
        );
    }
    assert_eq!(c.deliveries, c.originals + c.duplicates + c.total_faults());
    assert_eq!(c.deliveries as usize, plan.deliveries.len());
}

#[test]
fn hot_users_get_about_their_share_of_orders() {
    let plan = large();
    let mut per_user: BTreeMap<_, usize> = BTreeMap::new();
    for o in &plan.ledger.orders {
        *per_user.entry(o.user_id).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_user.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let hot: usize = counts.iter().take(10).sum();
    near(
        "hot share",
        hot as f64 / plan.ledger.orders.len() as f64,
        0.4,
        0.02,
    );
    // Each hot user carries about 4 % of the orders; a cold one far less.
    assert!(counts[9] > 600 && counts[10] < 20, "{:?}", &counts[..12]);
}
