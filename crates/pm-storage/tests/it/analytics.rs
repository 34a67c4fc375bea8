//! The analytics projection: events the real storage code writes into the outbox, parsed as
//! a consumer reads them from `domain-events`, project to the right numbers — once, however
//! often they come, and not at all when the projection fails.

use chrono::NaiveDate;
use pm_domain::dispute::{ChargebackStatus, Resolution};
use pm_domain::domain_event::IncomingEvent;
use pm_domain::order::OrderStatus;
use pm_domain::webhook::ChargebackWebhook;
use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_storage::analytics::{
    self, Applied, CaptureDay, Days, DecisionTimes, InboxCounts, OrderDay, ReasonOutcomes,
};
use pm_storage::audit::Actor;
use pm_storage::captures::{self, CaptureResult, CaptureStart, SettledBy};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{apply_chargeback_tx, apply_order_tx, Delivery};

use crate::fixtures::{chargeback, closed, count, order, t};

/// Every outbox event, as a consumer of the topic parses it.
async fn published(db: &TestDatabase) -> Vec<IncomingEvent> {
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM outbox ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&db.pool)
    .await
    .expect("outbox");
    payloads
        .iter()
        .map(|p| IncomingEvent::parse(p.as_bytes()).expect("an event the outbox wrote"))
        .collect()
}

async fn project(db: &TestDatabase, events: &[IncomingEvent]) -> Vec<Applied> {
    let mut out = Vec::new();
    for e in events {
        out.push(analytics::apply(&db.pool, e).await.expect("apply"));
    }
    out
}

type Snapshot = (
    Vec<OrderDay>,
    Vec<CaptureDay>,
    Vec<ReasonOutcomes>,
    DecisionTimes,
    InboxCounts,
);

async fn snapshot(db: &TestDatabase, days: Days) -> Snapshot {
    (
        analytics::order_days(&db.pool, days).await.expect("orders"),
        analytics::capture_days(&db.pool, days)
            .await
            .expect("captures"),
        analytics::dispute_outcomes(&db.pool, days)
            .await
            .expect("outcomes"),
        analytics::decision_times(&db.pool, days)
            .await
            .expect("times"),
        analytics::inbox_counts(&db.pool).await.expect("inbox"),
    )
}

