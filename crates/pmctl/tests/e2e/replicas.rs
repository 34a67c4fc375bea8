//! `serve-api --database-replica-url`: a real process reading from a streaming standby of its
//! database while it is current, saying so in each read, exporting the replica's lag, and
//! writing to the primary only.

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};

use crate::process::{api_key_in, eventually, order_json, send_webhook, Pmctl, SECRET};

#[tokio::test]
async fn serve_api_reads_from_a_current_replica_and_writes_to_the_primary() {
    let (primary, standbys) = EmbeddedCluster::start_with_standbys(EmbeddedOptions::default(), 1)
        .await
        .unwrap_or_else(|e| panic!("a primary with a standby did not start: {e}"));
    let url = primary.admin_url();
    let pool = pm_storage::connect(&url, &Default::default()).expect("pool");
    pm_storage::migrate::run(&pool).await.expect("migrate");
    let key = api_key_in(&pool).await;
    let mut api = Pmctl::start(
        &["serve-api"],
        &[
            ("PM_DATABASE_URL", &url),
            ("PM_DATABASE_REPLICA_URL", &standbys[0].admin_url()),
            ("PM_REPLICA_MAX_LAG", "2s"),
            ("PM_WEBHOOK_SECRETS", SECRET),
        ],
    )
    .await;
    api.key = key;

    let r = send_webhook(
        &api,
        "/webhooks/payments/orders",
        &order_json("e-r1", "r-1", "created", 0),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    eventually("the standby serves the order", || async {
        let r = api
            .client()
            .get(api.url("/orders/r-1"))
            .send()
            .await
            .expect("read");
        let source = r
            .headers()
            .get("pm-read-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        r.status() == 200 && source.as_deref() == Some("replica")
    })
    .await;
    let metrics = api
        .client()
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let port = standbys[0].port();
    assert!(
        metrics.contains(&format!(
            "pm_db_replica_in_rotation{{replica=\"127.0.0.1:{port}/postgres\"}} 1"
        )),
        "{metrics}"
    );
    // The write went to the primary (a standby refuses writes).
    let on_primary: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(on_primary, 1);
}
