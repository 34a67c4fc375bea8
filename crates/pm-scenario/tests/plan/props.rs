//! Property tests over random small scenarios: whatever the shares, the plan is
//! deterministic, well-formed, causal, and replays to its ledger.

use pm_scenario::config::{ArrivalKind, Faults, Outcomes};
use pm_scenario::ScenarioConfig;
use proptest::prelude::*;

use crate::bodies::assert_bodies;
use crate::support::{assert_replay_matches_ledger, build, config};

fn share() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0]
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        (share(), 1u32..4, share(), 0.0..=0.5, 1u32..30, 0.0..=0.5),
        (1u64..5_000, share(), share(), share(), share()),
    )
        .prop_map(
            |((duplicate, copies, far, reorder, window, late), (late_ms, m, b, s, i))| Faults {
                duplicate,
                duplicate_copies_max: copies,
                duplicate_far_share: far,
                reorder,
                reorder_window: window,
                late,
                late_by_ms: late_ms,
                malformed: m / 4.0,
                bad_signature: b / 4.0,
                stale_timestamp: s / 4.0,
                invalid_fields: i / 4.0,
            },
        )
}

fn scenario() -> impl Strategy<Value = ScenarioConfig> {
    (
        (
            any::<u64>(),
            1u64..40,
            0u32..3,
            0u32..3,
            0.0..=0.6,
            0.0..=0.4,
            1u32..20,
        ),
        (
            share(),
            (0u32..3, 0u32..3, 0u32..3, 0u32..3),
            share(),
            share(),
            share(),
        ),
        (1u64..50, 0u64..3, share(), faults(), any::<bool>()),
    )
        .prop_map(
            |(
                (seed, orders, umin, uextra, success, failed, spread),
                (dshare, (won, lost, closed, undecided), updated, evidence, submit),
                (users, hot, hot_share, faults, bursts),
            )| {
                let mut c = config(orders, seed);
                c.orders.updates_min = umin;
                c.orders.updates_max = umin + uextra;
                c.orders.success_share = success;
                c.orders.failed_share = failed;
                c.orders.spread = spread;
                c.disputes.share = dshare;
                c.disputes.outcomes = Outcomes {
                    won,
                    lost,
                    closed,
                    undecided: undecided + u32::from(won + lost + closed == 0),
                };
                c.disputes.updated_share = updated;
                c.disputes.evidence_share = evidence;
                c.disputes.submit_share = submit;
                c.users.count = users;
                c.users.hot_users = hot.min(users - 1);
                c.users.hot_share = if c.users.hot_users == 0 {
                    0.0
                } else {
                    hot_share
                };
                c.faults = faults;
                if bursts {
                    c.traffic.arrival = ArrivalKind::Bursts;
                    c.traffic.rate = 50.0;
                    c.traffic.burst_size = Some(7);
                    c.traffic.burst_every_ms = Some(100);
                }
                c
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_small_scenario_gives_a_sound_plan(c in scenario()) {
        let s = build(c);
        let plan = s.generate();
        prop_assert_eq!(&plan, &s.generate());
        prop_assert!(plan.deliveries.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert_bodies(&plan);
        assert_replay_matches_ledger(&plan);
        // Every event of the ledger is delivered at least once, as an original.
        let originals = plan.deliveries.iter().filter(|d| d.kind == pm_scenario::DeliveryKind::Original).count();
        prop_assert_eq!(originals as u64, plan.ledger.stored_event_ids().count() as u64);
    }
}
