//! The capture invariant: at most one capture per order with an open outcome, whatever
//! writes to the table; and an abandoned attempt is told apart from a running one.

use std::time::Duration;

use pm_domain::order::OrderStatus;
use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_storage::captures::{self, CaptureStart, CaptureStatus};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{apply_order_tx, Delivery};

use crate::fixtures::{order, t};

fn eur(text: &str) -> Money {
    Money::new(
        Amount::parse(text).expect("amount"),
        Currency::parse("EUR").expect("eur"),
    )
    .expect("money")
}

fn actor() -> pm_storage::audit::Actor {
    pm_storage::audit::Actor::new("ops-1", Some("corr-1".to_owned()))
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).expect("key")
}

async fn an_order(db: &TestDatabase, id: &str) -> OrderId {
    apply_order_tx(
        &db.pool,
        &order(&format!("e-{id}"), id, OrderStatus::Updated, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    OrderId::parse(id).expect("id")
}

#[tokio::test]
async fn the_database_refuses_a_second_open_capture_of_one_order() {
    let db = TestDatabase::new().await;
    let id = an_order(&db, "o1").await;
    let started = captures::begin(
        &db.pool,
        &id,
        &eur("5"),
        &key("k1"),
        &actor(),
        t(10),
        Duration::from_secs(30),
    )
    .await
    .expect("begin");
    assert!(matches!(started, CaptureStart::Proceed(_)));
    // Writing around `begin` must not get past the unique index either.
    let sneaked = sqlx::query(
        "INSERT INTO order_captures (idempotency_key, order_id, amount, currency, request_fingerprint,
                                     status, attempt_started_at, created_at)
         VALUES ('k2', 'o1', 5, 'EUR', 'x', 'unknown', now(), now())",
    )
    .execute(&db.pool)
    .await
    .expect_err("a second open capture");
    let code = sneaked
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23505"), "{sneaked}");
}

#[tokio::test]
async fn an_abandoned_attempt_blocks_other_keys_and_is_taken_over_by_its_own() {
    let db = TestDatabase::new().await;
    let id = an_order(&db, "o2").await;
    let stale = Duration::from_secs(30);
    let money = eur("7.5");
    // A process began a capture at t=10 and died.
    captures::begin(&db.pool, &id, &money, &key("k1"), &actor(), t(10), stale)
        .await
        .expect("begin");

    // While it might still be running:
    let k1 = key("k1");
    let who = actor();
    let at = |s| captures::begin(&db.pool, &id, &money, &k1, &who, t(s), stale);
    assert_eq!(at(20).await.expect("same key"), CaptureStart::InProgress);
    let other = captures::begin(&db.pool, &id, &money, &key("k2"), &who, t(20), stale)
        .await
        .expect("other key");
    assert_eq!(
        other,
        CaptureStart::OpenUnderOtherKey {
            idempotency_key: key("k1"),
            in_flight: true
        }
    );
    assert!(captures::unsettled(&db.pool, t(20), stale, 10)
        .await
        .expect("unsettled")
        .is_empty());

    // Once stale it is unsettled work, still refused to other keys, and its own key
    // takes it over as a second attempt.
    let open = captures::unsettled(&db.pool, t(41), stale, 10)
        .await
        .expect("unsettled");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].status, CaptureStatus::Pending);
    let other = captures::begin(&db.pool, &id, &money, &key("k2"), &who, t(41), stale)
        .await
        .expect("other key");
    assert_eq!(
        other,
        CaptureStart::OpenUnderOtherKey {
            idempotency_key: key("k1"),
            in_flight: false
        }
    );
    let CaptureStart::Proceed(retry) = at(41).await.expect("take over") else {
        panic!("expected the same key to take the attempt over");
    };
    assert_eq!((retry.attempts, retry.attempt_started_at), (2, t(41)));

    // A give-up decided on the first attempt's timestamp no longer applies.
    let stale_view = captures::give_up(&db.pool, &key("k1"), t(10), "no record", t(42))
        .await
        .expect("give up");
    assert_eq!(stale_view, None);
}
