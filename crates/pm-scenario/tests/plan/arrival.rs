//! Send times follow the arrival process.

use pm_scenario::config::ArrivalKind;

use crate::support::{build, config, scenario_file};

#[test]
fn constant_rate_send_times_are_evenly_spaced() {
    let plan = scenario_file("steady-10k.toml").generate();
    let rate = 1000.0;
    for (i, d) in plan.deliveries.iter().enumerate() {
        assert_eq!(
            d.at_ms,
            (i as f64 * 1000.0 / rate).floor() as u64,
            "delivery {i}"
        );
    }
    let quick = scenario_file("quickstart.toml").generate();
    assert!(quick
        .deliveries
        .windows(2)
        .all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(
        quick.duration_ms() < 10_000,
        "quickstart lasts {} ms",
        quick.duration_ms()
    );
}

#[test]
fn bursts_send_many_deliveries_at_one_instant() {
    let s = scenario_file("burst.toml");
    assert_eq!(s.config().traffic.arrival, ArrivalKind::Bursts);
    let plan = s.generate();
    assert!(plan.deliveries.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let mut at = std::collections::BTreeMap::<u64, usize>::new();
    for d in &plan.deliveries {
        *at.entry(d.at_ms).or_default() += 1;
    }
    let last = plan.duration_ms();
    let full_bursts = (1..).map(|j| j * 2000).take_while(|t| *t < last);
    let mut seen = 0;
    for t in full_bursts {
        assert!(at.get(&t).copied().unwrap_or(0) >= 600, "burst at {t} ms");
        seen += 1;
    }
    assert!(seen >= 3, "{seen} bursts");
    // Between bursts: the steady 200/s, one delivery every 5 ms.
    assert_eq!(at.get(&5), Some(&1));
    let per_second = plan.deliveries.len() as f64 / (last as f64 / 1000.0);
    assert!((per_second - 500.0).abs() < 50.0, "{per_second}/s");
}

#[test]
fn a_timed_run_fills_its_duration() {
    let mut c = config(1, 3);
    c.traffic.orders = None;
    c.traffic.duration_secs = Some(5);
    c.traffic.rate = 400.0;
    let plan = build(c).generate();
    let n = plan.deliveries.len();
    assert!((2000..2040).contains(&n), "{n} deliveries for 5 s at 400/s");
    assert!(
        (4_950..5_100).contains(&plan.duration_ms()),
        "{}",
        plan.duration_ms()
    );
}
