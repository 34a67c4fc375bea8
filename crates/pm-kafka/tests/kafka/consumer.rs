//! The consumer loop: ordering, error classes, DLQ, commits, shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pm_kafka::dlq::header;
use pm_kafka::{KafkaConfig, Producer, Topics};
use rdkafka::message::Message;

use crate::harness::{eventually, header, metric_total, Env, Recorder};

#[tokio::test]
async fn order_is_kept_per_key_across_concurrent_partitions() {
    let env = Env::new(3).await;
    let keys: Vec<String> = (0..12).map(|k| format!("user-{k}")).collect();
    for seq in 0..25 {
        for k in &keys {
            env.send(&env.topics.orders, k, &format!("{k}:{seq}")).await;
        }
    }
    let rec = Arc::new(Recorder::default());
    let (stop, task) = env.start(env.settings("order"), rec.clone(), env.producer.clone());
    eventually("all 300 applied", || {
        rec.applied.lock().expect("lock").len() >= 300
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    let applied = rec.applied.lock().expect("lock");
    let mut last: HashMap<String, i32> = HashMap::new();
    let mut partitions = std::collections::HashSet::new();
    for m in applied.iter() {
        let text = String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default()).into_owned();
        let (key, seq) = text.split_once(':').expect("key:seq");
        let seq: i32 = seq.parse().expect("seq");
        let prev = last.insert(key.to_owned(), seq);
        assert_eq!(prev.map_or(0, |p| p + 1), seq, "{key} out of order");
        partitions.insert(m.partition);
    }
    assert_eq!(applied.len(), 300);
    assert!(partitions.len() > 1, "keys spread over several partitions");
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dlq_with_headers_and_does_not_block_the_partition() {
    let env = Env::new(1).await;
    for p in ["a", "poison", "b"] {
        env.send(&env.topics.orders, "user-1", p).await;
    }
    let rec = Arc::new(Recorder::default());
    rec.script
        .lock()
        .expect("lock")
        .reject
        .push("poison".to_owned());
    let (stop, task) = env.start(env.settings("poison"), rec.clone(), env.producer.clone());
    eventually("a and b applied", || {
        rec.applied.lock().expect("lock").len() >= 2
    })
    .await;
    let dlq = Topics::dlq(&env.topics.orders);
    let mut dead = Vec::new();
    eventually("the dead letter", || {
        dead = env.read_all(&dlq);
        !dead.is_empty()
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    let m = &dead[0];
    assert_eq!(m.key(), Some(&b"user-1"[..]));
    assert_eq!(m.payload(), Some(&b"poison"[..]));
    assert_eq!(header(m, header::ERROR_CLASS).as_deref(), Some("permanent"));
    assert_eq!(
        header(m, header::ERROR).as_deref(),
        Some("cannot decode poison")
    );
    assert_eq!(header(m, header::ATTEMPTS).as_deref(), Some("1"));
    assert_eq!(
        header(m, header::ORIGINAL_TOPIC).as_deref(),
        Some(env.topics.orders.as_str())
    );
    assert_eq!(header(m, header::ORIGINAL_PARTITION).as_deref(), Some("0"));
    assert_eq!(header(m, header::ORIGINAL_OFFSET).as_deref(), Some("1"));
    assert!(header(m, header::FIRST_FAILED_AT).is_some());
    assert_eq!(header(m, "x-correlation-id").as_deref(), Some("corr-1"));
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn retryable_messages_get_bounded_attempts_then_the_dlq() {
    let env = Env::new(1).await;
    for p in ["late-but-ok", "never", "after"] {
        env.send(&env.topics.orders, "user-1", p).await;
    }
    let rec = Arc::new(Recorder::default());
    {
        let mut s = rec.script.lock().expect("lock");
        s.retry.insert("late-but-ok".to_owned(), 2); // succeeds on the 3rd attempt
        s.retry.insert("never".to_owned(), u32::MAX);
    }
    let (stop, task) = env.start(env.settings("retry"), rec.clone(), env.producer.clone());
    eventually("two applied", || {
        rec.applied.lock().expect("lock").len() >= 2
    })
    .await;
    let dlq = Topics::dlq(&env.topics.orders);
    let mut dead = Vec::new();
    eventually("the dead letter", || {
        dead = env.read_all(&dlq);
        !dead.is_empty()
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload(), Some(&b"never"[..]));
    assert_eq!(
        header(&dead[0], header::ERROR_CLASS).as_deref(),
        Some("retryable")
    );
    assert_eq!(header(&dead[0], header::ATTEMPTS).as_deref(), Some("3"));
    let applied: Vec<_> = rec
        .applied
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(
        applied,
        [Some(b"late-but-ok".to_vec()), Some(b"after".to_vec())]
    );
}

#[tokio::test]
async fn transient_failures_wait_without_dead_lettering() {
    let env = Env::new(1).await;
    env.send(&env.topics.orders, "user-1", "x").await;
    let rec = Arc::new(Recorder::default());
    rec.script.lock().expect("lock").transient_calls = 6;
    let (stop, task) = env.start(env.settings("transient"), rec.clone(), env.producer.clone());
    eventually("applied after the outage", || {
        rec.applied.lock().expect("lock").len() == 1
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    assert!(*rec.calls.lock().expect("lock") >= 7);
    assert!(
        env.read_all(&Topics::dlq(&env.topics.orders)).is_empty(),
        "transient errors are never dead-lettered"
    );
}

#[tokio::test]
async fn offsets_are_committed_only_after_processing() {
    let env = Env::new(1).await;
    for p in ["1", "2", "3"] {
        env.send(&env.topics.orders, "user-1", p).await;
    }
    // First run: every call fails transiently, then we stop it: nothing may be committed.
    let stuck = Arc::new(Recorder::default());
    stuck.script.lock().expect("lock").transient_calls = u32::MAX;
    let (stop, task) = env.start(env.settings("commit"), stuck.clone(), env.producer.clone());
    eventually("the stuck consumer got the batch", || {
        *stuck.calls.lock().expect("lock") >= 2
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    assert!(stuck.applied.lock().expect("lock").is_empty());

    // Second run of the same group: everything is delivered again and applied.
    let rec = Arc::new(Recorder::default());
    let (stop, task) = env.start(env.settings("commit"), rec.clone(), env.producer.clone());
    eventually("redelivered and applied", || {
        rec.applied.lock().expect("lock").len() == 3
    })
    .await;
    stop.cancel();
    task.await.expect("task");

    // Third run: all was committed, nothing comes again.
    env.send(&env.topics.orders, "user-1", "4").await;
    let third = Arc::new(Recorder::default());
    let (stop, task) = env.start(env.settings("commit"), third.clone(), env.producer.clone());
    // A redelivered 1, 2 or 3 would precede 4 in the partition: once 4 is applied, anything
    // uncommitted would already have been applied too.
    eventually("the new message", || {
        !third.applied.lock().expect("lock").is_empty()
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    let payloads: Vec<_> = third
        .applied
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(payloads, [Some(b"4".to_vec())]);
}

#[tokio::test]
async fn a_failed_dlq_publish_never_lets_the_offset_move() {
    let env = Env::new(1).await;
    env.send(&env.topics.orders, "user-1", "poison").await;
    // A DLQ producer whose broker is unreachable: the dead letter cannot be stored.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let broken = Producer::new(
        &KafkaConfig::new(format!("127.0.0.1:{closed}"), "broken"),
        Duration::from_millis(500),
    )
    .expect("producer");
    let rec = Arc::new(Recorder::default());
    rec.script
        .lock()
        .expect("lock")
        .reject
        .push("poison".to_owned());
    let (stop, task, metrics) = env.start_measured(env.settings("dlq-down"), rec.clone(), broken);
    // Stop only after publishing the dead letter has failed (more than once), so the test
    // shows that a failed publish leaves the offset where it was.
    eventually("dead-letter publishes failing", || {
        metric_total(&metrics.render(), "kafka_dlq_publish_failures_total") >= 2
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    assert!(env.read_all(&Topics::dlq(&env.topics.orders)).is_empty());

    // With a working DLQ the same group gets the message again and dead-letters it.
    let again = Arc::new(Recorder::default());
    again
        .script
        .lock()
        .expect("lock")
        .reject
        .push("poison".to_owned());
    let (stop, task) = env.start(
        env.settings("dlq-down"),
        again.clone(),
        env.producer.clone(),
    );
    let mut dead = Vec::new();
    eventually("dead-lettered after all", || {
        dead = env.read_all(&Topics::dlq(&env.topics.orders));
        !dead.is_empty()
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    assert_eq!(dead.len(), 1);
}
