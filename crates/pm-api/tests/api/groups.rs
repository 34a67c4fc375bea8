//! Group commit in sync mode: webhooks that wait for the database share one transaction,
//! and one webhook the database refuses costs only itself.
//!
//! Each test holds a lock on one order so the only group worker is busy with it, queues
//! webhooks behind it (watching the queue gauge), then lets go: what was queued is applied
//! as one group.

use std::time::Duration;

use pm_api::groups::GroupSettings;
use serde_json::Value;

use crate::app::{chargeback, order, TestApp};

async fn one_worker() -> TestApp {
    TestApp::spawn_with(|api| {
        api.webhook_groups(GroupSettings {
            max_size: 128,
            workers: 1,
        })
    })
    .await
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get_text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 5 s for {what}");
}

/// Holds order `blocker` locked, sends a webhook for it and waits until the group worker
/// is stuck on the lock; dropping the returned transaction lets it go.
async fn occupy_the_worker(
    app: &TestApp,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<u16>,
) {
    app.order_in("blocker", "created").await;
    let mut lock = app.db.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM orders WHERE order_id = 'blocker' FOR UPDATE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let http = app.http.clone();
    let url = app.url("/webhooks/payments/orders");
    let body = order(
        "evt-blocker-2",
        "blocker",
        "updated",
        "2026-01-01T00:00:09Z",
    );
    let blocked = tokio::spawn(async move { crate::app::send_signed(&http, &url, &body).await });
    let pool = app.db.pool.clone();
    wait_for("the group worker to wait for the lock", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .expect("activity")
            == 1
    })
    .await;
    (lock, blocked)
}

fn sends(app: &TestApp, bodies: Vec<(&'static str, Value)>) -> Vec<tokio::task::JoinHandle<u16>> {
    bodies
        .into_iter()
        .map(|(route, body)| {
            let http = app.http.clone();
            let url = app.url(route);
            tokio::spawn(async move { crate::app::send_signed(&http, &url, &body).await })
        })
        .collect()
}

async fn statuses(handles: Vec<tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("send"));
    }
    out
}

/// Sends `bodies` while the worker is held, waits until all of them are queued, lets the
/// worker go, and answers their statuses in order (the blocker's own webhook must pass).
async fn queue_behind_the_blocker(
    app: &TestApp,
    bodies: Vec<(&'static str, Value)>,
    lock: sqlx::Transaction<'static, sqlx::Postgres>,
    blocked: tokio::task::JoinHandle<u16>,
) -> Vec<u16> {
    let queued = bodies.len();
    let handles = sends(app, bodies);
    wait_for("every webhook to be queued", async || {
        metric(app, "pm_webhook_group_queue").await == queued as f64
    })
    .await;
    lock.rollback().await.expect("release");
    assert_eq!(blocked.await.expect("send"), 202);
    statuses(handles).await
}

const ORDERS: &str = "/webhooks/payments/orders";
const CHARGEBACKS: &str = "/webhooks/payments/chargebacks";

#[tokio::test]
async fn queued_webhooks_share_one_group_and_a_chargeback_sees_its_groups_order() {
    let app = one_worker().await;
    let (lock, blocked) = occupy_the_worker(&app).await;

    let mut bodies = Vec::new();
    // The chargeback is queued first; its order comes later in the same group.
    bodies.push((CHARGEBACKS, chargeback("cb-o5", "o5", "opened")));
    for i in 0..30 {
        bodies.push((
            ORDERS,
            order(
                &format!("evt-o{i}"),
                &format!("o{i}"),
                "success",
                "2026-01-01T00:00:05Z",
            ),
        ));
    }
    // Five more deliveries of one event: duplicates within the group.
    for _ in 0..5 {
        bodies.push((
            ORDERS,
            order("evt-o1", "o1", "success", "2026-01-01T00:00:05Z"),
        ));
    }
    let queued = bodies.len();
    let got = queue_behind_the_blocker(&app, bodies, lock, blocked).await;
    assert_eq!(got[0], 202, "the chargeback: {got:?}");
    assert_eq!(got.iter().filter(|s| **s == 202).count(), 31, "{got:?}");
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 5, "{got:?}");
    // The blocker's two webhooks, then everything queued behind them in one group.
    assert_eq!(metric(&app, "pm_webhook_group_size_count").await, 3.0);
    assert_eq!(
        metric(&app, "pm_webhook_group_size_sum").await,
        (queued + 2) as f64
    );
    assert_eq!(metric(&app, "pm_webhook_groups_failed_total").await, 0.0);
    assert_eq!(metric(&app, "pm_webhooks_applied_alone_total").await, 0.0);
    assert_eq!(app.count("order_events").await, 32);
    assert_eq!(app.count("dispute_events").await, 1);
    let (_, o) = app.get("/orders/o29").await;
    assert_eq!(o["status"], "success");
}

