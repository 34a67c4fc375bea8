//! Every file in `scenarios/` loads and generates; quickstart shows every kind of event.

use std::collections::BTreeSet;

use pm_domain::dispute::DisputeStatus;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use pm_scenario::{ActionKind, DeliveryKind, Displacement, FaultReason, Route, Scenario};

use crate::support::{scenario_file, scenarios_dir};

#[test]
fn every_scenario_file_loads_and_generates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).expect("scenarios/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let s = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let plan = s.generate();
        assert!(!plan.deliveries.is_empty(), "{}", path.display());
        assert_eq!(plan.ledger.scenario, s.name());
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert_eq!(stem, s.name(), "a file is named after its scenario");
        names.push(s.name().to_owned());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "burst",
            "chaos",
            "disputes-heavy",
            "quickstart",
            "steady-10k"
        ]
    );
}

#[test]
fn steady_10k_has_ten_thousand_orders() {
    let plan = scenario_file("steady-10k.toml").generate();
    assert_eq!(plan.ledger.orders.len(), 10_000);
}

#[test]
fn quickstart_has_every_kind_of_event_and_fault() {
    let plan = scenario_file("quickstart.toml").generate();
    assert_eq!(plan.ledger.orders.len(), 300);
    let mut kinds = BTreeSet::new();
    for d in &plan.deliveries {
        match d.kind {
            DeliveryKind::Original => {
                let kind = match d.route {
                    Route::Orders => {
                        OrderWebhook::parse(&d.body).map(|w| format!("order:{}", w.status))
                    }
                    Route::Chargebacks => ChargebackWebhook::parse(&d.body)
                        .map(|w| format!("chargeback:{}:{:?}", w.status.as_str(), w.resolution)),
                };
                kinds.insert(kind.expect("parses"));
            }
            DeliveryKind::Duplicate { .. } => {
                kinds.insert("duplicate".to_owned());
            }
            DeliveryKind::Fault(r) => {
                kinds.insert(format!("fault:{}", r.as_str()));
            }
        }
        match d.displaced {
            Some(Displacement::Reordered { .. }) => kinds.insert("reordered".to_owned()),
            Some(Displacement::Late { .. }) => kinds.insert("late".to_owned()),
            None => false,
        };
    }
    for a in &plan.actions {
        kinds.insert(match a.kind {
            ActionKind::AddEvidence { .. } => "action:evidence".to_owned(),
            ActionKind::Submit => "action:submit".to_owned(),
        });
    }
    let mut expected: BTreeSet<String> = [
        "order:created",
        "order:updated",
        "order:success",
        "order:failed",
        "chargeback:opened:Closed",
        "chargeback:updated:Closed",
        "chargeback:closed:Won",
        "chargeback:closed:Lost",
        "chargeback:closed:Closed",
        "duplicate",
        "reordered",
        "late",
        "action:evidence",
        "action:submit",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    expected.extend(
        FaultReason::ALL
            .iter()
            .map(|r| format!("fault:{}", r.as_str())),
    );
    assert_eq!(kinds, expected);
    let statuses: Vec<DisputeStatus> = plan
        .ledger
        .disputes
        .iter()
        .map(|d| d.final_status)
        .collect();
    for s in [
        DisputeStatus::Won,
        DisputeStatus::Lost,
        DisputeStatus::Closed,
    ] {
        assert!(statuses.contains(&s), "{s}");
    }
    assert!(
        statuses.contains(&DisputeStatus::Open)
            || statuses.contains(&DisputeStatus::Submitted)
            || statuses.contains(&DisputeStatus::UnderReview),
        "some dispute stays undecided: {statuses:?}"
    );
}
