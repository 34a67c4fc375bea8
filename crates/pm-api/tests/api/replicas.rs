//! Read replicas: the read routes go to a streaming standby while it is current, to the
//! primary while it lags past the limit, and each response says which server it came from
//! and how stale it may be. Writes always go to the primary.

use std::time::{Duration, Instant};

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_storage::PgPool;

use crate::app::{order, signed_post, SECRET};

/// `GET path` on `api`: status, `pm-read-source`, `pm-read-lag-ms`, body.
async fn read(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> (u16, Option<String>, Option<u64>, serde_json::Value) {
    let r = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request");
    let header = |name| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let source = header("pm-read-source");
    let lag = header("pm-read-lag-ms").and_then(|v| v.parse().ok());
    let status = r.status().as_u16();
    (status, source, lag, r.json().await.expect("JSON"))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pause_replay(standby: &PgPool, pause: bool) {
    let f = if pause {
        "pg_wal_replay_pause()"
    } else {
        "pg_wal_replay_resume()"
    };
    sqlx::query(&format!("SELECT {f}"))
        .execute(standby)
        .await
        .expect("replay control");
}

#[tokio::test]
async fn reads_go_to_a_current_replica_and_to_the_primary_while_it_lags() {
    let (primary, standbys) = EmbeddedCluster::start_with_standbys(EmbeddedOptions::default(), 1)
        .await
        .unwrap_or_else(|e| panic!("a primary with a standby did not start: {e}"));
    let pool = pm_storage::connect(&primary.admin_url(), &Default::default()).expect("pool");
    pm_storage::migrate::run(&pool).await.expect("migrate");
    let standby =
        pm_storage::connect(&standbys[0].admin_url(), &Default::default()).expect("standby");
    let api = pm_api::testing::TestApi::new(SECRET)
        .replica("standby", standby.clone())
        .max_replica_lag(Duration::from_secs(1))
        .serve(pool.clone())
        .await;
    let http = api.client();
    let orders = format!("{}/webhooks/payments/orders", api.base);

    // A current replica serves the reads, and sees what was written on the primary.
    let body = order("e1", "o-1", "created", "2026-01-01T00:00:01Z").to_string();
    assert_eq!(signed_post(&http, &orders, &body).await.status(), 202);
    eventually("the replica serves o-1", || async {
        let (status, source, lag, _) = read(&http, &api.base, "/orders/o-1").await;
        status == 200 && source.as_deref() == Some("replica") && lag.is_some_and(|l| l < 1_000)
    })
    .await;

    // Its replay stops: once it is a second behind, reads go to the primary, which has
    // what the replica does not.
    pause_replay(&standby, true).await;
    let body = order("e2", "o-2", "created", "2026-01-01T00:00:01Z").to_string();
    assert_eq!(signed_post(&http, &orders, &body).await.status(), 202);
    eventually("reads leave the lagging replica", || async {
        // Keep the primary writing, so the replica's last replayed transaction ages.
        sqlx::query("SELECT txid_current()")
            .execute(&pool)
            .await
            .expect("a write");
        let (status, source, lag, _) = read(&http, &api.base, "/orders/o-2").await;
        status == 200 && source.as_deref() == Some("primary") && lag.is_none()
    })
    .await;
    let on_standby: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE order_id = 'o-2'")
        .fetch_one(&standby)
        .await
        .expect("count on the standby");
    assert_eq!(on_standby, 0, "the paused replica never saw o-2");

    // It catches up and is back in rotation.
    pause_replay(&standby, false).await;
    eventually("the replica is back", || async {
        let (status, source, _, _) = read(&http, &api.base, "/orders/o-2").await;
        status == 200 && source.as_deref() == Some("replica")
    })
    .await;
    let metrics = http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("pm_db_replica_in_rotation{replica=\"standby\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pm_db_replica_lag_seconds{replica=\"standby\"}"));
}