fn money(amount: &str, currency: &str) -> Money {
    Money::new(
        Amount::parse(amount).expect("amount"),
        Currency::parse(currency).expect("currency"),
    )
    .expect("money")
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

/// A capture through the storage code, settled at `t(at)`.
async fn capture(db: &TestDatabase, order: &str, key: &str, m: Money, ok: bool, at: i64) {
    let actor = Actor::new("ops-1", None);
    let (id, key) = (
        OrderId::parse(order).expect("id"),
        IdempotencyKey::parse(key).expect("key"),
    );
    let start = captures::begin(
        &db.pool,
        &id,
        &m,
        &key,
        &actor,
        t(at),
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("begin");
    assert!(matches!(start, CaptureStart::Proceed(_)), "{start:?}");
    let result = if ok {
        CaptureResult::Success {
            provider_tx_id: format!("tx-{key}"),
        }
    } else {
        CaptureResult::Failed {
            provider_tx_id: None,
            reason: "declined".to_owned(),
        }
    };
    captures::finish(&db.pool, &key, &result, SettledBy::Request, &actor, t(at))
        .await
        .expect("finish");
}

async fn cb(db: &TestDatabase, w: ChargebackWebhook) {
    apply_chargeback_tx(&db.pool, &w, &Delivery::now())
        .await
        .expect("chargeback");
}

fn with_reason(w: ChargebackWebhook, reason: &str) -> ChargebackWebhook {
    ChargebackWebhook {
        reason: reason.to_owned(),
        ..w
    }
}

/// Four orders, captures in two currencies (one declined), and three decided disputes —
/// one of them decided by its first webhook, whose late `opened` then moves `opened_at`
/// earlier (and writes its decision event again).
async fn scenario(db: &TestDatabase) {
    for o in ["o1", "o2", "o3", "o4"] {
        apply_order_tx(
            &db.pool,
            &order(&format!("e-{o}"), o, OrderStatus::Created, 1),
            &Delivery::now(),
        )
        .await
        .expect("order");
    }
    apply_order_tx(
        &db.pool,
        &order("e-o1-u", "o1", OrderStatus::Updated, 2),
        &Delivery::now(),
    )
    .await
    .expect("order");
    capture(db, "o1", "k1", money("25.50", "EUR"), true, 100).await;
    capture(db, "o2", "k2", money("10", "USD"), true, 100).await;
    capture(db, "o3", "k3", money("7.00", "USD"), false, 86_400 + 5).await;

    cb(db, chargeback("c1", "o1", ChargebackStatus::Opened, 10)).await;
    cb(db, closed("c2", "o1", Resolution::Won, 30)).await;
    cb(db, closed("c3", "o2", Resolution::Lost, 5)).await;
    cb(db, chargeback("c4", "o2", ChargebackStatus::Opened, 1)).await;
    cb(
        db,
        with_reason(
            chargeback("c5", "o3", ChargebackStatus::Opened, 0),
            "not_received",
        ),
    )
    .await;
    cb(
        db,
        with_reason(closed("c6", "o3", Resolution::Won, 100), "not_received"),
    )
    .await;
}

#[tokio::test]
async fn events_of_the_real_storage_code_project_to_the_right_numbers() {
    let db = TestDatabase::new().await;
    scenario(&db).await;
    let events = published(&db).await;
    let lost = events
        .iter()
        .filter(|e| e.event_type_name() == "dispute_lost")
        .count();
    assert_eq!(lost, 2, "the late `opened` restated the decision");
    let applied = project(&db, &events).await;
    assert!(
        applied.iter().all(|a| *a == Applied::Projected),
        "{applied:?}"
    );

    let (orders, captures, outcomes, times, inbox) = snapshot(&db, Days::default()).await;
    let created_on = events
        .iter()
        .find(|e| e.event_type_name() == "order_created")
        .expect("created")
        .occurred_at()
        .date_naive();
    assert_eq!(
        orders,
        [OrderDay {
            day: created_on,
            orders_created: 4
        }]
    );
    let usd = Currency::parse("USD").expect("usd");
    let eur = Currency::parse("EUR").expect("eur");
    assert_eq!(
        captures,
        [
            CaptureDay {
                day: day("2026-01-01"),
                currency: eur,
                captured: 1,
                captured_minor: 2550,
                failed: 0,
                failed_minor: 0
            },
            CaptureDay {
                day: day("2026-01-01"),
                currency: usd,
                captured: 1,
                captured_minor: 1000,
                failed: 0,
                failed_minor: 0
            },
            CaptureDay {
                day: day("2026-01-02"),
                currency: usd,
                captured: 0,
                captured_minor: 0,
                failed: 1,
                failed_minor: 700
            },
        ]
    );
    assert_eq!(
        outcomes,
        [
            ReasonOutcomes {
                reason: "fraud".to_owned(),
                won: 1,
                lost: 1
            },
            ReasonOutcomes {
                reason: "not_received".to_owned(),
                won: 1,
                lost: 0
            },
        ]
    );
    assert_eq!(outcomes[0].win_rate(), 0.5);
    // Seconds from opening to decision: 20 (o1), 4 (o2, opened at 1 after all), 100 (o3).
    assert_eq!(times.count, 3);
    let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
    assert!(close(times.mean_seconds, 124.0 / 3.0), "{times:?}");
    assert!(close(times.p50_seconds, 20.0), "{times:?}");
    assert!(close(times.p90_seconds, 84.0), "{times:?}");
    assert_eq!(
        inbox,
        InboxCounts {
            projected: events.len() as i64,
            skipped: 0
        }
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM analytics.inbox").await,
        count(&db.pool, "SELECT count(DISTINCT event_id) FROM outbox").await
    );

    // Windows are [from, to) in UTC days.
    let second = Days {
        from: Some(day("2026-01-02")),
        to: Some(day("2026-01-03")),
    };
    let (_, captures, outcomes, times, _) = snapshot(&db, second).await;
    assert_eq!(captures.len(), 1);
    assert_eq!(captures[0].failed_minor, 700);
    assert!(outcomes.is_empty());
    assert_eq!(
        times,
        DecisionTimes {
            count: 0,
            mean_seconds: None,
            p50_seconds: None,
            p90_seconds: None
        }
    );
    let first = Days {
        from: None,
        to: Some(day("2026-01-02")),
    };
    assert_eq!(snapshot(&db, first).await.3.count, 3);
}

#[tokio::test]
async fn an_event_applied_twice_counts_once() {
    let db = TestDatabase::new().await;
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let events = published(&db).await;
    assert_eq!(project(&db, &events).await, [Applied::Projected]);
    assert_eq!(project(&db, &events).await, [Applied::Duplicate]);
    let (orders, ..) = snapshot(&db, Days::default()).await;
    assert_eq!(orders.iter().map(|o| o.orders_created).sum::<i64>(), 1);

    // Deliveries at the same moment (two consumers during a rebalance): the second waits
    // for the first one's inbox row, then finds it.
    apply_order_tx(
        &db.pool,
        &order("e2", "o2", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let second = published(&db)
        .await
        .into_iter()
        .find(|e| e.aggregate_id() == "o2")
        .expect("o2's event");
    let racing = (0..10).map(|_| analytics::apply(&db.pool, &second));
    let results: Vec<Applied> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.expect("apply"))
        .collect();
    assert_eq!(
        results.iter().filter(|a| **a == Applied::Projected).count(),
        1,
        "{results:?}"
    );
    let (orders, ..) = snapshot(&db, Days::default()).await;
    assert_eq!(orders.iter().map(|o| o.orders_created).sum::<i64>(), 2);
}

#[tokio::test]
async fn a_replay_of_every_event_changes_nothing() {
    let db = TestDatabase::new().await;
    scenario(&db).await;
    let events = published(&db).await;
    project(&db, &events).await;
    let before = snapshot(&db, Days::default()).await;
    // From offset zero again, in another order (other partitions interleaved).
    let mut replay = events.clone();
    replay.reverse();
    let again = project(&db, &replay).await;
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");
    assert_eq!(snapshot(&db, Days::default()).await, before);
}

#[tokio::test]
async fn a_failed_projection_rolls_its_inbox_row_back_too() {
    let db = TestDatabase::new().await;
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    capture(&db, "o1", "k1", money("12.34", "USD"), true, 10).await;
    let capture_event = published(&db)
        .await
        .into_iter()
        .find(|e| e.event_type_name() == "order_captured")
        .expect("captured");
    sqlx::raw_sql(
        "CREATE FUNCTION analytics.refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'projection refused' USING ERRCODE = 'XX000'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON analytics.captures_daily
             FOR EACH ROW EXECUTE FUNCTION analytics.refuse();",
    )
    .execute(&db.pool)
    .await
    .expect("trigger");
    let failed = analytics::apply(&db.pool, &capture_event).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM analytics.inbox").await,
        0,
        "the inbox row went with the failed projection"
    );

    sqlx::raw_sql("DROP TRIGGER refuse ON analytics.captures_daily")
        .execute(&db.pool)
        .await
        .expect("drop");
    assert_eq!(
        analytics::apply(&db.pool, &capture_event)
            .await
            .expect("apply"),
        Applied::Projected,
        "delivered again, it is applied"
    );
    let (_, captures, ..) = snapshot(&db, Days::default()).await;
    assert_eq!(
        captures
            .iter()
            .map(|c| (c.captured, c.captured_minor))
            .collect::<Vec<_>>(),
        [(1, 1234)]
    );
}

#[tokio::test]
async fn unknown_types_are_skipped_on_every_replay_until_a_build_knows_them() {
    let db = TestDatabase::new().await;
    let envelope = |event_id: &str, event_type: &str, version: i32| {
        serde_json::json!({
            "event_id": event_id, "event_type": event_type, "schema_version": version,
            "aggregate_type": "order", "aggregate_id": "o9", "sequence": 1,
            "occurred_at": "2026-01-01T00:00:00Z", "correlation_id": null, "trace_id": null,
            "data": {"order_id": "o9", "refunded": "1.00"}
        })
        .to_string()
    };
    let newer = [
        envelope("0190a5c4-0000-7000-8000-0000000000a1", "order_refunded", 1),
        envelope("0190a5c4-0000-7000-8000-0000000000a2", "order_created", 2),
    ]
    .map(|text| IncomingEvent::parse(text.as_bytes()).expect("parses"));
    assert_eq!(
        project(&db, &newer).await,
        [Applied::Skipped, Applied::Skipped]
    );
    assert_eq!(
        project(&db, &newer).await,
        [Applied::Duplicate, Applied::Duplicate]
    );
    let (orders, .., inbox) = snapshot(&db, Days::default()).await;
    assert!(orders.is_empty(), "a v2 order_created is not counted as v1");
    assert_eq!(
        inbox,
        InboxCounts {
            projected: 0,
            skipped: 2
        }
    );
    let recorded: Vec<(String, i32)> =
        sqlx::query_as("SELECT event_type, schema_version FROM analytics.inbox ORDER BY event_id")
            .fetch_all(&db.pool)
            .await
            .expect("inbox");
    assert_eq!(
        recorded,
        [
            ("order_refunded".to_owned(), 1),
            ("order_created".to_owned(), 2)
        ]
    );

    // A later build that reads the second one as an event it knows (here: its id with v1
    // data) projects it once, and from then on it is a duplicate like any other.
    let mut known: serde_json::Value = serde_json::from_str(&envelope(
        "0190a5c4-0000-7000-8000-0000000000a2",
        "order_created",
        1,
    ))
    .expect("json");
    known["data"] = serde_json::json!({
        "order_id": "o9", "user_id": crate::fixtures::USER, "status": "created",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    });
    let known = [IncomingEvent::parse(known.to_string().as_bytes()).expect("parses")];
    assert_eq!(project(&db, &known).await, [Applied::Projected]);
    assert_eq!(project(&db, &known).await, [Applied::Duplicate]);
    assert_eq!(
        project(&db, &newer[1..]).await,
        [Applied::Duplicate],
        "an older build's replay skips it"
    );
    let (orders, .., inbox) = snapshot(&db, Days::default()).await;
    assert_eq!(orders.iter().map(|o| o.orders_created).sum::<i64>(), 1);
    assert_eq!(
        inbox,
        InboxCounts {
            projected: 1,
            skipped: 1
        }
    );
}
