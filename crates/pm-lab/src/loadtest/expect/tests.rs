use pm_domain::dispute::DisputeStatus;
use pm_scenario::{Expect, Plan, Scenario};

use super::*;
use crate::loadtest::engine::Failure;

fn plan() -> Plan {
    Scenario::from_toml(
        r#"
        name = "expect"
        seed = 3
        [traffic]
        orders = 400
        rate = 100.0
        [disputes]
        share = 0.6
        evidence_share = 0.5
        [faults]
        duplicate = 0.1
        reorder = 0.05
        malformed = 0.02
        bad_signature = 0.02
        invalid_fields = 0.02
    "#,
    )
    .unwrap()
    .generate()
}

/// Every delivery answered as the scenario expects.
fn as_expected(plan: &Plan) -> Vec<Answer> {
    plan.deliveries
        .iter()
        .map(|d| match d.expect {
            Expect::Accepted => Answer::Status(202),
            Expect::Rejected(s) => Answer::Status(s),
        })
        .collect()
}

#[test]
fn everything_accepted_matches_the_scenario_without_merchant_actions() {
    let plan = plan();
    let e = expected("expect", 3, "p", &plan.deliveries, &as_expected(&plan));
    assert_eq!(e.excluded_orders, 0);
    let by_id = |v: &[OrderExpectation]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        v
    };
    assert_eq!(by_id(&e.ledger.orders), by_id(&plan.ledger.orders));
    assert_eq!(e.ledger.rejected_event_ids, plan.ledger.rejected_event_ids);
    assert_eq!(e.ledger.disputes.len(), plan.ledger.disputes.len());
    let mut decided_with_evidence = 0;
    for got in &e.ledger.disputes {
        let want = plan
            .ledger
            .disputes
            .iter()
            .find(|d| d.order_id == got.order_id)
            .unwrap();
        assert_eq!(got.provider_event_ids, want.provider_event_ids);
        assert_eq!(
            (got.amount, got.currency, &got.reason),
            (want.amount, want.currency, &want.reason)
        );
        assert!(!got.evidence_added && !got.evidence_submitted);
        if want.final_status.is_final() {
            // The decision is sent without waiting for the evidence, and still decides.
            assert_eq!(got.final_status, want.final_status);
            decided_with_evidence += u32::from(want.evidence_added);
        } else {
            assert_eq!(got.final_status, DisputeStatus::Open);
        }
    }
    assert!(
        decided_with_evidence > 0,
        "the scenario must exercise decisions after evidence"
    );
    assert_eq!(e.ledger.counts.duplicates, plan.ledger.counts.duplicates);
    assert_eq!(e.ledger.counts.faults, plan.ledger.counts.faults);
}

#[test]
fn a_cut_run_expects_only_what_was_sent() {
    let plan = plan();
    let mut answers = as_expected(&plan);
    let half = answers.len() / 2;
    for a in &mut answers[half..] {
        *a = Answer::NotSent;
    }
    let e = expected("expect", 3, "p", &plan.deliveries, &answers);
    let sent: BTreeSet<&str> = plan.deliveries[..half]
        .iter()
        .filter(|d| d.expect == Expect::Accepted)
        .filter_map(|d| d.provider_event_id.as_ref().map(|i| i.as_str()))
        .collect();
    let expected_ids: BTreeSet<&str> = e.ledger.stored_event_ids().map(|i| i.as_str()).collect();
    assert_eq!(expected_ids, sent);
    assert!(e.ledger.orders.len() < plan.ledger.orders.len());
    // An order cut before its final webhook ends in the last status that was sent.
    let cut = e
        .ledger
        .orders
        .iter()
        .zip(&plan.ledger.orders)
        .any(|(got, full)| got.provider_event_ids.len() < full.provider_event_ids.len());
    assert!(cut);
    for o in &e.ledger.orders {
        let full = plan
            .ledger
            .orders
            .iter()
            .find(|f| f.order_id == o.order_id)
            .unwrap();
        if o.provider_event_ids == full.provider_event_ids {
            assert_eq!(o.final_status, full.final_status);
        }
    }
}

#[test]
fn unknown_answers_leave_the_order_out_and_503_stores_nothing() {
    let plan = plan();
    let mut answers = as_expected(&plan);
    // A webhook delivered once (a copy accepted later would store it after all).
    let once = |i: &usize| {
        let id = &plan.deliveries[*i].provider_event_id;
        plan.deliveries
            .iter()
            .filter(|d| &d.provider_event_id == id)
            .count()
            == 1
    };
    let first_real = (0..plan.deliveries.len())
        .filter(|i| plan.deliveries[*i].expect == Expect::Accepted)
        .find(once)
        .unwrap();
    answers[first_real] = Answer::Failed(Failure::Timeout);
    let lost_order = plan.deliveries[first_real].order_id.clone();
    // A 503 on every delivery of another order's first event: that event is not stored.
    let other = plan
        .deliveries
        .iter()
        .find(|d| d.order_id != lost_order && d.expect == Expect::Accepted)
        .unwrap();
    let other_id = other.provider_event_id.clone().unwrap();
    for (d, a) in plan.deliveries.iter().zip(answers.iter_mut()) {
        if d.provider_event_id.as_ref() == Some(&other_id) {
            *a = Answer::Status(503);
        }
    }
    let e = expected("expect", 3, "p", &plan.deliveries, &answers);
    assert_eq!(e.excluded_orders, 1);
    assert!(e.ledger.orders.iter().all(|o| o.order_id != lost_order));
    assert!(e.ledger.stored_event_ids().all(|i| *i != other_id));
}

#[test]
fn duplicates_count_once_and_any_accepted_copy_stores_the_event() {
    let plan = plan();
    let mut answers = as_expected(&plan);
    // The original of a duplicated webhook fails with 503, its copy is accepted.
    let (copy, original) = plan
        .deliveries
        .iter()
        .enumerate()
        .find_map(|(i, d)| match d.kind {
            DeliveryKind::Duplicate { original } => Some((i, original)),
            _ => None,
        })
        .unwrap();
    answers[original] = Answer::Status(503);
    answers[copy] = Answer::Status(200);
    let e = expected("expect", 3, "p", &plan.deliveries, &answers);
    let id = plan.deliveries[original].provider_event_id.clone().unwrap();
    assert_eq!(e.ledger.stored_event_ids().filter(|i| **i == id).count(), 1);
}

#[test]
fn chargebacks_of_orders_never_stored_are_not_expected() {
    let plan = plan();
    let mut answers = as_expected(&plan);
    // Drop every order webhook of a disputed order; its chargebacks are still accepted
    // (as ingest does in kafka mode).
    let disputed = plan.ledger.disputes[0].order_id.clone();
    let mut chargebacks = BTreeSet::new();
    for (d, a) in plan.deliveries.iter().zip(answers.iter_mut()) {
        if d.order_id == disputed && d.expect == Expect::Accepted {
            match d.route {
                Route::Orders => *a = Answer::Dropped,
                Route::Chargebacks => {
                    chargebacks.extend(d.provider_event_id.clone());
                }
            }
        }
    }
    let e = expected("expect", 3, "p", &plan.deliveries, &answers);
    assert_eq!(e.chargebacks_without_order, chargebacks.len() as u64);
    assert!(e.ledger.orders.iter().all(|o| o.order_id != disputed));
    assert!(e.ledger.disputes.iter().all(|d| d.order_id != disputed));
    assert!(e
        .ledger
        .stored_event_ids()
        .all(|i| !chargebacks.contains(i)));
}
