//! `serve-ingest` as its own process in front of `serve-api`: HTTP sink and Kafka sink.

use pm_kafka::testing::Cluster;
use pm_storage::testing::TestDatabase;

use crate::process::{
    chargeback_json, eventually, order_json, send_webhook as send, Pmctl, SECRET,
};

const TOKEN: &str = "e2e-internal-token";

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

const ORDERS: &str = "/webhooks/payments/orders";
const CHARGEBACKS: &str = "/webhooks/payments/chargebacks";

#[tokio::test]
async fn ingest_http_sink_forwards_to_the_api() {
    let db = TestDatabase::new().await;
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_INTERNAL_TOKEN", TOKEN),
    ];
    let api = Pmctl::start(&["serve-api"], &env).await;
    let api_url = api.url("");
    let ingest = Pmctl::start(
        &["serve-ingest", "--sink", "http", "--api-url", &api_url],
        &env,
    )
    .await;
    ingest.wait_for("/health/ready", 200).await;

    assert_eq!(
        send(&ingest, ORDERS, &order_json("h1", "http-o1", "success", 0))
            .await
            .status(),
        202
    );
    assert_eq!(
        send(&ingest, ORDERS, &order_json("h1", "http-o1", "success", 0))
            .await
            .status(),
        200
    );
    // The API's 404 (order not known yet) keeps its meaning through ingest.
    assert_eq!(
        send(
            &ingest,
            CHARGEBACKS,
            &chargeback_json("hc0", "http-unknown", "opened")
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        send(
            &ingest,
            CHARGEBACKS,
            &chargeback_json("hc1", "http-o1", "opened")
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        send(&ingest, ORDERS, r#"{"order_id": 1}"#).await.status(),
        422
    );
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM disputes").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM order_events").await, 1);
}

#[tokio::test]
async fn ingest_kafka_sink_through_the_broker_into_the_database() {
    let db = TestDatabase::new().await;
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("e2e-ingest");
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_KAFKA_BROKERS", brokers.as_str()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    let ingest = Pmctl::start(&["serve-ingest", "--sink", "kafka"], &env).await;
    let api = Pmctl::start(&["serve-api", "--mode", "kafka"], &env).await;
    api.wait_for("/health/ready", 200).await;
    for (ev, status, at) in [
        ("ki1", "created", 0),
        ("ki2", "updated", 5),
        ("ki3", "success", 9),
        ("ki2b", "updated", 7),
    ] {
        assert_eq!(
            send(&ingest, ORDERS, &order_json(ev, "kafka-o1", status, at))
                .await
                .status(),
            202
        );
    }
    assert_eq!(
        send(
            &ingest,
            ORDERS,
            &order_json("ki1", "kafka-o1", "created", 0)
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        send(
            &ingest,
            CHARGEBACKS,
            &chargeback_json("kic1", "kafka-o1", "opened")
        )
        .await
        .status(),
        202
    );
    eventually("applied through Kafka", || async {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'success'").await == 1
            && count(&db, "SELECT count(*) FROM disputes").await == 1
    })
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM order_events").await, 4);
}

#[tokio::test]
async fn ingest_answers_503_while_the_broker_is_down_and_202_when_it_is_back() {
    let mut broker = tokio::task::spawn_blocking(|| Cluster::start(1))
        .await
        .expect("task")
        .expect("cluster");
    let brokers = broker.brokers().to_owned();
    let env = [
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_KAFKA_BROKERS", brokers.as_str()),
    ];
    let ingest = Pmctl::start(
        &[
            "serve-ingest",
            "--sink",
            "kafka",
            "--kafka-delivery-timeout",
            "2s",
        ],
        &env,
    )
    .await;
    assert_eq!(
        send(&ingest, ORDERS, &order_json("b1", "b-o1", "created", 0))
            .await
            .status(),
        202
    );

    broker = tokio::task::spawn_blocking(move || {
        broker.stop_node(1).expect("stop");
        broker
    })
    .await
    .expect("task");
    let r = send(&ingest, ORDERS, &order_json("b2", "b-o2", "created", 0)).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    ingest.wait_for("/health/ready", 503).await;

    // Keep the handle: dropping it stops the broker.
    let _broker = tokio::task::spawn_blocking(move || {
        broker.start_node(1).expect("restart");
        broker
    })
    .await
    .expect("task");
    // The provider's retries: the same webhook until it is taken.
    eventually("202 once the broker is back", || async {
        send(&ingest, ORDERS, &order_json("b2", "b-o2", "created", 0))
            .await
            .status()
            == 202
    })
    .await;
}
