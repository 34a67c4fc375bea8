//! The at-least-once consumer loop.
//!
//! One consumer per topic (its own group). Its receive loop routes each message to a worker
//! task of its partition, so partitions are processed concurrently while each partition's
//! messages are handled strictly in order. A worker takes what has arrived (up to a batch
//! size), hands the batch to the [`Handler`] — which applies it in one database
//! transaction — and only then commits the partition's offset. Automatic commits are off:
//! librdkafka would otherwise commit what was fetched rather than what was applied.
//!
//! Error classes (PRODUCT.md §4):
//! - a transient failure ([`Transient`]: database down, serialization failure, timeout)
//!   retries the whole batch with capped exponential backoff, without limit and without
//!   dead-lettering — the partition waits;
//! - [`Outcome::Retry`] (e.g. a chargeback whose order is not known yet) is retried alone a
//!   bounded number of times, then dead-lettered; the messages after it in its partition
//!   wait ([`Outcome::Skipped`]), so per-key order holds even then;
//! - [`Outcome::Reject`] (undecodable, invalid) is dead-lettered at once.
//!
//! A dead letter is published (and acknowledged by the broker) before the offset moves
//! past it; a failed publish is retried and blocks the commit. On shutdown, workers finish
//! the batch in hand, commit, and stop; messages fetched but not processed are simply
//! fetched again by the next owner of the partition.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dlq::{DeadLetterInfo, ErrorClass};
use crate::metrics::{ConsumerMetrics, OutcomeLabels, PartitionLabels, TopicLabels};
use crate::producer::Producer;
use crate::topics::Topics;
use crate::{headers, KafkaConfig, KafkaError};

/// A message as a worker sees it (owned, so it can cross tasks).
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Received {
    fn from_message(m: &BorrowedMessage<'_>) -> Self {
        Received {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: headers::pairs(m.headers()),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or recognised as a duplicate): its effects are committed.
    Done,
    /// Could not be applied yet and nothing of it was stored; try again later.
    Retry(String),
    /// Can never be applied as it is; nothing of it was stored.
    Reject(String),
    /// Not attempted because an earlier message of the batch must be retried first:
    /// nothing of it was stored, and it is handed over again after that retry, so the
    /// partition's order holds.
    Skipped,
}

/// A failure of the whole batch that is worth retrying as it is; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient(pub String);

/// Applies batches of one partition's messages.
pub trait Handler: Send + Sync + 'static {
    /// Applies `batch` atomically and returns one outcome per message, in order. On
    /// `Err`, nothing of the batch may have been stored.
    fn handle(
        &self,
        batch: &[Received],
    ) -> impl Future<Output = Result<Vec<Outcome>, Transient>> + Send;
}

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub topic: String,
    pub group: String,
    /// Most messages applied in one transaction.
    pub batch_size: usize,
    /// Attempts for a message whose outcome is [`Outcome::Retry`] before it is dead-lettered.
    pub retry_attempts: u32,
    /// First backoff of those retries (doubling, with jitter).
    pub retry_backoff: Duration,
    /// Cap of the backoff for transient errors and DLQ publishing.
    pub max_backoff: Duration,
}

impl ConsumerSettings {
    pub fn new(topic: impl Into<String>, group: impl Into<String>) -> Self {
        ConsumerSettings {
            topic: topic.into(),
            group: group.into(),
            batch_size: 100,
            retry_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Exponential backoff with ±25 % jitter: `initial × 2^(attempt-1)`, capped.
pub fn backoff(initial: Duration, attempt: u32, cap: Duration) -> Duration {
    let base = initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
        .min(cap);
    let jitter = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
}

struct Context {
    lag: ConsumerMetrics,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    let labels = PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    self.lag.lag.get_or_create(&labels).set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {}

type Offsets = Arc<Mutex<HashMap<i32, i64>>>;

/// A partition's worker: its queue (messages with their arrival time) and its task.
type Worker = (mpsc::Sender<(Received, Instant)>, JoinHandle<()>);

struct Shared<H> {
    settings: ConsumerSettings,
    handler: Arc<H>,
    consumer: Arc<StreamConsumer<Context>>,
    dlq: Producer,
    metrics: ConsumerMetrics,
    processed: Offsets,
    shutdown: CancellationToken,
}

/// Runs one consumer until `shutdown` is cancelled, then drains and commits.
pub async fn run<H: Handler>(
    config: &KafkaConfig,
    settings: ConsumerSettings,
    handler: Arc<H>,
    dlq: Producer,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer<Context> = config
        .client()
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .create_with_context(Context {
            lag: metrics.clone(),
        })?;
    consumer.subscribe(&[&settings.topic])?;
    let consumer = Arc::new(consumer);
    let shared = Arc::new(Shared {
        settings,
        handler,
        consumer: consumer.clone(),
        dlq,
        metrics,
        processed: Arc::default(),
        shutdown: shutdown.clone(),
    });
    tracing::info!(topic = %shared.settings.topic, group = %shared.settings.group, "consumer started");

    let mut workers: HashMap<i32, Worker> = HashMap::new();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let received = Received::from_message(&m);
                drop(m);
                let partition = received.partition;
                let (tx, _) = workers.entry(partition).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(1024);
                    (tx, tokio::spawn(worker(shared.clone(), partition, rx)))
                });
                // Blocks when this partition's worker is far behind: backpressure.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = tx.send((received, Instant::now())) => if sent.is_err() { break },
                }
            }
            Err(e) => {
                tracing::warn!(topic = %shared.settings.topic, error = %e, "consumer error");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }

