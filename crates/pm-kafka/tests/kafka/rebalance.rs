//! Group changes and backpressure on Apache Kafka: members joining and leaving mid-stream,
//! and a blocked partition that must not hold up the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{eventually, metric_total, Env, Recorder};

/// Sends `per_key` messages `key:seq` for each key, seq counting on from `from`.
async fn send_round(env: &Env, keys: &[String], from: u32, per_key: u32) {
    for seq in from..from + per_key {
        for k in keys {
            env.send(&env.topics.orders, k, &format!("{k}:{seq}")).await;
        }
    }
}

/// Every payload applied exactly once, and each key's sequence applied in order.
fn assert_once_and_in_order(applied: &[String], expected: usize) {
    let unique: HashSet<&String> = applied.iter().collect();
    assert_eq!(unique.len(), applied.len(), "a message was applied twice");
    assert_eq!(applied.len(), expected);
    let mut last: HashMap<&str, u32> = HashMap::new();
    for text in applied {
        let (key, seq) = text.split_once(':').expect("key:seq");
        let seq: u32 = seq.parse().expect("seq");
        let prev = last.insert(key, seq);
        assert_eq!(prev.map_or(0, |p| p + 1), seq, "{key} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_mid_stream_keep_order_and_apply_each_message_once() {
    let env = Env::new(6).await;
    let keys: Vec<String> = (0..24).map(|k| format!("user-{k}")).collect();
    send_round(&env, &keys, 0, 10).await;
    // One recorder for the whole group: its log is the order in which the group applied.
    let rec = Arc::new(Recorder::default());
    *rec.delay.lock().expect("lock") = Duration::from_millis(5);
    let settings = || {
        let mut s = env.settings("group");
        s.batch_size = 10;
        s
    };

    let (stop_a, task_a, metrics_a) =
        env.start_measured(settings(), rec.clone(), env.producer.clone());
    eventually("A applies part of the backlog", || {
        rec.applied.lock().expect("lock").len() >= 40
    })
    .await;
    // B joins: partitions move from A to B while A is busy.
    let (stop_b, task_b) = env.start(settings(), rec.clone(), env.producer.clone());
    send_round(&env, &keys, 10, 10).await;
    eventually("the group applies more", || {
        rec.applied.lock().expect("lock").len() >= 300
    })
    .await;
    // A leaves cleanly: its partitions go to B, then C joins and takes some.
    stop_a.cancel();
    task_a.await.expect("A");
    let (stop_c, task_c) = env.start(settings(), rec.clone(), env.producer.clone());
    send_round(&env, &keys, 20, 10).await;
    // Each key's last message applied: a repeat of anything before it in its partition
    // would have been applied before it, so the log is complete.
    eventually("every key's last message applied", || {
        let applied = rec.payloads();
        keys.iter().all(|k| applied.contains(&format!("{k}:29")))
    })
    .await;
    stop_b.cancel();
    stop_c.cancel();
    task_b.await.expect("B");
    task_c.await.expect("C");

    assert_once_and_in_order(&rec.payloads(), 720);
    assert!(
        metric_total(&metrics_a.render(), "kafka_partitions_revoked_total") >= 1,
        "A saw its partitions revoked when B joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_partition_is_paused_without_holding_up_the_others() {
    let env = Env::new(3).await;
    // Find a key per partition.
    let mut key_of: HashMap<i32, String> = HashMap::new();
    for k in 0..64 {
        let key = format!("user-{k}");
        let p = env.send_to(&env.topics.orders, &key, "probe").await;
        key_of.entry(p).or_insert(key);
        if key_of.len() == 3 {
            break;
        }
    }
    assert_eq!(key_of.len(), 3, "keys for every partition");
    let blocked = key_of[&0].clone();
    let rec = Arc::new(Recorder::default());
    rec.blocked.lock().expect("lock").insert(blocked.clone());
    let mut settings = env.settings("backpressure");
    settings.batch_size = 5;
    settings.max_queued = Some(10);
    let (stop, task, metrics) = env.start_measured(settings, rec.clone(), env.producer.clone());

    for seq in 0..100 {
        for key in key_of.values() {
            env.send(&env.topics.orders, key, &format!("{key}:{seq}"))
                .await;
        }
    }
    let others: Vec<&String> = key_of.values().filter(|k| **k != blocked).collect();
    eventually(
        "the other partitions are applied while one is blocked",
        || {
            let applied = rec.payloads();
            others
                .iter()
                .all(|k| applied.iter().any(|p| *p == format!("{k}:99")))
        },
    )
    .await;
    assert!(
        metric_total(&metrics.render(), "kafka_partition_pauses_total") >= 1,
        "the blocked partition was paused"
    );
    assert!(
        !rec.payloads()
            .iter()
            .any(|p| p.starts_with(&format!("{blocked}:"))),
        "nothing of the blocked key applied yet"
    );

    rec.blocked.lock().expect("lock").clear();
    eventually("the blocked partition catches up after resuming", || {
        rec.payloads().iter().any(|p| *p == format!("{blocked}:99"))
    })
    .await;
    stop.cancel();
    task.await.expect("task");
    let applied: Vec<String> = rec
        .payloads()
        .into_iter()
        .filter(|p| p != "probe")
        .collect();
    assert_once_and_in_order(&applied, 300);
}
