//! Replaying a plan through the domain's state machines, in delivery order, ends exactly
//! in the ledger's state: the ledger is right under the disorder the plan generated.

use pm_scenario::{DeliveryKind, Ledger};

use crate::support::{all_faults, assert_replay_matches_ledger, build, config, scenario_file};

#[test]
fn every_scenario_file_replays_to_its_ledger() {
    for file in [
        "quickstart.toml",
        "chaos.toml",
        "disputes-heavy.toml",
        "burst.toml",
    ] {
        assert_replay_matches_ledger(&scenario_file(file).generate());
    }
}

#[test]
fn heavy_disorder_still_replays_to_the_ledger() {
    for seed in 0..4 {
        let mut c = config(300, seed);
        c.faults = all_faults(0.5);
        c.faults.reorder_window = 50;
        c.disputes.share = 0.6;
        c.disputes.evidence_share = 0.7;
        assert_replay_matches_ledger(&build(c).generate());
    }
}

#[test]
fn duplicates_repeat_an_earlier_original() {
    let plan = scenario_file("chaos.toml").generate();
    let mut duplicates = 0;
    for (i, d) in plan.deliveries.iter().enumerate() {
        if let DeliveryKind::Duplicate { original } = d.kind {
            duplicates += 1;
            let o = &plan.deliveries[original];
            assert!(original < i);
            assert_eq!(o.kind, DeliveryKind::Original);
            assert_eq!(o.provider_event_id, d.provider_event_id);
            assert_eq!(o.body, d.body);
        }
    }
    assert!(duplicates > 100, "{duplicates}");
    let stored: std::collections::BTreeSet<_> = plan.ledger.stored_event_ids().collect();
    for d in &plan.deliveries {
        let id = d
            .provider_event_id
            .as_ref()
            .expect("every delivery has an id");
        match d.kind {
            DeliveryKind::Fault(_) => {
                assert!(!stored.contains(id) && plan.ledger.rejected_event_ids.contains(id));
            }
            _ => assert!(stored.contains(id)),
        }
    }
}

#[test]
fn the_ledger_round_trips_through_json() {
    let plan = scenario_file("quickstart.toml").generate();
    let json = plan.ledger.to_json();
    let back = Ledger::from_json(&json).expect("reads back");
    assert_eq!(back, plan.ledger);
    assert_eq!(back.to_json(), json);
    let text = String::from_utf8(json).expect("utf-8");
    assert!(
        text.contains("\"malformed\": "),
        "faults by reason: {text:.400}"
    );
    let mut wrong: serde_json::Value = serde_json::from_str(&text).expect("json");
    wrong["format"] = 99.into();
    assert!(Ledger::from_json(wrong.to_string().as_bytes()).is_err());
}

#[test]
fn the_plan_round_trips_through_json() {
    let plan = scenario_file("quickstart.toml").generate();
    let json = serde_json::to_vec(&plan).expect("serializes");
    let back: pm_scenario::Plan = serde_json::from_slice(&json).expect("reads back");
    assert_eq!(back, plan);
}
