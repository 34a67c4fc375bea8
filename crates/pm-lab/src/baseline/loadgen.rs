//! An open-loop load generator: requests are due at fixed intervals whatever the server
//! does, and each latency is measured from when its request was *due*, not from when it
//! was sent — so a server that stalls is charged for the requests that queued behind the
//! stall (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::BenchError;

/// How long in-flight requests get to finish after the step's sending time is over.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A step passes only if it achieved at least this share of the offered rate.
const ACHIEVED_SHARE: f64 = 0.95;

/// One fixed-rate step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateStep {
    /// Requests per second offered (scheduled).
    pub offered_rps: f64,
    /// 2xx answers per second, over the time until the last answer.
    pub achieved_rps: f64,
    pub seconds: f64,
    /// Requests scheduled in the step.
    pub scheduled: u64,
    /// Requests that could not even be sent before the step's time was up.
    pub unsent: u64,
    /// Answers with the expected status.
    pub ok: u64,
    /// Other answers, transport errors and requests still unanswered after the drain.
    pub errors: u64,
    /// The errors by kind (`HTTP 401`, `connect: …`, …).
    #[serde(default)]
    pub error_kinds: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Whether the step was sustained: everything sent and answered, ≥ 95 % of the
    /// offered rate achieved, and p99 within the limit.
    pub sustained: bool,
}

/// One request body with its signature header (or none).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) body: Bytes,
    pub(crate) signature: String,
}

/// Offers `rate` requests per second for `duration`, at most `connections` in flight.
pub(crate) async fn step(
    client: &reqwest::Client,
    url: &str,
    requests: &[Request],
    rate: f64,
    duration: Duration,
    connections: usize,
    p99_limit: Duration,
) -> Result<RateStep, BenchError> {
    if requests.is_empty() || rate <= 0.0 || connections == 0 {
        return Err(BenchError::InvalidOptions(
            "a load step needs requests, a positive rate and at least one connection".into(),
        ));
    }
    let scheduled = (rate * duration.as_secs_f64()).floor() as u64;
    let permits = Arc::new(Semaphore::new(connections));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    // A little slack: timers fire on millisecond ticks, so the last requests of an
    // on-schedule generator can be due a hair before the end and sent a hair after it.
    let stop_sending = start + duration + duration / 10;
    let mut sent = 0u64;
    for k in 0..scheduled {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due).await;
        // All connections busy: wait (the request is late, and its latency says so).
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if Instant::now() >= stop_sending {
            break;
        }
        let Some(request) = requests.get(k as usize % requests.len()).cloned() else {
            break;
        };
        let call = client
            .post(url)
            .header("content-type", "application/json")
            .header(pm_domain::signature::HEADER, request.signature)
            .body(request.body);
        tasks.spawn(async move {
            let outcome = call.send().await;
            let latency = due.elapsed();
            drop(permit);
            let outcome = match outcome {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(describe(&e)),
            };
            (outcome, latency)
        });
        sent += 1;
    }

    let mut histogram = new_histogram()?;
    let mut ok = 0u64;
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((Ok(()), latency)) => {
                    ok += 1;
                    histogram.saturating_record(micros(latency));
                }
                Ok((Err(kind), latency)) => {
                    *error_kinds.entry(kind).or_default() += 1;
                    histogram.saturating_record(micros(latency));
                }
                Err(e) => *error_kinds.entry(format!("task: {e}")).or_default() += 1,
            }
        }
    })
    .await;
    if drained.is_err() {
        *error_kinds
            .entry("unanswered after the drain".into())
            .or_default() += tasks.len() as u64;
        tasks.abort_all();
    }
    let errors: u64 = error_kinds.values().sum();
    let seconds = start.elapsed().as_secs_f64().max(duration.as_secs_f64());
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let achieved_rps = ok as f64 / seconds;
    let unsent = scheduled - sent;
    let p99_ms = ms(0.99);
    Ok(RateStep {
        offered_rps: rate,
        achieved_rps,
        seconds,
        scheduled,
        unsent,
        ok,
        errors,
        error_kinds,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms,
        p999_ms: ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
        sustained: unsent == 0
            && errors == 0
            && achieved_rps >= ACHIEVED_SHARE * rate
            && p99_ms <= p99_limit.as_secs_f64() * 1000.0,
    })
}

/// A transport error with its innermost cause (`connection reset by peer`), which is what
/// tells a client problem from a server one.
fn describe(e: &reqwest::Error) -> String {
    let class = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{class}: {cause}")
}

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| BenchError::InvalidOptions(format!("histogram: {e}")))
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
