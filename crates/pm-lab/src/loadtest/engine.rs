//! The open-model engine: one step at a fixed arrival rate.
//!
//! A scheduler task walks the [`Schedule`]: for request `i` it sleeps until
//! `start + i / rate` and hands the request, stamped with that *intended* time, to a pool
//! of `connections` workers through a bounded queue. Each worker owns one HTTP/1.1
//! keep-alive connection and sends one request at a time.
//!
//! **Latency is measured from the intended time**, never from when the request was
//! actually sent: `latency = response received − intended send time`. When the server is
//! slow, requests wait — in the queue, or behind a full queue that holds the scheduler back
//! — and that wait is part of their latency, as it would be for a real provider whose
//! webhooks keep coming. A closed-loop generator (one that waits for an answer before
//! sending the next request) would record only the service time and hide the queueing:
//! coordinated omission. The scheduler's own lateness (tokio timers have about 1 ms of
//! resolution, so requests leave in small batches) is counted too, which makes the numbers
//! slightly pessimistic, never optimistic.
//!
//! What happens to a request that cannot start on time:
//! * **late**: a worker took it more than [`EngineConfig::late_after`] after its intended
//!   time. It is still sent, and recorded with its full delay.
//! * **dropped**: a worker took it more than [`EngineConfig::give_up_after`] after its
//!   intended time (the system is hopelessly behind). It is not sent and records nothing
//!   in the histogram; the requests before it, which waited almost as long, are recorded
//!   with that wait, so dropping cannot make the percentiles look better than they were.
//!   Dropping keeps an overloaded step from running on for minutes after its schedule ends.
//!
//! Every request that was sent is in the histogram: answered ones with their response time,
//! failed ones (timeout, connection error) with the time they failed at. Only measured
//! requests (after the warm-up) are recorded and counted; warm-up requests are sent all the
//! same and count for the expected database state.
//!
//! A chargeback answered `404` (its order is not stored yet: with many connections, a
//! chargeback can overtake its order's `success`) is retried in the background like a
//! provider would (up to [`retry::ATTEMPTS`] times, backing off from 100 ms); retries are
//! counted, never recorded as latencies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pm_scenario::{Delivery, Route};
use serde::{Deserialize, Serialize};

use crate::loadtest::schedule::Schedule;
use crate::LabError;

mod retry;
mod worker;

pub use worker::LagSample;

/// How requests are sent.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where webhooks go: ingest or the API, e.g. `http://127.0.0.1:3001`.
    pub target: String,
    /// The webhook signing secret.
    pub secret: Vec<u8>,
    /// Workers, each with one keep-alive connection.
    pub connections: usize,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
    /// A request taken by a worker later than this after its intended time is *late*.
    pub late_after: Duration,
    /// A request taken later than this is *dropped* (not sent).
    pub give_up_after: Duration,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("target", &self.target)
            .field("secret", &"[redacted]")
            .field("connections", &self.connections)
            .field("request_timeout", &self.request_timeout)
            .field("late_after", &self.late_after)
            .field("give_up_after", &self.give_up_after)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            target: "http://127.0.0.1:3001".to_owned(),
            secret: Vec::new(),
            connections: 64,
            request_timeout: Duration::from_secs(10),
            late_after: Duration::from_millis(5),
            give_up_after: Duration::from_secs(10),
        }
    }
}

/// Why a request failed without an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be made, or broke.
    Connect,
    /// Anything else.
    Other,
}

impl Failure {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect => "connect",
            Failure::Other => "other",
        }
    }
}

/// The final answer to one request of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Never handed to a worker (the step was cut short).
    NotSent,
    /// Dropped: no worker could start it in time.
    Dropped,
    /// An HTTP status (after retries, for retried chargebacks).
    Status(u16),
    /// Sent, but no answer.
    Failed(Failure),
}

impl Answer {
    /// `200` or `202`: the webhook is (or already was) stored.
    pub fn is_accepted(self) -> bool {
        matches!(self, Answer::Status(200 | 202))
    }
}

/// Counts of the measured requests of a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Measured requests in the schedule.
    pub scheduled: u64,
    /// Sent (answered or failed).
    pub sent: u64,
    /// Answered with any status.
    pub completed: u64,
    /// First answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer, by why.
    pub failures: BTreeMap<Failure, u64>,
    /// Taken by a worker more than `late_after` after the intended time (still sent).
    pub late: u64,
    /// Not sent: no worker could start them within `give_up_after`.
    pub dropped: u64,
    /// Chargebacks answered 404 and retried in the background.
    pub retried: u64,
    /// Retry requests made for them.
    pub retries: u64,
    /// Final answers that differ from what the scenario expects (a real webhook not
    /// accepted, a bad one not rejected with its status, no answer at all).
    pub unexpected: u64,
}

impl Counters {
    /// Answered `200` or `202`.
    pub fn accepted(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
            + self.statuses.get(&202).copied().unwrap_or(0)
    }

    /// Answered with another status.
    pub fn rejected(&self) -> u64 {
        self.completed - self.accepted()
    }

    /// Sent without an answer.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn add(&mut self, other: &Counters) {
        self.scheduled += other.scheduled;
        self.sent += other.sent;
        self.completed += other.completed;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(*k).or_default() += v;
        }
        self.late += other.late;
        self.dropped += other.dropped;
        self.retried += other.retried;
        self.retries += other.retries;
        self.unexpected += other.unexpected;
    }
}

/// Counters a progress display reads while a step runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests handed to the HTTP client.
    pub sent: AtomicU64,
    /// Requests answered or failed.
    pub done: AtomicU64,
    /// Requests dropped.
    pub dropped: AtomicU64,
}

