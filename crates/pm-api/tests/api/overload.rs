//! Overload and slow dependencies: load shedding, the request timeout, the statement and
//! lock timeouts, and reads that cannot starve webhook processing.

use std::time::Duration;

use futures::future::join_all;
use pm_api::testing::hostile::Dress;
use pm_api::testing::TestApi;
use pm_http::limits::Limits;
use pm_storage::testing::TestDatabase;
use pm_storage::{PgPool, PoolOptions};
use serde_json::Value;
use sqlx::Connection;

use crate::app::{order, SECRET};

fn pool(db: &TestDatabase, max: u32, tune: impl FnOnce(&mut PoolOptions)) -> PgPool {
    let mut opts = PoolOptions {
        max_connections: max,
        acquire_timeout: Duration::from_secs(1),
        ..PoolOptions::default()
    };
    tune(&mut opts);
    pm_storage::connect(&db.url, &opts).expect("pool")
}

/// Sends a signed webhook creating order `order_id` to the API at `base`; its status, or 0
/// when none came.
async fn webhook(http: &reqwest::Client, base: &str, order_id: String) -> u16 {
    let event = format!("evt-{order_id}");
    let body = order(&event, &order_id, "created", "2026-01-01T00:00:05Z").to_string();
    Dress::valid()
        .apply(
            http.post(format!("{base}/webhooks/payments/orders")),
            SECRET,
            body.as_bytes(),
        )
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn problem(http: &reqwest::Client, url: String) -> (u16, Option<String>, Value) {
    let r = http.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry_after, r.json().await.unwrap_or(Value::Null))
}

/// Holds `orders` locked (as a long migration or a stuck transaction would) until dropped.
async fn lock_orders(db: &TestDatabase) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .expect("lock");
    conn
}

async fn stored(db: &TestDatabase, order_id: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&db.pool)
        .await
        .expect("count")
        == 1
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_are_shed_at_once_and_health_is_not() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET)
        .limits(Limits {
            max_in_flight: 3,
            ..Limits::default()
        })
        // No groups: each of the three below waits on the lock in a session of its own,
        // where the test can see it (grouped, webhooks of one worker would queue in the API).
        .webhook_groups(pm_api::groups::GroupSettings {
            max_size: 0,
            workers: 0,
        })
        .spawn(pool(&db, 4, |o| {
            o.lock_timeout = Some(Duration::from_secs(20));
        }))
        .await;
    let http = api.client();
    // Three webhooks wait on the lock and fill the limit.
    let lock = lock_orders(&db).await;
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let (http, base) = (http.clone(), api.base.clone());
            tokio::spawn(async move { webhook(&http, &base, format!("o-held-{i}")).await })
        })
        .collect();
    // Wait until the three are being worked on (PostgreSQL shows them waiting on the lock).
    let mut tries = 0;
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .fetch_one(&db.pool)
    .await
    .expect("activity")
        < 3
    {
        tries += 1;
        assert!(tries < 300, "the held webhooks never reached the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, retry_after, p) = problem(&http, format!("{}/orders", api.base)).await;
    assert_eq!(status, 503, "{p}");
    assert_eq!(p["type"], "/problems/overloaded", "{p}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(webhook(&http, &api.base, "o-shed".to_owned()).await, 503);
    let (status, _, _) = problem(&http, format!("{}/health/live", api.base)).await;
    assert_eq!(status, 200, "health is never shed");
    let metrics = http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"route="/orders",status="503"} 1"#),
        "shed requests are counted: {metrics}"
    );

    drop(lock);
    for held in join_all(waiting).await {
        assert_eq!(held.expect("join"), 202);
    }
    assert!(
        !stored(&db, "o-shed").await,
        "a shed webhook was not applied"
    );
    assert_eq!(
        webhook(&http, &api.base, "o-shed".to_owned()).await,
        202,
        "its retry is"
    );
}

#[tokio::test]
async fn a_locked_table_costs_a_webhook_the_lock_timeout_not_the_lock() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET)
        .spawn(pool(&db, 4, |o| {
            o.lock_timeout = Some(Duration::from_millis(300));
        }))
        .await;
    let http = api.client();
    let lock = lock_orders(&db).await;
    let answers =
        join_all((0..8).map(|i| webhook(&http, &api.base, format!("o-locked-{i}")))).await;
    assert!(answers.iter().all(|s| *s == 503), "{answers:?}");
    let (status, retry_after, p) = problem(&http, format!("{}/orders?limit=1", api.base)).await;
    assert_eq!(status, 503, "reads wait on the same lock: {p}");
    assert_eq!(p["type"], "/problems/database-timeout", "{p}");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("lock")),
        "{p}"
    );
    assert!(retry_after.is_some());
    drop(lock);
    assert_eq!(
        webhook(&http, &api.base, "o-locked-0".to_owned()).await,
        202
    );
}

