//! Debezium as the outbox relay between real processes: `serve-api` (sync mode, no relay of
//! its own) takes webhooks and an operator action, Debezium's PostgreSQL connector
//! (`scripts/debezium.sh`, Kafka Connect standalone) reads the outbox from the WAL and
//! publishes to Apache Kafka — the same messages as `pmctl outbox-relay`, byte for byte,
//! every event at least once and each aggregate's in sequence order — and survives a SIGKILL
//! mid-run. A rolled-back transaction's event never appears.

use std::collections::HashMap;

use pm_kafka::debezium::{DebeziumOptions, LocalDebezium};
use pm_kafka::{KafkaConfig, Topics};
use pm_storage::testing::TestDatabase;
use rdkafka::message::Message;

use crate::kafka_mode::count;
use crate::outbox::check_published;
use crate::process::{chargeback_json, eventually, order_json, send_webhook, Pmctl, SECRET};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test]
async fn debezium_publishes_every_event_like_the_polling_relay_and_survives_a_kill() {
    let db = TestDatabase::new().await;
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("debezium");
    let config = KafkaConfig::new(brokers.clone(), "e2e-debezium");
    let topics = Topics::with_prefix(&prefix);
    // As serve-api in kafka mode or the polling relay would have made it.
    pm_kafka::topics::ensure_topics(
        &config,
        &topics,
        &pm_kafka::topics::TopicSettings::with_partitions(3),
    )
    .await
    .expect("topics");
    let topic = topics.domain_events;
    let options = DebeziumOptions {
        database_url: db.url.clone(),
        brokers: brokers.clone(),
        topic: topic.clone(),
        slot: db.name.clone(),
    };
    let mut debezium = blocking(move || LocalDebezium::start(&options))
        .await
        .unwrap_or_else(|e| panic!("Debezium did not start: {e}"));
    let api = Pmctl::start(
        &["serve-api"],
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await
    .keyed(&db)
    .await;

    // An event whose transaction rolls back is never decoded, so never published.
    let mut tx = db.pool.begin().await.expect("begin");
    let ghost: String = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type, \
                             schema_version, payload, created_at) \
         VALUES (gen_random_uuid(), 'order', 'ghost', 1, 'order_created', 1, '{}', now()) \
         RETURNING event_id::text",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("insert");
    tx.rollback().await.expect("rollback");

    // Webhooks while Debezium runs, is killed, and is down; then it resumes.
    let orders = 45;
    for i in 0..orders {
        let id = format!("dz-{i}");
        for (n, status) in ["created", "updated", "success"].into_iter().enumerate() {
            let r = send_webhook(
                &api,
                "/webhooks/payments/orders",
                &order_json(&format!("e-{id}-{n}"), &id, status, n as u32 * 10),
            )
            .await;
            assert!(r.status().is_success(), "{}", r.status());
        }
        if i == orders / 3 {
            let dir = debezium.dir().display().to_string();
            debezium = blocking(move || {
                debezium
                    .kill()
                    .unwrap_or_else(|e| panic!("kill Debezium ({dir}): {e}"));
                debezium
            })
            .await;
        }
    }
    let r = send_webhook(
        &api,
        "/webhooks/payments/chargebacks",
        &chargeback_json("cb-dz", "dz-1", "opened"),
    )
    .await;
    assert!(r.status().is_success());
    let hold = api
        .client()
        .post(api.url("/orders/dz-2/hold"))
        .json(&serde_json::json!({"action": "set", "reason": "risk"}))
        .send()
        .await
        .expect("hold");
    assert_eq!(hold.status(), 200);
    let written = count(&db, "SELECT count(*) FROM outbox").await;
    assert_eq!(written, i64::from(orders) * 3 + 2, "one event per change");

    let debezium = blocking(move || {
        debezium
            .resume()
            .unwrap_or_else(|e| panic!("resume Debezium: {e}"));
        debezium
    })
    .await;

    // Every event arrives, each aggregate's first deliveries in sequence order.
    let reader = config.clone();
    let wanted = usize::try_from(written).expect("count");
    eventually("every event on the topic", || {
        let (config, topic) = (reader.clone(), topic.clone());
        async move {
            let on_topic = blocking(move || {
                pm_kafka::testing::read_all(&config, &topic)
                    .iter()
                    .filter_map(|m| pm_kafka::testing::header(m, "pm-event-id"))
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            })
            .await;
            on_topic >= wanted
        }
    })
    .await;
    assert_eq!(check_published(&db, &config, &topic).await as i64, written);

    // The same bytes the polling relay sends (the outbox's payload as text), the id in a
    // header, keyed by aggregate; and not the rolled-back event.
    let payloads: HashMap<String, String> =
        sqlx::query_as("SELECT event_id::text, payload::text FROM outbox")
            .fetch_all(&db.pool)
            .await
            .expect("payloads")
            .into_iter()
            .collect();
    let messages = {
        let (config, topic) = (config.clone(), topic.clone());
        blocking(move || pm_kafka::testing::read_all(&config, &topic)).await
    };
    for m in &messages {
        let id = pm_kafka::testing::header(m, "pm-event-id").expect("pm-event-id header");
        assert_ne!(id, ghost, "a rolled-back event was published");
        let payload = std::str::from_utf8(m.payload().expect("a value")).expect("UTF-8");
        assert_eq!(Some(payload), payloads.get(&id).map(String::as_str), "{id}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
        )
        .await,
        0,
        "Debezium marks nothing"
    );
    drop(debezium);
    // Dropping it drops its slot: a forgotten slot would keep WAL on the server forever.
    let slots = count(
        &db,
        &format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            db.name
        ),
    )
    .await;
    assert_eq!(slots, 0, "the slot is dropped with the worker");
}
