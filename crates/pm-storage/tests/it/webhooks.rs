//! The processing rules of PRODUCT.md §2.4, asserted on database state.

use pm_domain::dispute::{ChargebackStatus, DisputeEffect, Resolution};
use pm_domain::order::{OrderEffect, OrderStatus};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{
    apply_chargeback_tx, apply_order_tx, apply_orders, ChargebackOutcome, Delivery, OrderOutcome,
};

use crate::fixtures::{chargeback, closed, count, order, t};

async fn order_status(db: &TestDatabase, id: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    sqlx::query_as("SELECT status, updated_at FROM orders WHERE order_id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("order exists")
}

fn effect(o: OrderOutcome) -> Option<OrderEffect> {
    match o {
        OrderOutcome::Applied { effect, .. } => Some(effect),
        OrderOutcome::Duplicate => None,
    }
}

#[tokio::test]
async fn order_lifecycle_records_every_webhook_and_ends_final() {
    let db = TestDatabase::new().await;
    for (ev, status, at) in [
        ("e1", OrderStatus::Created, 0),
        ("e2", OrderStatus::Updated, 5),
        ("e3", OrderStatus::Success, 9),
    ] {
        let o = apply_order_tx(&db.pool, &order(ev, "o1", status, at), &Delivery::now())
            .await
            .expect("apply");
        assert!(effect(o).is_some_and(OrderEffect::changes_state));
    }
    assert_eq!(order_status(&db, "o1").await, ("success".to_owned(), t(9)));
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM order_events WHERE order_id = 'o1'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM processed_webhooks").await,
        3
    );
}

#[tokio::test]
async fn a_duplicate_changes_nothing_and_stores_nothing() {
    let db = TestDatabase::new().await;
    let w = order("e1", "o1", OrderStatus::Created, 0);
    assert_eq!(
        effect(
            apply_order_tx(&db.pool, &w, &Delivery::now())
                .await
                .expect("first")
        ),
        Some(OrderEffect::Created)
    );
    apply_order_tx(
        &db.pool,
        &order("e2", "o1", OrderStatus::Updated, 5),
        &Delivery::now(),
    )
    .await
    .expect("second");
    // The first event again, later: acknowledged as a duplicate; it must not move the order.
    assert_eq!(
        apply_order_tx(&db.pool, &w, &Delivery::now())
            .await
            .expect("again"),
        OrderOutcome::Duplicate
    );
    assert_eq!(order_status(&db, "o1").await.0, "updated");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_events").await,
        2
    );
}

#[tokio::test]
async fn twenty_concurrent_deliveries_make_one_change_and_one_event() {
    let db = TestDatabase::new().await;
    let w = order("e-concurrent", "o1", OrderStatus::Created, 0);
    let deliveries = (0..20).map(|_| {
        let (pool, w) = (db.pool.clone(), w.clone());
        tokio::spawn(async move { apply_order_tx(&pool, &w, &Delivery::now()).await })
    });
    let outcomes: Vec<OrderOutcome> = futures::future::join_all(deliveries)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("apply"))
        .collect();
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, OrderOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_events").await,
        1
    );
    assert_eq!(count(&db.pool, "SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM processed_webhooks").await,
        1
    );
}

#[tokio::test]
async fn concurrent_chargebacks_of_one_order_create_one_dispute() {
    let db = TestDatabase::new().await;
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Success, 0),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let events = [
        chargeback("c1", "o1", ChargebackStatus::Opened, 1),
        chargeback("c2", "o1", ChargebackStatus::Updated, 2),
        closed("c3", "o1", Resolution::Won, 3),
    ];
    let tasks = events.iter().cloned().map(|w| {
        let pool = db.pool.clone();
        tokio::spawn(async move { apply_chargeback_tx(&pool, &w, &Delivery::now()).await })
    });
    for r in futures::future::join_all(tasks).await {
        assert!(matches!(
            r.expect("task").expect("apply"),
            ChargebackOutcome::Applied { .. }
        ));
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM disputes").await, 1);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM dispute_events").await,
        3
    );
    let status: String = sqlx::query_scalar("SELECT status FROM disputes")
        .fetch_one(&db.pool)
        .await
        .expect("dispute");
    assert_eq!(status, "won");
}

