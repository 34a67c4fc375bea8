//! Helpers: scenarios built in code, and a reference replay of a plan through the domain.

use std::collections::{BTreeMap, BTreeSet};

use pm_domain::dispute::{self, ChargebackChange, DisputeProgress, DisputeStatus};
use pm_domain::order::{self, OrderProgress};
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use pm_domain::{Currency, UserId};
use pm_scenario::config::{Faults, Traffic};
use pm_scenario::{ActionKind, Expect, Plan, Route, Scenario, ScenarioConfig, Signing};
use rust_decimal::Decimal;

/// The repository's `scenarios/` directory.
pub fn scenarios_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

/// A scenario file from `scenarios/`.
pub fn scenario_file(name: &str) -> Scenario {
    let path = scenarios_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A configuration with defaults everywhere and `orders` orders.
pub fn config(orders: u64, seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        name: "test".to_owned(),
        description: None,
        seed,
        id_prefix: None,
        start_time: pm_scenario::config::DEFAULT_START_TIME.to_owned(),
        traffic: Traffic {
            orders: Some(orders),
            duration_secs: None,
            rate: 1000.0,
            arrival: Default::default(),
            burst_size: None,
            burst_every_ms: None,
        },
        orders: Default::default(),
        disputes: Default::default(),
        money: Default::default(),
        users: Default::default(),
        faults: Faults::default(),
    }
}

/// Every kind of fault at the given share.
pub fn all_faults(share: f64) -> Faults {
    Faults {
        duplicate: share,
        duplicate_copies_max: 3,
        duplicate_far_share: 0.3,
        reorder: share,
        reorder_window: 10,
        late: share / 2.0,
        late_by_ms: 500,
        malformed: share / 4.0,
        bad_signature: share / 4.0,
        stale_timestamp: share / 4.0,
        invalid_fields: share / 4.0,
    }
}

