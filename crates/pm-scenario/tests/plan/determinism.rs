//! Same file and seed: the same bytes. Another seed: other traffic.

use crate::support::{all_faults, build, config, scenario_file};

fn plan_bytes(s: &pm_scenario::Scenario) -> Vec<u8> {
    serde_json::to_vec(&s.generate()).expect("a plan serializes")
}

#[test]
fn the_same_seed_gives_identical_bytes() {
    let mut c = config(400, 11);
    c.faults = all_faults(0.2);
    let s = build(c);
    let (a, b) = (s.generate(), s.generate());
    assert_eq!(a, b);
    assert_eq!(plan_bytes(&s), plan_bytes(&s));
    assert_eq!(a.ledger.to_json(), b.ledger.to_json());
    // Parsing the file again changes nothing either.
    assert_eq!(
        plan_bytes(&scenario_file("chaos.toml")),
        plan_bytes(&scenario_file("chaos.toml"))
    );
}

#[test]
fn another_seed_gives_other_traffic() {
    let s = build(config(200, 1));
    let a = s.generate();
    let b = s.with_seed(2).generate();
    assert_ne!(a.deliveries, b.deliveries);
    let bodies = |p: &pm_scenario::Plan| {
        p.deliveries
            .iter()
            .map(|d| d.body.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(bodies(&a), bodies(&b));
    assert_ne!(
        a.ledger.id_prefix, b.ledger.id_prefix,
        "default prefixes follow the seed"
    );
    // With a fixed prefix only the random content differs.
    let mut fixed = config(200, 1);
    fixed.id_prefix = Some("run".to_owned());
    let c = build(fixed.clone());
    fixed.seed = 2;
    let d = build(fixed);
    let users = |p: &pm_scenario::Plan| {
        p.ledger
            .orders
            .iter()
            .map(|o| o.user_id)
            .collect::<Vec<_>>()
    };
    assert_ne!(users(&c.generate()), users(&d.generate()));
}

#[test]
fn changing_the_faults_keeps_the_same_orders() {
    let clean = build(config(300, 5)).generate();
    let mut noisy = config(300, 5);
    noisy.faults = all_faults(0.3);
    let noisy = build(noisy).generate();
    assert_eq!(clean.ledger.orders, noisy.ledger.orders);
    assert_eq!(
        clean
            .ledger
            .disputes
            .iter()
            .map(|d| (&d.order_id, d.final_status))
            .collect::<Vec<_>>(),
        noisy
            .ledger
            .disputes
            .iter()
            .map(|d| (&d.order_id, d.final_status))
            .collect::<Vec<_>>()
    );
}
