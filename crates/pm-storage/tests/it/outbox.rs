//! The transactional outbox: one domain event per state change, written in the change's
//! transaction, numbered per aggregate without gaps, each matching its JSON Schema in
//! `docs/events/`; nothing for duplicates, stale webhooks or rolled-back transactions; and
//! what a relay may claim.

use std::path::Path;

use pm_domain::command::HoldChange;
use pm_domain::dispute::{ChargebackStatus, Resolution};
use pm_domain::evidence::{Evidence, EvidenceFile};
use pm_domain::order::{HoldReason, OrderStatus};
use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_storage::audit::Actor;
use pm_storage::captures::{self, CaptureResult, CaptureStart, SettledBy};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{apply_chargeback_tx, apply_order_tx, apply_orders, Delivery};
use pm_storage::{disputes, orders, outbox};
use serde_json::Value;

use crate::fixtures::{chargeback, closed, order};

/// Every outbox row: (aggregate id, sequence, event type, payload).
async fn events(db: &TestDatabase) -> Vec<(String, i64, String, Value)> {
    sqlx::query_as::<_, (String, i64, String, sqlx::types::Json<Value>)>(
        "SELECT aggregate_id, sequence, event_type, payload FROM outbox
         ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&db.pool)
    .await
    .expect("outbox")
    .into_iter()
    .map(|(a, s, t, p)| (a, s, t, p.0))
    .collect()
}

fn types_of(events: &[(String, i64, String, Value)], aggregate: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(a, ..)| a == aggregate)
        .map(|(_, _, t, _)| t.clone())
        .collect()
}

fn schema(name: &str) -> jsonschema::Validator {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../docs/events/{name}.v1.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("a JSON schema");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json)
        .unwrap_or_else(|e| panic!("{name}: not a schema: {e}"))
}

/// Checks every event against the envelope's schema and its type's, and that each
/// aggregate's sequence runs 1, 2, 3… and matches the row.
fn check(events: &[(String, i64, String, Value)]) {
    let envelope = schema("envelope");
    let mut last: Option<(&str, i64)> = None;
    for (aggregate, sequence, event_type, payload) in events {
        if let Err(e) = envelope.validate(payload) {
            panic!("{event_type} envelope: {e}\n{payload:#}");
        }
        if let Err(e) = schema(event_type).validate(&payload["data"]) {
            panic!("{event_type} data: {e}\n{payload:#}");
        }
        assert_eq!(payload["sequence"], *sequence);
        assert_eq!(payload["event_type"], event_type.as_str());
        assert_eq!(payload["aggregate_id"], aggregate.as_str());
        let expected = match last {
            Some((a, n)) if a == aggregate => n + 1,
            _ => 1,
        };
        assert_eq!(
            *sequence, expected,
            "{aggregate}: sequences run without gaps"
        );
        last = Some((aggregate, *sequence));
    }
}

fn actor() -> Actor {
    Actor::new("ops-1", Some("corr-ops".to_owned()))
}

fn delivery(correlation: &str) -> Delivery {
    Delivery {
        correlation_id: Some(correlation.into()),
        ..Delivery::now()
    }
}

async fn apply(db: &TestDatabase, w: pm_domain::webhook::OrderWebhook) {
    apply_order_tx(&db.pool, &w, &delivery("corr-o1"))
        .await
        .expect("order");
}

async fn cb(db: &TestDatabase, w: pm_domain::webhook::ChargebackWebhook) {
    apply_chargeback_tx(&db.pool, &w, &delivery("corr-d1"))
        .await
        .expect("chargeback");
}

