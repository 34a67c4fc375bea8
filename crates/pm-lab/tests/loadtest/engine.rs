//! The engine against servers of known speed. Nothing here asserts how fast anything is:
//! only lower bounds that the injected delays make certain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_lab::loadtest::engine::{run_step, Answer, EngineConfig, Live};
use pm_lab::loadtest::schedule::Schedule;

use crate::support::{deliveries, slow_server, SECRET};

fn config(target: String, connections: usize) -> EngineConfig {
    EngineConfig {
        target,
        secret: SECRET.to_vec(),
        connections,
        ..EngineConfig::default()
    }
}

#[tokio::test]
async fn latency_counts_from_the_intended_time_so_queueing_is_not_hidden() {
    // One connection, a server that takes 20 ms, and a request due every 5 ms: the
    // server can serve only a quarter of them on time, so they queue.
    let service = Duration::from_millis(20);
    let (target, _) = slow_server(service).await;
    let schedule = Schedule::new(200.0, Duration::ZERO, Duration::from_millis(500)).unwrap();
    let n = schedule.total();
    assert_eq!(n, 100);
    let run = run_step(
        &config(target, 1),
        schedule,
        deliveries(n),
        Arc::new(Live::default()),
        None,
    )
    .await
    .unwrap();
    assert_eq!((run.counters.sent, run.counters.dropped), (100, 0));
    assert_eq!(run.latency.len(), 100);
    // Every request took at least the service time…
    assert!(run.latency.min() >= 20_000, "min {} µs", run.latency.min());
    // …and request k cannot be answered before (k + 1) × 20 ms, though it was due at
    // k × 5 ms: its latency is at least 15 k + 20 ms. A closed-loop measurement would
    // report about 20 ms for all of them.
    let p50 = run.latency.value_at_percentile(50.0);
    assert!(p50 >= 750_000, "p50 {p50} µs hides the queueing");
    let max = run.latency.max();
    assert!(max >= 1_500_000, "max {max} µs hides the queueing");
    assert!(run.counters.late >= 90, "late {}", run.counters.late);
    assert_eq!(run.counters.accepted(), 100);
}

#[tokio::test]
async fn requests_that_cannot_start_in_time_are_dropped_and_not_recorded() {
    let (target, arrivals) = slow_server(Duration::from_millis(100)).await;
    let schedule = Schedule::new(100.0, Duration::ZERO, Duration::from_millis(500)).unwrap();
    let config = EngineConfig {
        give_up_after: Duration::from_millis(50),
        ..config(target, 1)
    };
    let run = run_step(
        &config,
        schedule,
        deliveries(50),
        Arc::new(Live::default()),
        None,
    )
    .await
    .unwrap();
    let c = &run.counters;
    // Request 1 is due at 10 ms; the only connection is busy until at least 100 ms.
    assert!(c.dropped >= 1, "nothing dropped");
    assert_eq!(c.sent + c.dropped, c.scheduled);
    assert_eq!(run.latency.len(), c.sent, "dropped requests record nothing");
    assert_eq!(c.completed, c.sent);
    let dropped = run
        .answers
        .iter()
        .filter(|a| **a == Answer::Dropped)
        .count() as u64;
    assert_eq!(dropped, c.dropped);
    assert_eq!(arrivals.lock().unwrap().len() as u64, c.sent);
    assert!(run.latency.min() >= 100_000);
}

#[tokio::test]
async fn no_request_leaves_before_its_intended_time_and_warmup_is_not_measured() {
    let (target, arrivals) = slow_server(Duration::ZERO).await;
    let rate = 400.0;
    let schedule =
        Schedule::new(rate, Duration::from_millis(250), Duration::from_millis(500)).unwrap();
    let traffic = deliveries(schedule.total());
    let called = Instant::now();
    let run = run_step(
        &config(target, 4),
        schedule,
        traffic.clone(),
        Arc::new(Live::default()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(run.counters.scheduled, 200);
    assert_eq!(run.warmup_sent, 100);
    assert_eq!(run.latency.len(), run.counters.sent);
    assert_eq!(run.counters.sent, 200);
    // The server saw each delivery no earlier than its slot (the engine starts at least
    // 20 ms after it was called).
    let mut index = std::collections::HashMap::new();
    for (i, d) in traffic.iter().take(300).enumerate() {
        if let Some(e) = &d.provider_event_id {
            index.entry(e.to_string()).or_insert(i);
        }
    }
    let arrivals = arrivals.lock().unwrap();
    let mut checked = 0;
    for (at, id) in arrivals.iter() {
        // Duplicates share an id: the first delivery of an id is the earliest slot.
        let Some(&i) = index.get(id) else { continue };
        let earliest = called + Duration::from_millis(20) + schedule.offset(i as u64);
        assert!(
            *at >= earliest,
            "delivery {i} arrived before its intended time"
        );
        checked += 1;
    }
    assert!(checked > 250, "{checked}");
}