pub fn build(config: ScenarioConfig) -> Scenario {
    Scenario::new(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A dispute as the reference replay sees it.
#[derive(Debug, Clone)]
pub struct SeenDispute {
    pub progress: DisputeProgress,
    pub reason: String,
    pub amount: Decimal,
    pub currency: Currency,
    pub events: BTreeSet<String>,
    pub evidence_added: bool,
    pub submitted: bool,
}

/// What a database following the domain rules holds after a plan.
#[derive(Debug, Default)]
pub struct Replayed {
    pub orders: BTreeMap<String, (OrderProgress, UserId, BTreeSet<String>)>,
    pub disputes: BTreeMap<String, SeenDispute>,
    pub stored: BTreeSet<String>,
}

/// Sends the plan's deliveries in order to an in-memory "server" made of the domain's
/// parsers and state machines, performing each action right after its delivery. Panics
/// on any causality violation (a decision before its actions, a chargeback before its
/// order, an action on a missing or final dispute).
pub fn replay(plan: &Plan) -> Replayed {
    let mut r = Replayed::default();
    let mut acked = vec![false; plan.deliveries.len()];
    let mut done = vec![false; plan.actions.len()];
    for (i, d) in plan.deliveries.iter().enumerate() {
        if let Some(a) = d.wait_for_action {
            assert!(done[a], "delivery {i} is due before action {a}");
        }
        if let Some(p) = d.depends_on {
            assert!(
                p < i && acked[p],
                "delivery {i} depends on {p}, not acknowledged yet"
            );
        }
        if d.expect == Expect::Accepted {
            assert_eq!(d.signing, Signing::Valid, "delivery {i}");
            match d.route {
                Route::Orders => accept_order(&mut r, d.body.as_slice()),
                Route::Chargebacks => accept_chargeback(&mut r, d.body.as_slice(), i),
            }
            acked[i] = true;
        }
        for (a, action) in plan.actions_after(i) {
            assert_eq!(
                d.expect,
                Expect::Accepted,
                "action {a} after a rejected delivery"
            );
            let dispute = r
                .disputes
                .get_mut(action.order_id.as_str())
                .unwrap_or_else(|| panic!("action {a} on a dispute not stored yet"));
            let status = dispute.progress.status;
            match &action.kind {
                ActionKind::AddEvidence { .. } => {
                    assert!(
                        status.accepts_evidence(),
                        "action {a}: evidence on {status}"
                    );
                    dispute.progress.status = status.after_evidence();
                    dispute.evidence_added = true;
                }
                ActionKind::Submit => {
                    assert!(
                        dispute.evidence_added && status.can_submit(),
                        "action {a}: submit on {status}"
                    );
                    dispute.progress.status = DisputeStatus::Submitted;
                    dispute.submitted = true;
                }
            }
            done[a] = true;
        }
    }
    assert!(done.iter().all(|d| *d), "every action has its delivery");
    r
}

fn accept_order(r: &mut Replayed, body: &[u8]) {
    let w = OrderWebhook::parse(body).expect("an accepted order webhook parses");
    let id = w.provider_event_id.to_string();
    if !r.stored.insert(id.clone()) {
        return; // duplicate: acknowledged, nothing changes
    }
    let incoming = OrderProgress {
        status: w.status,
        updated_at: w.updated_at,
    };
    let entry = r.orders.entry(w.order_id.to_string());
    match entry {
        std::collections::btree_map::Entry::Vacant(v) => {
            let (p, _) = order::apply(None, incoming);
            v.insert((p, w.user_id, BTreeSet::from([id])));
        }
        std::collections::btree_map::Entry::Occupied(mut o) => {
            let (progress, user, events) = o.get_mut();
            assert_eq!(*user, w.user_id, "an order keeps its user");
            *progress = order::apply(Some(*progress), incoming).0;
            events.insert(id);
        }
    }
}

fn accept_chargeback(r: &mut Replayed, body: &[u8], i: usize) {
    let w = ChargebackWebhook::parse(body).expect("an accepted chargeback parses");
    assert!(
        r.orders.contains_key(w.order_id.as_str()),
        "delivery {i}: chargeback before its order was stored (the server would answer 404)"
    );
    let id = w.provider_event_id.to_string();
    if !r.stored.insert(id.clone()) {
        return;
    }
    let change = ChargebackChange {
        status: w.status,
        resolution: w.resolution,
        occurred_at: w.occurred_at,
        evidence_due_at: w.evidence_due_at,
    };
    match r.disputes.get_mut(w.order_id.as_str()) {
        None => {
            let (progress, _) = dispute::apply(None, change);
            r.disputes.insert(
                w.order_id.to_string(),
                SeenDispute {
                    progress,
                    reason: w.reason.clone(),
                    amount: w.money.amount().value(),
                    currency: w.money.currency(),
                    events: BTreeSet::from([id]),
                    evidence_added: false,
                    submitted: false,
                },
            );
        }
        Some(d) => {
            assert_eq!(d.reason, w.reason);
            assert_eq!(d.amount, w.money.amount().value());
            d.progress = dispute::apply(Some(d.progress), change).0;
            d.events.insert(id);
        }
    }
}

/// Asserts that the replayed state is exactly the ledger.
pub fn assert_replay_matches_ledger(plan: &Plan) {
    let r = replay(plan);
    let ledger = &plan.ledger;
    let ids = |set: &BTreeSet<pm_domain::ProviderEventId>| -> BTreeSet<String> {
        set.iter().map(ToString::to_string).collect()
    };
    assert_eq!(r.orders.len(), ledger.orders.len(), "orders stored");
    for o in &ledger.orders {
        let (progress, user, events) = r
            .orders
            .get(o.order_id.as_str())
            .unwrap_or_else(|| panic!("{} was never stored", o.order_id));
        assert_eq!(progress.status, o.final_status, "{}", o.order_id);
        assert_eq!(progress.updated_at, o.updated_at, "{}", o.order_id);
        assert_eq!(*user, o.user_id, "{}", o.order_id);
        assert_eq!(*events, ids(&o.provider_event_ids), "{}", o.order_id);
    }
    assert_eq!(r.disputes.len(), ledger.disputes.len(), "disputes stored");
    for d in &ledger.disputes {
        let seen = r
            .disputes
            .get(d.order_id.as_str())
            .unwrap_or_else(|| panic!("dispute of {} was never stored", d.order_id));
        let who = d.order_id.as_str();
        assert_eq!(seen.progress.status, d.final_status, "{who}");
        assert_eq!(seen.progress.opened_at, d.opened_at, "{who}");
        assert_eq!(seen.progress.closed_at, d.closed_at, "{who}");
        assert_eq!(seen.progress.evidence_due_at, d.evidence_due_at, "{who}");
        assert_eq!(seen.reason, d.reason, "{who}");
        assert_eq!(seen.amount, d.amount, "{who}");
        assert_eq!(seen.currency, d.currency, "{who}");
        assert_eq!(seen.events, ids(&d.provider_event_ids), "{who}");
        assert_eq!(seen.evidence_added, d.evidence_added, "{who}");
        assert_eq!(seen.submitted, d.evidence_submitted, "{who}");
    }
    let expected: BTreeSet<String> = ledger.stored_event_ids().map(ToString::to_string).collect();
    assert_eq!(r.stored, expected, "stored event ids");
    assert_eq!(r.stored.len() as u64, ledger.counts.originals);
    for rejected in &ledger.rejected_event_ids {
        assert!(
            !r.stored.contains(rejected.as_str()),
            "{rejected} must not be stored"
        );
    }
}
