//! The outbox relay between real processes: `serve-api` (sync mode) takes webhooks and an
//! operator action, `pmctl outbox-relay` publishes the domain events to Apache Kafka —
//! every event at least once, each aggregate's in sequence order — survives a SIGKILL
//! mid-run, and runs two at a time without breaking the order.

use std::collections::{HashMap, HashSet};

use pm_kafka::{KafkaConfig, Topics};
use pm_storage::testing::TestDatabase;
use rdkafka::message::Message;
use serde_json::Value;

use crate::kafka_mode::count;
use crate::process::{chargeback_json, eventually, order_json, send_webhook, Pmctl, SECRET};

/// One published message: (key, event id, sequence, event type).
type Published = (String, String, i64, String);

pub(crate) fn published(config: &KafkaConfig, topic: &str) -> Vec<Published> {
    pm_kafka::testing::read_all(config, topic)
        .into_iter()
        .map(|m| {
            let key = String::from_utf8_lossy(m.key().expect("a key")).into_owned();
            let value: Value = serde_json::from_slice(m.payload().expect("a value")).expect("JSON");
            assert_eq!(value["aggregate_id"], key.as_str(), "keyed by aggregate");
            assert_eq!(
                pm_kafka::testing::header(&m, "pm-event-id").as_deref(),
                value["event_id"].as_str(),
                "the id is also a header"
            );
            (
                key,
                value["event_id"].as_str().expect("id").to_owned(),
                value["sequence"].as_i64().expect("sequence"),
                value["event_type"].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

/// Every outbox event is on the topic, and each aggregate's first deliveries come in
/// sequence order (redeliveries after a crash may repeat earlier ones).
pub(crate) async fn check_published(db: &TestDatabase, config: &KafkaConfig, topic: &str) -> usize {
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT aggregate_id, sequence, event_id::text FROM outbox ORDER BY 1, 2")
            .fetch_all(&db.pool)
            .await
            .expect("outbox");
    let messages = published(config, topic);
    let on_topic: HashSet<&str> = messages.iter().map(|(_, id, ..)| id.as_str()).collect();
    let missing: Vec<_> = rows
        .iter()
        .filter(|(.., id)| !on_topic.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "never published: {missing:?}");
    let mut seen: HashMap<&str, i64> = HashMap::new();
    for (key, _, sequence, event_type) in &messages {
        let last = seen.entry(key.as_str()).or_insert(0);
        if *sequence > *last {
            assert_eq!(
                *sequence,
                *last + 1,
                "{key}: {event_type} #{sequence} published before #{}",
                *last + 1
            );
            *last = *sequence;
        }
    }
    rows.len()
}

/// A relay with its operations endpoints (`--listen`, which `Pmctl::start` adds).
async fn relay(db: &TestDatabase, brokers: &str, prefix: &str) -> Pmctl {
    Pmctl::start(
        &[
            "outbox-relay",
            "--kafka-brokers",
            brokers,
            "--kafka-topic-prefix",
            prefix,
            "--outbox-batch",
            "50",
        ],
        &[("PM_DATABASE_URL", &db.url)],
    )
    .await
}

#[tokio::test]
async fn the_relay_publishes_every_event_in_order_and_survives_a_kill() {
    let db = TestDatabase::new().await;
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("outbox");
    let config = KafkaConfig::new(brokers.clone(), "e2e-outbox");
    let topic = Topics::with_prefix(&prefix).domain_events;
    let api = Pmctl::start(
        &["serve-api"],
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await
    .keyed(&db)
    .await;

    // A first wave, published by a relay that is then killed mid-run.
    let orders = 60;
    let mut first = relay(&db, &brokers, &prefix).await;
    for i in 0..orders {
        let id = format!("ob-{i}");
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
            first.kill9();
        }
    }
    let r = send_webhook(
        &api,
        "/webhooks/payments/chargebacks",
        &chargeback_json("cb-1", "ob-1", "opened"),
    )
    .await;
    assert!(r.status().is_success());
    let hold = api
        .client()
        .post(api.url("/orders/ob-2/hold"))
        .json(&serde_json::json!({"action": "set", "reason": "risk"}))
        .send()
        .await
        .expect("hold");
    assert_eq!(hold.status(), 200);
    let written = count(&db, "SELECT count(*) FROM outbox").await;
    assert_eq!(written, i64::from(orders) * 3 + 2, "one event per change");

    // Two relays at once finish the job.
    let a = relay(&db, &brokers, &prefix).await;
    let b = relay(&db, &brokers, &prefix).await;
    eventually("every event published", || async {
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        )
        .await
            == 0
    })
    .await;
    let rows = check_published(&db, &config, &topic).await;
    assert_eq!(rows as i64, written);
    // Each relay says what it published, and that its rounds succeed.
    let mut published_by_both = 0;
    for r in [&a, &b] {
        let ready = reqwest::get(r.url("/health/ready")).await.expect("ready");
        assert_eq!(ready.status(), 200);
        let text = reqwest::get(r.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        published_by_both += crate::kafka_mode::counter_total(&text, "pm_outbox_published_total");
    }
    assert!(
        published_by_both > 0 && published_by_both <= written as u64,
        "the second wave's relays counted {published_by_both} of {written}"
    );
    let mut ob2: Vec<(i64, String)> = published(&config, &topic)
        .into_iter()
        .filter(|(key, ..)| key == "ob-2")
        .map(|(_, _, sequence, t)| (sequence, t))
        .collect();
    ob2.sort();
    ob2.dedup();
    assert_eq!(
        ob2.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        [
            "order_created",
            "order_status_changed",
            "order_status_changed",
            "order_held"
        ]
    );
}