impl Live {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.done.load(Ordering::Relaxed))
    }
}

/// Where sampled accepted webhooks are announced, for the lag poller.
#[derive(Debug, Clone)]
pub struct LagTap {
    /// `sampled[i]`: announce request `i` once it is accepted.
    pub sampled: Arc<Vec<bool>>,
    /// The poller's inbox.
    pub tx: tokio::sync::mpsc::UnboundedSender<LagSample>,
}

/// What a step measured.
#[derive(Debug)]
pub struct StepRun {
    /// Its schedule.
    pub schedule: Schedule,
    /// Latencies of the measured requests, in microseconds from their intended time.
    pub latency: Histogram<u64>,
    /// Counts of the measured requests.
    pub counters: Counters,
    /// Warm-up requests sent.
    pub warmup_sent: u64,
    /// The final answer to every request of the step, warm-up included.
    pub answers: Vec<Answer>,
    /// From the start of the measured period to the last answer of a measured request.
    pub measured_elapsed: Duration,
}

impl StepRun {
    /// Measured requests answered per second of [`StepRun::measured_elapsed`].
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.measured_elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counters.completed as f64 / secs
        } else {
            0.0
        }
    }
}

/// One request handed to a worker.
#[derive(Debug, Clone, Copy)]
struct Job {
    index: u32,
    due: Instant,
}

/// Runs one step: `deliveries[i]` is sent at `schedule.offset(i)`.
pub async fn run_step(
    config: &EngineConfig,
    schedule: Schedule,
    deliveries: Arc<Vec<Delivery>>,
    live: Arc<Live>,
    lag: Option<LagTap>,
) -> Result<StepRun, LabError> {
    let total = schedule.total();
    if (deliveries.len() as u64) < total {
        return Err(LabError::Invalid(format!(
            "{} deliveries for a schedule of {total}",
            deliveries.len()
        )));
    }
    if config.connections == 0 {
        return Err(LabError::Invalid(
            "at least one connection is needed".to_owned(),
        ));
    }
    let urls = Arc::new(worker::Urls::new(&config.target)?);
    let secret: Arc<[u8]> = config.secret.clone().into();
    let (retrier, retries) = retry::Retrier::new(
        client(config, config.connections)?,
        urls.clone(),
        deliveries.clone(),
        secret.clone(),
    );
    // Workers start a moment later than now, so they are all waiting when the first is due.
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + schedule.offset(schedule.warmup_count());
    let (tx, rx) = flume::bounded::<Job>(config.connections);
    let mut workers = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let w = worker::Worker {
            client: client(config, 1)?,
            urls: urls.clone(),
            secret: secret.clone(),
            deliveries: deliveries.clone(),
            schedule,
            late_after: config.late_after,
            give_up_after: config.give_up_after,
            live: live.clone(),
            lag: lag.clone(),
            retrier: retrier.clone(),
        };
        workers.push(tokio::spawn(w.run(rx.clone())));
    }
    drop(rx);
    drop(lag);
    let scheduler = tokio::spawn(schedule_jobs(start, schedule, tx));

    let mut latency = crate::loadtest::latency::new_histogram()?;
    let mut counters = Counters {
        scheduled: schedule.measured(),
        ..Counters::default()
    };
    let mut answers = vec![Answer::NotSent; total as usize];
    let mut warmup_sent = 0;
    let mut last_done = None;
    scheduler.await?;
    for w in workers {
        let tally = w.await??;
        latency
            .add(&tally.latency)
            .map_err(|e| LabError::Histogram(format!("cannot merge: {e:?}")))?;
        counters.add(&tally.counters);
        warmup_sent += tally.warmup_sent;
        last_done = last_done.max(tally.last_done);
        for (i, a) in tally.answers {
            answers[i as usize] = a;
        }
    }
    drop(retrier);
    for retried in retries.finish().await {
        answers[retried.index as usize] = retried.answer;
        if schedule.is_measured(u64::from(retried.index)) {
            counters.retried += 1;
            counters.retries += u64::from(retried.attempts);
        }
    }
    counters.unexpected = (schedule.warmup_count()..total)
        .filter(|&i| unexpected(&deliveries[i as usize], answers[i as usize]))
        .count() as u64;
    Ok(StepRun {
        schedule,
        latency,
        counters,
        warmup_sent,
        answers,
        measured_elapsed: last_done.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_from)
        }),
    })
}

/// Whether a final answer is not what the scenario expects (dropped requests are counted
/// apart).
fn unexpected(d: &Delivery, a: Answer) -> bool {
    match a {
        Answer::Status(s) => !d.expect.matches(s),
        Answer::Failed(_) => true,
        Answer::NotSent | Answer::Dropped => false,
    }
}

/// The scheduler: hands request `i` over at `start + offset(i)`, stamped with that time.
/// A full queue holds it back; the stamp stays, so the wait counts in the latency.
async fn schedule_jobs(start: Instant, schedule: Schedule, tx: flume::Sender<Job>) {
    for i in 0..schedule.total() {
        let due = start + schedule.offset(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(index) = u32::try_from(i) else { break };
        if tx.send_async(Job { index, due }).await.is_err() {
            break;
        }
    }
}

/// An HTTP/1.1 client keeping `connections` idle connections.
fn client(config: &EngineConfig, connections: usize) -> Result<reqwest::Client, LabError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(config.request_timeout)
        .build()
        .map_err(LabError::Client)
}

/// The route of a delivery, for retries.
fn is_chargeback(d: &Delivery) -> bool {
    d.route == Route::Chargebacks
}
