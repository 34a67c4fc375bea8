//! The kafka sink against a real Kafka-protocol broker: what lands in the topic, where,
//! and that nothing is acknowledged that the broker did not store.

use std::time::Duration;

use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::WebhookKind;
use pm_ingest::Sink;
use pm_kafka::topics::{ensure_topics, TopicSettings};
use pm_kafka::{testing, KafkaConfig, Producer, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::murmur2::java_partition;
use crate::support::{chargeback, closed_port, metric_value, order, Ingest, CHARGEBACKS, ORDERS};

const PARTITIONS: i32 = 3;

/// Fresh topics (3 partitions, DLQs included, as at start-up) and ingest producing to them.
async fn kafka_ingest() -> (Ingest, Topics) {
    let brokers = testing::brokers();
    let topics = Topics::with_prefix(&testing::unique("ingest"));
    let config = KafkaConfig::new(brokers, "pm-ingest-test");
    ensure_topics(
        &config,
        &topics,
        &TopicSettings::with_partitions(PARTITIONS),
    )
    .await
    .expect("topics");
    let producer = Producer::new(&config, Duration::from_secs(10)).expect("producer");
    (
        Ingest::spawn(Sink::kafka(producer, topics.clone())).await,
        topics,
    )
}

/// Reads `topic` from the beginning of every partition until `done` says so, or fails
/// after a deadline.
async fn read_until(topic: &str, done: impl Fn(&[OwnedMessage]) -> bool) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", testing::brokers())
        .set("group.id", testing::unique("ingest-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut messages = Vec::new();
    while !done(&messages) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => messages.push(m.detach()),
            Ok(Err(e)) => panic!("consuming {topic}: {e}"),
            Err(_) => panic!(
                "{topic}: expected messages did not arrive within 30 s; got {}",
                messages.len()
            ),
        }
    }
    messages
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    pm_kafka::headers::get(m.headers(), name)
}

fn envelope(m: &OwnedMessage) -> WebhookEnvelope {
    serde_json::from_slice(m.payload().expect("payload")).expect("an envelope")
}

#[tokio::test]
async fn a_chargeback_is_stored_keyed_by_user_on_the_java_partition_with_its_headers() {
    let (ingest, topics) = kafka_ingest().await;
    let user = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let body = chargeback("cb-k1", "ord-k1", user);

    let r = ingest
        .signed_at(CHARGEBACKS, &body, chrono::Utc::now().timestamp())
        .header("x-correlation-id", "corr-kafka-1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    let ack: Value = r.json().await.expect("json");
    assert_eq!(ack["status"], "accepted", "{ack}");
    let event_id = ack["event_id"].as_str().expect("event id").to_owned();

    // The redelivery is answered from memory and not produced again; a later webhook
    // of the same user (same key, same partition, so read after it) proves it.
    let again = ingest.webhook(CHARGEBACKS, &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.expect("json"),
        json!({"status": "duplicate"})
    );
    let sentinel = ingest
        .webhook(CHARGEBACKS, &chargeback("cb-k2", "ord-k2", user))
        .await;
    assert_eq!(sentinel.status(), 202);
    let sentinel_id = sentinel.json::<Value>().await.expect("json")["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();

    let messages = read_until(&topics.disputes, |ms| {
        ms.iter()
            .any(|m| envelope(m).event_id.to_string() == sentinel_id)
    })
    .await;
    assert_eq!(messages.len(), 2, "the duplicate was not produced again");
    let m = &messages[0];
    assert_eq!(m.key(), Some(user.as_bytes()));
    assert_eq!(m.partition(), java_partition(user.as_bytes(), PARTITIONS));
    assert_eq!(
        header(m, "x-correlation-id").as_deref(),
        Some("corr-kafka-1")
    );
    assert_eq!(header(m, "pm-event-type").as_deref(), Some("chargeback"));
    let env = envelope(m);
    assert_eq!(env.event_id.to_string(), event_id);
    assert_eq!(env.kind, WebhookKind::Chargeback);
    let payload = env.payload.get();
    assert!(
        payload.contains(r#""amount":100.50"#),
        "amount kept as written: {payload}"
    );
    let payload: Value = serde_json::from_str(payload).expect("payload json");
    assert_eq!(
        payload,
        json!({
            "provider_event_id": "cb-k1", "order_id": "ord-k1", "user_id": user,
            "status": "opened", "reason": "fraud", "amount": 100.50, "currency": "USD",
            "occurred_at": "2026-01-02T00:00:00Z", "evidence_due_at": "2026-01-20T00:00:00Z",
            "meta": {}
        })
    );
    let metrics = ingest.metrics().await;
    for (sample, want) in [
        (
            r#"pm_ingest_webhooks_total{kind="chargeback",result="accepted"}"#,
            2,
        ),
        (
            r#"pm_ingest_webhooks_total{kind="chargeback",result="duplicate"}"#,
            1,
        ),
        (
            r#"pm_ingest_sink_seconds_count{sink="kafka",kind="chargeback"}"#,
            2,
        ),
    ] {
        assert_eq!(metric_value(&metrics, sample), want, "{sample}\n{metrics}");
    }
}

#[tokio::test]
async fn orders_of_many_users_land_where_the_java_client_would_put_them() {
    let (ingest, topics) = kafka_ingest().await;
    let users: Vec<String> = (0..8).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, user) in users.iter().enumerate() {
        let r = ingest
            .webhook(
                ORDERS,
                &order(&format!("evt-{i}"), &format!("ord-{i}"), user),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    let messages = read_until(&topics.orders, |ms| ms.len() >= users.len()).await;
    assert_eq!(messages.len(), users.len());
    for m in &messages {
        let key = m.key().expect("key");
        assert!(users.iter().any(|u| u.as_bytes() == key));
        assert_eq!(
            m.partition(),
            java_partition(key, PARTITIONS),
            "{}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(header(m, "pm-event-type").as_deref(), Some("order"));
        assert!(header(m, "x-correlation-id").is_some_and(|id| !id.is_empty()));
        assert_eq!(envelope(m).kind, WebhookKind::Order);
    }
    let used: std::collections::BTreeSet<i32> = messages.iter().map(|m| m.partition()).collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
}

#[tokio::test]
async fn an_unreachable_broker_is_a_503_with_retry_after_and_nothing_is_acknowledged() {
    let config = KafkaConfig::new(format!("127.0.0.1:{}", closed_port()), "pm-ingest-test");
    let producer = Producer::new(&config, Duration::from_secs(1)).expect("producer");
    let ingest = Ingest::spawn(Sink::kafka(producer, Topics::with_prefix("unreachable-"))).await;
    let body = order(
        "evt-down",
        "ord-down",
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    );

    for attempt in 1..=2 {
        let r = ingest.webhook(ORDERS, &body).await;
        // The second attempt is not a "duplicate": a failed send is not remembered.
        assert_eq!(r.status(), 503, "attempt {attempt}");
        assert!(
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|s| s.parse::<u32>().is_ok()),
            "attempt {attempt}"
        );
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["type"], "/problems/unavailable", "{problem}");
    }
    let metrics = ingest.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_webhooks_total{kind="order",result="accepted"}"#
        ),
        0
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_rejections_total{reason="downstream_unavailable"}"#
        ),
        2,
        "{metrics}"
    );
    assert_eq!(ingest.get("/health/ready").await.status(), 503);
}

#[tokio::test]
async fn readiness_reports_a_reachable_broker() {
    let (ingest, _) = kafka_ingest().await;
    let r = ingest.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    let health: Value = r.json().await.expect("json");
    assert_eq!(health["checks"]["kafka"], "ok", "{health}");
}