#[tokio::test]
async fn a_webhook_the_database_refuses_fails_only_itself() {
    let app = one_worker().await;
    // The database refuses one order (a check violation, as for a value our validation let
    // through); the webhooks grouped with it must not pay for it.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.order_id = 'poison' THEN
                 RAISE EXCEPTION 'poison refused' USING ERRCODE = 'check_violation';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&app.db.pool)
    .await
    .expect("trigger");
    let (lock, blocked) = occupy_the_worker(&app).await;

    let mut bodies: Vec<_> = (0..10)
        .map(|i| {
            (
                ORDERS,
                order(
                    &format!("evt-g{i}"),
                    &format!("g{i}"),
                    "created",
                    "2026-01-01T00:00:01Z",
                ),
            )
        })
        .collect();
    bodies.push((
        ORDERS,
        order("evt-poison", "poison", "created", "2026-01-01T00:00:01Z"),
    ));
    let queued = bodies.len();
    let got = queue_behind_the_blocker(&app, bodies, lock, blocked).await;
    assert_eq!(got[..10], [202; 10], "{got:?}");
    assert_eq!(got[10], 422, "the poison webhook: {got:?}");
    assert_eq!(metric(&app, "pm_webhook_groups_failed_total").await, 1.0);
    assert_eq!(
        metric(&app, "pm_webhooks_applied_alone_total").await,
        queued as f64
    );
    assert_eq!(app.count("orders").await, 11, "the ten and the blocker");
    let poison_kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_webhooks WHERE provider_event_id = 'evt-poison'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(poison_kept, 0, "nothing of the refused webhook is stored");
}

#[tokio::test]
async fn concurrent_lifecycles_and_duplicates_never_roll_a_group_back() {
    // Several workers, and every webhook of each order sent at once, twice: groups of
    // different workers would deadlock on the orders and dedupe rows they share if one
    // order's webhooks could reach two workers.
    let app = TestApp::spawn_with(|api| {
        api.webhook_groups(GroupSettings {
            max_size: 128,
            workers: 4,
        })
    })
    .await;
    let mut bodies = Vec::new();
    for n in 0..40 {
        let id = format!("o-{n}");
        for (step, status) in ["created", "updated", "success"].into_iter().enumerate() {
            let body = order(
                &format!("evt-{n}-{step}"),
                &id,
                status,
                &format!("2026-01-01T00:00:0{step}Z"),
            );
            bodies.push((ORDERS, body.clone()));
            bodies.push((ORDERS, body));
        }
    }
    let handles = sends(&app, bodies);
    let got = statuses(handles).await;
    assert!(got.iter().all(|&s| s == 202 || s == 200), "{got:?}");
    assert_eq!(metric(&app, "pm_webhook_groups_failed_total").await, 0.0);
    assert_eq!(metric(&app, "pm_webhooks_applied_alone_total").await, 0.0);
    let finished: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'success'")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(finished, 40, "every order reached its final status");
    assert_eq!(
        app.count("order_events").await,
        120,
        "one event per webhook, none per duplicate"
    );
}