#[tokio::test]
async fn a_late_updated_after_success_is_recorded_but_does_not_move_the_order() {
    let db = TestDatabase::new().await;
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 0),
        &Delivery::now(),
    )
    .await
    .expect("created");
    apply_order_tx(
        &db.pool,
        &order("e3", "o1", OrderStatus::Success, 9),
        &Delivery::now(),
    )
    .await
    .expect("success");
    let late = apply_order_tx(
        &db.pool,
        &order("e2", "o1", OrderStatus::Updated, 5),
        &Delivery::now(),
    )
    .await
    .expect("late");
    assert_eq!(effect(late), Some(OrderEffect::FinalKept));
    assert_eq!(order_status(&db, "o1").await, ("success".to_owned(), t(9)));
    let recorded: String = sqlx::query_scalar(
        "SELECT data->>'effect' FROM order_events WHERE provider_event_id = 'e2'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("late event stored");
    assert_eq!(recorded, "final_kept");
}

#[tokio::test]
async fn updated_before_created_creates_the_order_and_created_does_not_rewind_it() {
    let db = TestDatabase::new().await;
    let first = apply_order_tx(
        &db.pool,
        &order("e2", "o1", OrderStatus::Updated, 5),
        &Delivery::now(),
    )
    .await
    .expect("updated");
    assert_eq!(effect(first), Some(OrderEffect::Created));
    let late = apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 0),
        &Delivery::now(),
    )
    .await
    .expect("created");
    assert_eq!(effect(late), Some(OrderEffect::Stale));
    assert_eq!(order_status(&db, "o1").await, ("updated".to_owned(), t(5)));
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM order_events WHERE order_id = 'o1'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_chargeback_for_an_unknown_order_stores_nothing_and_applies_later() {
    let db = TestDatabase::new().await;
    let cb = chargeback("c1", "o-later", ChargebackStatus::Opened, 1);
    assert_eq!(
        apply_chargeback_tx(&db.pool, &cb, &Delivery::now())
            .await
            .expect("apply"),
        ChargebackOutcome::OrderUnknown
    );
    for table in ["disputes", "dispute_events", "processed_webhooks"] {
        assert_eq!(
            count(&db.pool, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    apply_order_tx(
        &db.pool,
        &order("e1", "o-later", OrderStatus::Success, 0),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let retried = apply_chargeback_tx(&db.pool, &cb, &Delivery::now())
        .await
        .expect("retry");
    assert!(matches!(
        retried,
        ChargebackOutcome::Applied {
            effect: DisputeEffect::Created,
            ..
        }
    ));
}

async fn dispute_row(
    db: &TestDatabase,
) -> (
    String,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    sqlx::query_as("SELECT status, closed_at, evidence_due_at FROM disputes")
        .fetch_one(&db.pool)
        .await
        .expect("dispute")
}

#[tokio::test]
async fn dispute_lifecycles_end_won_lost_or_closed_and_stay_there() {
    for (resolution, expected) in [
        (Resolution::Won, "won"),
        (Resolution::Lost, "lost"),
        (Resolution::Closed, "closed"),
    ] {
        let db = TestDatabase::new().await;
        apply_order_tx(
            &db.pool,
            &order("e1", "o1", OrderStatus::Success, 0),
            &Delivery::now(),
        )
        .await
        .expect("order");
        apply_chargeback_tx(
            &db.pool,
            &chargeback("c1", "o1", ChargebackStatus::Opened, 1),
            &Delivery::now(),
        )
        .await
        .expect("opened");
        apply_chargeback_tx(
            &db.pool,
            &chargeback("c2", "o1", ChargebackStatus::Updated, 2),
            &Delivery::now(),
        )
        .await
        .expect("updated");
        assert_eq!(
            dispute_row(&db).await,
            ("open".to_owned(), None, Some(t(1002)))
        );
        apply_chargeback_tx(
            &db.pool,
            &closed("c3", "o1", resolution, 3),
            &Delivery::now(),
        )
        .await
        .expect("closed");
        assert_eq!(dispute_row(&db).await.0, expected);
        // A late `opened` (a new event id, as providers resend) never reopens it.
        let late = apply_chargeback_tx(
            &db.pool,
            &chargeback("c0", "o1", ChargebackStatus::Opened, 1),
            &Delivery::now(),
        )
        .await
        .expect("late opened");
        assert!(matches!(
            late,
            ChargebackOutcome::Applied {
                effect: DisputeEffect::FinalKept,
                ..
            }
        ));
        assert_eq!(
            dispute_row(&db).await,
            (expected.to_owned(), Some(t(3)), Some(t(1002)))
        );
        assert_eq!(
            count(&db.pool, "SELECT count(*) FROM dispute_events").await,
            4
        );
    }
}

#[tokio::test]
async fn events_land_in_the_daily_partition_of_their_time() {
    let db = TestDatabase::new().await;
    let now = pm_domain::time::now();
    let yesterday = now - chrono::Duration::days(1);
    for (ev, at) in [("e1", now), ("e2", yesterday)] {
        let delivery = Delivery {
            event_id: pm_domain::EventId::generate(),
            received_at: at,
            correlation_id: None,
        };
        apply_order_tx(
            &db.pool,
            &order(ev, &format!("o-{ev}"), OrderStatus::Created, 0),
            &delivery,
        )
        .await
        .expect("apply");
        let stored_in: String = sqlx::query_scalar(
            "SELECT tableoid::regclass::text FROM order_events WHERE provider_event_id = $1",
        )
        .bind(ev)
        .fetch_one(&db.pool)
        .await
        .expect("row");
        let expected = pm_storage::partitions::partition_for(&db.pool, "public.order_events", at)
            .await
            .expect("lookup");
        assert_eq!(Some(stored_in.clone()), expected);
        assert!(
            stored_in.ends_with(&at.format("%Y_%m_%d").to_string())
                || stored_in.ends_with(&at.format("%Y%m%d").to_string()),
            "{stored_in}"
        );
    }
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_events_default").await,
        0
    );
}

/// The single-statement SQL of `apply_order` is `order::apply` compiled to SQL: every pair of
/// (current status, incoming status) and every order of their timestamps gives the same
/// state and the same effect as the domain rule.
#[tokio::test]
async fn the_sql_order_rule_matches_the_domain_rule_exhaustively() {
    use pm_domain::order::{apply, OrderProgress};
    let db = TestDatabase::new().await;
    let mut case = 0;
    for current in OrderStatus::ALL {
        for incoming in OrderStatus::ALL {
            for offset in [-1, 0, 1] {
                case += 1;
                let id = format!("rule-{case}");
                apply_order_tx(
                    &db.pool,
                    &order(&format!("{id}-a"), &id, current, 10),
                    &Delivery::now(),
                )
                .await
                .expect("first");
                let outcome = apply_order_tx(
                    &db.pool,
                    &order(&format!("{id}-b"), &id, incoming, 10 + offset),
                    &Delivery::now(),
                )
                .await
                .expect("second");
                let start = OrderProgress {
                    status: current,
                    updated_at: t(10),
                };
                let (expected, expected_effect) = apply(
                    Some(start),
                    OrderProgress {
                        status: incoming,
                        updated_at: t(10 + offset),
                    },
                );
                assert_eq!(
                    effect(outcome),
                    Some(expected_effect),
                    "{current} then {incoming} at {offset:+}"
                );
                let (status, updated_at) = order_status(&db, &id).await;
                assert_eq!(
                    (status.as_str(), updated_at),
                    (expected.status.as_str(), expected.updated_at),
                    "{current} then {incoming} at {offset:+}"
                );
            }
        }
    }
}

/// The same pairs as above, all in one batch: the batch statement applies the rule per row,
/// with two rounds (each order's second webhook waits for its first).
#[tokio::test]
async fn a_batch_applies_the_order_rule_to_every_row() {
    use pm_domain::order::{apply, OrderProgress};
    let db = TestDatabase::new().await;
    let mut webhooks = Vec::new();
    let mut expectations = Vec::new();
    for current in OrderStatus::ALL {
        for incoming in OrderStatus::ALL {
            for offset in [-1, 0, 1] {
                let id = format!("rule-{}", expectations.len());
                webhooks.push(order(&format!("{id}-a"), &id, current, 10));
                webhooks.push(order(&format!("{id}-b"), &id, incoming, 10 + offset));
                let (expected, effect) = apply(
                    Some(OrderProgress {
                        status: current,
                        updated_at: t(10),
                    }),
                    OrderProgress {
                        status: incoming,
                        updated_at: t(10 + offset),
                    },
                );
                expectations.push((
                    id,
                    expected,
                    effect,
                    format!("{current} then {incoming} at {offset:+}"),
                ));
            }
        }
    }
    let batch: Vec<_> = webhooks.iter().map(|w| (w, Delivery::now())).collect();
    let outcomes = apply_in_one_transaction(&db, &batch).await;
    for (i, (id, expected, expected_effect, case)) in expectations.iter().enumerate() {
        assert_eq!(
            effect(outcomes[2 * i]),
            Some(OrderEffect::Created),
            "{case}"
        );
        assert_eq!(
            effect(outcomes[2 * i + 1]),
            Some(*expected_effect),
            "{case}"
        );
        let (status, updated_at) = order_status(&db, id).await;
        assert_eq!(
            (status.as_str(), updated_at),
            (expected.status.as_str(), expected.updated_at),
            "{case}"
        );
    }
}

async fn apply_in_one_transaction(
    db: &TestDatabase,
    batch: &[(&pm_domain::webhook::OrderWebhook, Delivery)],
) -> Vec<OrderOutcome> {
    let mut tx = db.pool.begin().await.expect("begin");
    let outcomes = apply_orders(&mut tx, batch).await.expect("batch");
    tx.commit().await.expect("commit");
    outcomes
}

/// What a database holds after order webhooks, in a form two databases can be compared by.
async fn order_state(
    db: &TestDatabase,
) -> (
    Vec<(String, String, i64)>,
    Vec<(String, String, String)>,
    i64,
) {
    let orders = sqlx::query_as(
        "SELECT order_id, status, extract(epoch FROM updated_at)::bigint FROM orders ORDER BY order_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("orders");
    let events = sqlx::query_as(
        "SELECT order_id, provider_event_id, data->>'effect' FROM order_events
         ORDER BY order_id, provider_event_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("events");
    let processed = count(&db.pool, "SELECT count(*) FROM processed_webhooks").await;
    (orders, events, processed)
}

/// Batches of webhooks with repeated orders and repeated deliveries (the cases that need
/// several rounds) leave the same outcomes and the same database as applying the same
/// webhooks one at a time, in the same order.
#[tokio::test]
async fn a_batch_is_the_same_as_its_webhooks_one_at_a_time() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for run in 0..8 {
        let one_by_one = TestDatabase::new().await;
        let batched = TestDatabase::new().await;
        let mut webhooks = Vec::new();
        for _ in 0..40 {
            // Few orders and few event ids, so orders repeat and deliveries are duplicated.
            let event = format!("r{run}-e{}", next(30));
            let order_id = format!("r{run}-o{}", next(6));
            let status = OrderStatus::ALL[usize::try_from(next(4)).expect("small")];
            webhooks.push(order(
                &event,
                &order_id,
                status,
                i64::try_from(next(5)).expect("small"),
            ));
        }
        // A repeated event id always carries the same webhook, as a provider's retry does.
        let mut first: std::collections::HashMap<String, pm_domain::webhook::OrderWebhook> =
            std::collections::HashMap::new();
        for w in &mut webhooks {
            *w = first
                .entry(w.provider_event_id.as_str().to_owned())
                .or_insert_with(|| w.clone())
                .clone();
        }
        let deliveries: Vec<Delivery> = webhooks.iter().map(|_| Delivery::now()).collect();
        let mut expected = Vec::new();
        for (w, d) in webhooks.iter().zip(&deliveries) {
            expected.push(apply_order_tx(&one_by_one.pool, w, d).await.expect("apply"));
        }
        let batch: Vec<_> = webhooks.iter().zip(deliveries.iter().cloned()).collect();
        let outcomes = apply_in_one_transaction(&batched, &batch).await;
        assert_eq!(outcomes, expected, "run {run}");
        assert_eq!(
            order_state(&batched).await,
            order_state(&one_by_one).await,
            "run {run}"
        );
    }
}