#[tokio::test]
async fn every_state_change_writes_one_event_and_nothing_else_does() {
    let db = TestDatabase::new().await;
    apply(&db, order("e1", "o1", OrderStatus::Created, 1)).await;
    apply(&db, order("e2", "o1", OrderStatus::Updated, 2)).await;
    apply(&db, order("e2", "o1", OrderStatus::Updated, 2)).await; // duplicate
    apply(&db, order("e3", "o1", OrderStatus::Created, 3)).await; // stale

    let id = OrderId::parse("o1").expect("id");
    for change in [
        HoldChange::Set(HoldReason::Risk),
        HoldChange::Set(HoldReason::Risk),
        HoldChange::Clear,
    ] {
        orders::set_hold(&db.pool, &id, change, &actor(), pm_domain::time::now())
            .await
            .expect("hold");
    }

    let money = Money::new(
        Amount::parse("25.50").expect("amount"),
        Currency::parse("EUR").expect("eur"),
    )
    .expect("money");
    let key = IdempotencyKey::parse("cap-1").expect("key");
    let now = pm_domain::time::now();
    let start = captures::begin(
        &db.pool,
        &id,
        &money,
        &key,
        &actor(),
        now,
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("begin");
    assert!(matches!(start, CaptureStart::Proceed(_)));
    captures::finish(
        &db.pool,
        &key,
        &CaptureResult::Success {
            provider_tx_id: "tx-1".to_owned(),
        },
        SettledBy::Request,
        &actor(),
        now,
    )
    .await
    .expect("finish");
    apply(&db, order("e4", "o1", OrderStatus::Success, 4)).await;
    apply(&db, order("e5", "o1", OrderStatus::Failed, 5)).await; // final kept

    // A dispute: opened, updated, evidence, submitted, won.
    cb(&db, chargeback("c1", "o1", ChargebackStatus::Opened, 10)).await;
    cb(&db, chargeback("c1", "o1", ChargebackStatus::Opened, 10)).await; // duplicate
    cb(&db, chargeback("c2", "o1", ChargebackStatus::Updated, 20)).await;
    let dispute_id = sqlx::query_scalar::<_, uuid::Uuid>("SELECT dispute_id FROM disputes")
        .fetch_one(&db.pool)
        .await
        .expect("dispute");
    let dispute = pm_domain::DisputeId::from_uuid(dispute_id);
    let evidence = Evidence {
        fields: [("note".to_owned(), "delivered".to_owned())].into(),
        files: vec![EvidenceFile {
            file_id: "f1".to_owned(),
            name: "r.pdf".to_owned(),
            content_type: "application/pdf".to_owned(),
            size: 10,
        }],
    };
    disputes::upsert_evidence(
        &db.pool,
        dispute,
        &evidence,
        &actor(),
        pm_domain::time::now(),
    )
    .await
    .expect("evidence");
    disputes::record_submission(&db.pool, dispute, "rep-1", &actor(), pm_domain::time::now())
        .await
        .expect("submission");
    cb(&db, closed("c3", "o1", Resolution::Won, 30)).await;

    // A dispute whose first webhook is its decision: opened, then lost.
    apply(&db, order("e6", "o2", OrderStatus::Success, 1)).await;
    cb(&db, closed("c4", "o2", Resolution::Lost, 5)).await;

    let all = events(&db).await;
    check(&all);
    assert_eq!(
        types_of(&all, "o1"),
        [
            "order_created",
            "order_status_changed",
            "order_held",
            "order_released",
            "order_captured",
            "order_status_changed",
        ]
    );
    assert_eq!(
        types_of(&all, &dispute_id.to_string()),
        [
            "dispute_opened",
            "dispute_status_changed",
            "dispute_evidence_updated",
            "dispute_submitted",
            "dispute_won",
        ]
    );
    let other: Vec<_> = all
        .iter()
        .filter(|(a, ..)| a != "o1" && a != "o2" && *a != dispute_id.to_string())
        .map(|(_, _, t, _)| t.as_str())
        .collect();
    assert_eq!(other, ["dispute_opened", "dispute_lost"]);
    assert_eq!(types_of(&all, "o2"), ["order_created"]);

    // The ids the changes came with.
    let captured = all
        .iter()
        .find(|(.., t, _)| t == "order_captured")
        .expect("captured");
    assert_eq!(captured.3["correlation_id"], "corr-ops");
    assert_eq!(captured.3["data"]["amount"], "25.50");
    let created = all
        .iter()
        .find(|(.., t, _)| t == "order_created")
        .expect("created");
    assert_eq!(created.3["correlation_id"], "corr-o1");
    let opened = all
        .iter()
        .find(|(.., t, _)| t == "dispute_opened")
        .expect("opened");
    assert_eq!(opened.3["correlation_id"], "corr-d1");
    let ids: std::collections::HashSet<_> =
        all.iter().map(|(.., p)| p["event_id"].clone()).collect();
    assert_eq!(ids.len(), all.len(), "event ids are unique");
}

#[tokio::test]
async fn batched_webhooks_write_the_same_events_as_one_by_one() {
    let db = TestDatabase::new().await;
    let batch = [
        order("b1", "ob-1", OrderStatus::Created, 1),
        order("b2", "ob-2", OrderStatus::Created, 1),
        order("b3", "ob-1", OrderStatus::Updated, 2),
        order("b1", "ob-1", OrderStatus::Created, 1), // duplicate
        order("b4", "ob-2", OrderStatus::Success, 3),
        order("b5", "ob-2", OrderStatus::Updated, 4), // final kept
    ];
    let deliveries: Vec<Delivery> = batch.iter().map(|_| delivery("corr-batch")).collect();
    let items: Vec<_> = batch.iter().zip(deliveries.iter().cloned()).collect();
    let mut tx = db.pool.begin().await.expect("tx");
    apply_orders(&mut tx, &items).await.expect("batch");
    tx.commit().await.expect("commit");
    let all = events(&db).await;
    check(&all);
    assert_eq!(
        types_of(&all, "ob-1"),
        ["order_created", "order_status_changed"]
    );
    assert_eq!(
        types_of(&all, "ob-2"),
        ["order_created", "order_status_changed"]
    );
    assert!(all
        .iter()
        .all(|(.., p)| p["correlation_id"] == "corr-batch"));
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event() {
    let db = TestDatabase::new().await;
    let mut tx = db.pool.begin().await.expect("tx");
    pm_storage::webhooks::apply_order(
        &mut tx,
        &order("r1", "or-1", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("apply");
    tx.rollback().await.expect("rollback");
    // A chargeback for an order not known yet rolls back its transaction too.
    apply_chargeback_tx(
        &db.pool,
        &chargeback("rc", "nobody", ChargebackStatus::Opened, 1),
        &Delivery::now(),
    )
    .await
    .expect("chargeback");
    assert!(events(&db).await.is_empty());
}

#[tokio::test]
async fn relays_claim_each_aggregate_in_order_and_never_past_a_held_event() {
    let db = TestDatabase::new().await;
    for (e, status, at) in [
        ("a1", OrderStatus::Created, 1),
        ("a2", OrderStatus::Updated, 2),
        ("a3", OrderStatus::Success, 3),
    ] {
        apply_order_tx(&db.pool, &order(e, "oa", status, at), &Delivery::now())
            .await
            .expect("order");
    }
    apply_order_tx(
        &db.pool,
        &order("b1", "ob", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");

    // Relay one holds oa's first event only (a claim of one).
    let mut one = db.pool.begin().await.expect("tx");
    let first = outbox::claim(&mut one, 1).await.expect("claim");
    assert_eq!(
        first
            .iter()
            .map(|p| (p.aggregate_id.as_str(), p.sequence))
            .collect::<Vec<_>>(),
        [("oa", 1)]
    );
    // Relay two skips it, and must not publish oa's later events before it: it gets ob only.
    let mut two = db.pool.begin().await.expect("tx");
    let second = outbox::claim(&mut two, 100).await.expect("claim");
    assert_eq!(
        second
            .iter()
            .map(|p| (p.aggregate_id.as_str(), p.sequence))
            .collect::<Vec<_>>(),
        [("ob", 1)]
    );
    outbox::mark_published(&mut two, &second, pm_domain::time::now())
        .await
        .expect("mark");
    two.commit().await.expect("commit");
    outbox::mark_published(&mut one, &first, pm_domain::time::now())
        .await
        .expect("mark");
    one.commit().await.expect("commit");

    // Now the rest of oa, in order; then nothing.
    let mut three = db.pool.begin().await.expect("tx");
    let rest = outbox::claim(&mut three, 100).await.expect("claim");
    assert_eq!(
        rest.iter()
            .map(|p| (p.aggregate_id.as_str(), p.sequence))
            .collect::<Vec<_>>(),
        [("oa", 2), ("oa", 3)]
    );
    outbox::mark_published(&mut three, &rest, pm_domain::time::now())
        .await
        .expect("mark");
    three.commit().await.expect("commit");
    let mut four = db.pool.begin().await.expect("tx");
    assert!(outbox::claim(&mut four, 100)
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(outbox::backlog(&db.pool).await.expect("backlog").0, 0);
}

/// The benchmark's baseline: a session with `pm.bench_without_outbox = on` (set in the URL,
/// as `pmctl bench outbox` does) changes the same state and writes no event.
#[tokio::test]
async fn the_benchmark_switch_writes_no_event_and_changes_the_same_state() {
    let db = TestDatabase::new().await;
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}options=-c%20{}%3Don",
        db.url,
        outbox::BENCH_WITHOUT_OUTBOX
    );
    let pool = pm_storage::connect(&url, &Default::default()).expect("pool");
    apply_order_tx(
        &pool,
        &order("b1", "ox-1", OrderStatus::Created, 1),
        &delivery("b"),
    )
    .await
    .expect("order");
    let batch = [
        order("b2", "ox-1", OrderStatus::Success, 2),
        order("b3", "ox-2", OrderStatus::Created, 1),
    ];
    let items: Vec<_> = batch.iter().map(|w| (w, delivery("b"))).collect();
    let mut tx = pool.begin().await.expect("tx");
    apply_orders(&mut tx, &items).await.expect("batch");
    tx.commit().await.expect("commit");
    apply_chargeback_tx(
        &pool,
        &chargeback("b4", "ox-1", ChargebackStatus::Opened, 3),
        &delivery("b"),
    )
    .await
    .expect("chargeback");
    assert!(events(&db).await.is_empty(), "no event with the switch on");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await
        .expect("orders");
    let disputes: i64 = sqlx::query_scalar("SELECT count(*) FROM disputes")
        .fetch_one(&db.pool)
        .await
        .expect("disputes");
    assert_eq!((orders, disputes), (2, 1), "the state changed as usual");

    // Without it (the default), the same kind of change writes its event.
    apply(&db, order("b5", "ox-3", OrderStatus::Created, 1)).await;
    assert_eq!(events(&db).await.len(), 1);
}