#[tokio::test]
async fn a_statement_that_would_run_for_minutes_is_cancelled_by_the_statement_timeout() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET)
        .spawn(pool(&db, 4, |o| {
            o.statement_timeout = Some(Duration::from_millis(500));
        }))
        .await;
    let http = api.client();
    // No lock timeout: the statement would wait as long as the lock is held.
    let lock = lock_orders(&db).await;
    let (status, retry_after, p) = problem(&http, format!("{}/orders", api.base)).await;
    assert_eq!(status, 503, "{p}");
    assert_eq!(p["type"], "/problems/database-timeout", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("statement timeout")),
        "{p}"
    );
    assert!(retry_after.is_some());
    assert_eq!(webhook(&http, &api.base, "o-st".to_owned()).await, 503);
    drop(lock);
    assert!(!stored(&db, "o-st").await);
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_abandoned_with_503_and_rolled_back() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET)
        .limits(Limits {
            request_timeout: Duration::from_millis(400),
            ..Limits::default()
        })
        .spawn(db.pool.clone())
        .await;
    let http = api.client();
    let lock = lock_orders(&db).await;
    let body = order("rt-1", "o-rt", "created", "2026-01-01T00:00:05Z").to_string();
    let r = Dress::valid()
        .apply(
            http.post(format!("{}/webhooks/payments/orders", api.base)),
            SECRET,
            body.as_bytes(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["type"], "/problems/request-timeout", "{p}");
    drop(lock);
    // Once no statement of the abandoned request is left running, nothing of it is stored:
    // it was rolled back with the request.
    let started = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("activity")
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stored(&db, "o-rt").await);
}

#[tokio::test]
async fn reads_cannot_take_the_connections_webhooks_need() {
    let db = TestDatabase::new().await;
    let reads = pool(&db, 2, |_| {});
    let api = TestApi::new(SECRET)
        .read_pool(reads.clone())
        .spawn(pool(&db, 4, |_| {}))
        .await;
    let http = api.client();
    // Every read connection is busy (a read flood, or a slow report)...
    let _busy = (
        reads.acquire().await.expect("r1"),
        reads.acquire().await.expect("r2"),
    );
    let flood = join_all((0..40).map(|_| problem(&http, format!("{}/orders/events", api.base))));
    // ...while webhooks keep arriving.
    let webhooks = join_all((0..20).map(|i| webhook(&http, &api.base, format!("o-rf-{i}"))));
    let (reads_answered, webhooks_answered) = tokio::join!(flood, webhooks);
    assert!(
        webhooks_answered.iter().all(|s| *s == 202),
        "{webhooks_answered:?}"
    );
    for i in 0..20 {
        assert!(stored(&db, &format!("o-rf-{i}")).await);
    }
    assert!(
        reads_answered.iter().all(|(s, _, _)| *s == 503),
        "the reads waited for their own pool and gave up: {:?}",
        reads_answered.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}