    // Stop: workers finish the batch in hand, then everything processed is committed.
    for (_, (tx, handle)) in workers {
        drop(tx);
        let _ = handle.await;
    }
    let processed: Vec<(i32, i64)> = shared
        .processed
        .lock()
        .map(|p| p.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in processed {
        tpl.add_partition_offset(&shared.settings.topic, partition, Offset::Offset(next))?;
    }
    // The final commit and closing the consumer talk to the broker and block; with the broker
    // gone they can block for a long time. They run on a blocking thread with a deadline, so
    // shutdown finishes either way (what was not committed is delivered again: at least once).
    let topic = shared.settings.topic.clone();
    drop(shared);
    let close = tokio::task::spawn_blocking(move || {
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed; the last batches will be delivered again");
            }
        }
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(10), close)
        .await
        .is_err()
    {
        tracing::warn!(
            "the final commit did not finish in 10 s; the last batches will be delivered again"
        );
    }
    tracing::info!(topic = %topic, "consumer stopped");
    Ok(())
}

/// Interrupted by shutdown before the batch was complete: nothing may be committed.
struct Interrupted;

async fn worker<H: Handler>(
    shared: Arc<Shared<H>>,
    partition: i32,
    mut rx: mpsc::Receiver<(Received, Instant)>,
) {
    loop {
        let first = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < shared.settings.batch_size {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let arrived: Vec<Instant> = batch.iter().map(|(_, t)| *t).collect();
        let messages: Vec<Received> = batch.into_iter().map(|(m, _)| m).collect();
        if process(&shared, &messages).await.is_err() {
            return;
        }
        let Some(last) = messages.last() else {
            continue;
        };
        commit(&shared, partition, last.offset + 1);
        let labels = TopicLabels {
            topic: shared.settings.topic.clone(),
        };
        let histogram = shared.metrics.latency.get_or_create(&labels);
        for t in arrived {
            histogram.observe(t.elapsed().as_secs_f64());
        }
    }
}

fn commit<H>(shared: &Shared<H>, partition: i32, next: i64) {
    if let Ok(mut p) = shared.processed.lock() {
        p.insert(partition, next);
    }
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&shared.settings.topic, partition, Offset::Offset(next))
        .is_ok()
    {
        if let Err(e) = shared.consumer.commit(&tpl, CommitMode::Async) {
            // The next commit (or the final one) covers it; until then a restart redelivers.
            tracing::warn!(partition, error = %e, "offset commit failed");
        }
    }
}

/// Sleeps unless shutdown comes first.
async fn pause<H>(shared: &Shared<H>, d: Duration) -> Result<(), Interrupted> {
    tokio::select! {
        () = shared.shutdown.cancelled() => Err(Interrupted),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

/// Applies a batch, retrying transient failures until they pass.
async fn apply_until_not_transient<H: Handler>(
    shared: &Shared<H>,
    batch: &[Received],
) -> Result<Vec<Outcome>, Interrupted> {
    let mut attempt = 0;
    loop {
        match shared.handler.handle(batch).await {
            Ok(outcomes) if outcomes.len() == batch.len() => return Ok(outcomes),
            Ok(outcomes) => {
                // A handler bug; treat as transient rather than lose or skip messages.
                tracing::error!(
                    expected = batch.len(),
                    got = outcomes.len(),
                    "handler returned the wrong number of outcomes"
                );
            }
            Err(Transient(e)) => {
                shared
                    .metrics
                    .transient
                    .get_or_create(&TopicLabels {
                        topic: shared.settings.topic.clone(),
                    })
                    .inc();
                tracing::warn!(topic = %shared.settings.topic, error = %e, attempt, "transient failure; the partition waits and retries");
            }
        }
        attempt += 1;
        pause(
            shared,
            backoff(
                Duration::from_millis(100),
                attempt,
                shared.settings.max_backoff,
            ),
        )
        .await?;
    }
}

async fn process<H: Handler>(shared: &Shared<H>, batch: &[Received]) -> Result<(), Interrupted> {
    let mut rest = batch;
    while !rest.is_empty() {
        let outcomes = apply_until_not_transient(shared, rest).await?;
        let mut handled = 0;
        for (message, outcome) in rest.iter().zip(outcomes) {
            let first_failed_at = Utc::now();
            let failure = match outcome {
                Outcome::Skipped => break,
                Outcome::Done => {
                    count(shared, "done");
                    None
                }
                Outcome::Reject(e) => Some((ErrorClass::Permanent, e, 1)),
                Outcome::Retry(e) => retry_alone(shared, message, e).await?,
            };
            if let Some((class, error, attempts)) = failure {
                dead_letter(shared, message, class, &error, attempts, first_failed_at).await?;
            }
            handled += 1;
        }
        if handled == 0 {
            // A handler that skips the first message would loop; wait and ask again.
            tracing::error!(topic = %shared.settings.topic, "handler skipped the first message of a batch");
            pause(shared, shared.settings.max_backoff).await?;
        }
        rest = &rest[handled..];
    }
    Ok(())
}

/// Retries one message with backoff: `None` once it is done, otherwise how to dead-letter it.
async fn retry_alone<H: Handler>(
    shared: &Shared<H>,
    message: &Received,
    mut error: String,
) -> Result<Option<(ErrorClass, String, u32)>, Interrupted> {
    let mut attempts = 1;
    while attempts < shared.settings.retry_attempts {
        pause(
            shared,
            backoff(
                shared.settings.retry_backoff,
                attempts,
                shared.settings.max_backoff,
            ),
        )
        .await?;
        attempts += 1;
        match apply_until_not_transient(shared, std::slice::from_ref(message))
            .await?
            .pop()
        {
            Some(Outcome::Done) => {
                count(shared, "done");
                return Ok(None);
            }
            Some(Outcome::Retry(e)) => error = e,
            Some(Outcome::Reject(e)) => return Ok(Some((ErrorClass::Permanent, e, attempts))),
            Some(Outcome::Skipped) | None => {}
        }
    }
    Ok(Some((ErrorClass::Retryable, error, attempts)))
}

fn count<H>(shared: &Shared<H>, outcome: &'static str) {
    shared
        .metrics
        .processed
        .get_or_create(&OutcomeLabels {
            topic: shared.settings.topic.clone(),
            outcome,
        })
        .inc();
}

/// Publishes a dead letter, retrying until the broker has it (or shutdown).
async fn dead_letter<H: Handler>(
    shared: &Shared<H>,
    message: &Received,
    class: ErrorClass,
    error: &str,
    attempts: u32,
    first_failed_at: DateTime<Utc>,
) -> Result<(), Interrupted> {
    let info = DeadLetterInfo {
        error: error.to_owned(),
        class,
        attempts,
        original_topic: message.topic.clone(),
        original_partition: message.partition,
        original_offset: message.offset,
        first_failed_at,
    };
    let dlq_topic = Topics::dlq(&message.topic);
    let key = message.key.as_deref().unwrap_or_default();
    let payload = message.payload.as_deref().unwrap_or_default();
    let mut attempt = 0;
    loop {
        match shared
            .dlq
            .send(&dlq_topic, key, payload, info.headers(&message.headers))
            .await
        {
            Ok(stored) => {
                tracing::warn!(
                    topic = %message.topic, partition = message.partition, offset = message.offset,
                    class = class.as_str(), attempts, error, dlq_offset = stored.offset,
                    correlation_id = message.header(headers::CORRELATION_ID).unwrap_or(""),
                    "message dead-lettered"
                );
                let labels = OutcomeLabels {
                    topic: message.topic.clone(),
                    outcome: class.as_str(),
                };
                shared.metrics.dlq.get_or_create(&labels).inc();
                count(shared, "dead_lettered");
                return Ok(());
            }
            Err(e) => {
                attempt += 1;
                let labels = TopicLabels {
                    topic: dlq_topic.clone(),
                };
                shared.metrics.dlq_failures.get_or_create(&labels).inc();
                tracing::error!(topic = %dlq_topic, error = %e, attempt, "cannot publish a dead letter; the offset stays until it is stored");
                pause(
                    shared,
                    backoff(
                        Duration::from_millis(200),
                        attempt,
                        shared.settings.max_backoff,
                    ),
                )
                .await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let initial = Duration::from_millis(100);
        for attempt in 1..6u32 {
            let d = backoff(initial, attempt, Duration::from_secs(10));
            let base = 100.0 * 2f64.powi(attempt as i32 - 1);
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms >= base * 0.75 - 1.0 && ms <= base * 1.25 + 1.0,
                "attempt {attempt}: {ms}"
            );
        }
        assert!(backoff(initial, 60, Duration::from_secs(1)) <= Duration::from_millis(1250));
    }
}
