//! The at-least-once consumer.
//!
//! One consumer per topic (its own group). Its receive loop runs on a thread of its own
//! and routes each message to a worker task of its partition, so partitions are processed
//! concurrently while each partition's messages are handled strictly in order. A worker
//! takes what has arrived (up to a batch size), hands the batch to the [`Handler`] — which
//! applies it in one database transaction — and only then stores the partition's offset.
//! librdkafka's automatic offset *store* is off (it would store what was fetched rather
//! than what was applied); what we store is committed by librdkafka every half second,
//! and synchronously on revocation and shutdown. Committing after every batch instead
//! sent hundreds of commit requests a second under load: the group coordinator fell
//! behind, heartbeats queued behind the commits, and the member lost its partitions.
//!
//! Group changes ([`assignment`]): a worker runs only on a partition this member owns. On
//! revocation the revoked partitions' workers finish the batch in hand (bounded), their
//! offsets are committed and they are dropped, all before the partitions are handed over;
//! an assigned partition gets a fresh worker that starts from the committed offset. The
//! receive thread may block in those callbacks without stalling the workers, which run
//! on the async runtime. Assignment is cooperative-sticky: a member that joins or leaves
//! moves only the partitions that must move.
//!
//! Backpressure is per partition: a worker's queue that reaches
//! [`ConsumerSettings::max_queued`] pauses fetching for that partition only, and the worker
//! resumes it when the queue is down to half. The receive loop never waits on a worker.
//!
//! Error classes (PRODUCT.md §4):
//! - a transient failure ([`Transient`]: anything that is not the input's fault — the
//!   database down or read-only, a missing table, a revoked grant, a timeout) retries the
//!   whole batch with capped exponential backoff, without limit and without
//!   dead-lettering — the partition waits, and [`health`] reports it once it lasts;
//! - [`Outcome::Retry`] (e.g. a chargeback whose order is not known yet) is retried alone a
//!   bounded number of times, then dead-lettered; the messages after it in its partition
//!   wait ([`Outcome::Skipped`]), so per-key order holds even then;
//! - [`Outcome::Reject`] (undecodable, invalid) is dead-lettered at once.
//!
//! A dead letter is published (and acknowledged by the broker) before the offset moves
//! past it; a failed publish is retried and blocks the commit. On shutdown every worker
//! finishes the batch in hand, offsets are committed and the member leaves the group;
//! messages fetched but not processed are fetched again by the next owner.

pub mod assignment;
pub mod health;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use self::assignment::{Assignment, Context, Route};
pub use self::health::ConsumerHealth;
use self::worker::Shared;
use crate::metrics::{ConsumerMetrics, TopicLabels};
use crate::producer::Producer;
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
    /// When the message was produced (its Kafka timestamp), if it has one.
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
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
            timestamp: m
                .timestamp()
                .to_millis()
                .and_then(chrono::DateTime::from_timestamp_millis),
        }
    }

    /// The consumer span of OpenTelemetry's messaging conventions for processing this
    /// message: a child of the producer's span when the message carries its trace context
    /// (`traceparent` header), so one webhook is one trace across both services.
    pub fn process_span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format!("process {}", self.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            correlation_id = self.header(headers::CORRELATION_ID).unwrap_or(""),
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %self.topic,
            messaging.destination.partition.id = self.partition,
            messaging.kafka.offset = self.offset,
        );
        // The last one: a dead letter or a replay carries its original headers and then
        // the context of the send that republished it.
        pm_telemetry::propagation::set_parent(&span, |name| {
            self.headers
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        });
        span
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

/// A failure of the whole batch that is not the input's fault; nothing was stored and
/// the batch is retried as it is, without limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    /// A short name of the kind of failure (a metric label: keep the set small).
    pub cause: &'static str,
    /// What happened, for the log and `/health/ready`.
    pub detail: String,
}

impl Transient {
    pub fn new(cause: &'static str, detail: impl Into<String>) -> Self {
        Transient {
            cause,
            detail: detail.into(),
        }
    }
}

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
    /// Messages waiting for one partition's worker before that partition is paused;
    /// `None`: [`ConsumerSettings::queue_limit`]'s default.
    pub max_queued: Option<usize>,
    /// How long a revoked partition's worker may take to finish its batch in hand.
    pub drain_timeout: Duration,
    /// How long the group waits for a silent member before handing its partitions to the
    /// others (`session.timeout.ms`): after a crash, its partitions stand still this long.
    pub session_timeout: Duration,
}

impl ConsumerSettings {
    pub fn new(topic: impl Into<String>, group: impl Into<String>) -> Self {
        ConsumerSettings {
            topic: topic.into(),
            group: group.into(),
            batch_size: 100,
            retry_attempts: 8,
            retry_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_queued: None,
            drain_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
        }
    }
}

impl ConsumerSettings {
    /// Messages queued for one partition's worker before the partition is paused: by
    /// default 50 × the batch size, at least 10,000. High on purpose: a pause drops what
    /// librdkafka prefetched for the partition, and a limit of 10 × the batch size paused
    /// constantly while catching up on a backlog, at a third of the apply rate
    /// (docs/benchmarks.md).
    pub fn queue_limit(&self) -> usize {
        self.max_queued
            .unwrap_or_else(|| self.batch_size.saturating_mul(50).max(10_000))
            .max(2)
    }
}

/// Runs one consumer until `shutdown` is cancelled, then drains, commits and leaves the
/// group. `health` follows it for `/health/ready`.
pub async fn run<H: Handler>(
    config: &KafkaConfig,
    settings: ConsumerSettings,
    handler: Arc<H>,
    dlq: Producer,
    metrics: ConsumerMetrics,
    health: ConsumerHealth,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let assignment = Arc::new(Assignment::new(
        settings.topic.clone(),
        tokio::runtime::Handle::current(),
        settings.drain_timeout,
        health.clone(),
    ));
    let mut client = config.client();
    client
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout.as_millis() / 4)
                .max(100)
                .to_string(),
        )
        .set("statistics.interval.ms", "5000");
    let consumer: BaseConsumer<Context> = client.create_with_context(Context {
        assignment: assignment.clone(),
        metrics: metrics.clone(),
    })?;
    consumer.subscribe(&[&settings.topic])?;
    let topic = settings.topic.clone();
    let close_deadline = settings.drain_timeout + Duration::from_secs(10);
    let shared = Arc::new(Shared {
        settings,
        handler,
        consumer: Arc::new(consumer),
        dlq,
        metrics,
        health: health.clone(),
    });
    tracing::info!(topic = %topic, group = %shared.settings.group, "consumer started");
    health.started();

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let shutdown_wait = shutdown.clone();
    let runtime = tokio::runtime::Handle::current();
    let thread_health = health.clone();
    std::thread::Builder::new()
        .name(format!("kafka-{topic}"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                receive(&shared, &assignment, &runtime, &shutdown);
            }));
            if result.is_err() {
                thread_health.failed("the receive loop panicked");
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| KafkaError::Subscription(format!("cannot start the receive thread: {e}")))?;
    // On shutdown the receive thread commits, leaves the group and closes the consumer;
    // with the brokers gone that can block, so shutdown waits a bounded time for it (what
    // was not committed is delivered again: at least once).
    let mut done_rx = done_rx;
    tokio::select! {
        _ = &mut done_rx => {}
        () = shutdown_wait.cancelled() => {
            if tokio::time::timeout(close_deadline, done_rx).await.is_err() {
                tracing::warn!(topic = %topic, "the consumer did not close in time; its last batches will be delivered again");
            }
        }
    }
    tracing::info!(topic = %topic, "consumer stopped");
    Ok(())
}

/// The receive loop: polls the consumer (which also runs the rebalance callbacks, on this
/// thread) and routes each message to its partition's worker, until shutdown.
fn receive<H: Handler>(
    shared: &Arc<Shared<H>>,
    assignment: &Assignment,
    runtime: &tokio::runtime::Handle,
    shutdown: &CancellationToken,
) {
    let limit = shared.settings.queue_limit();
    while !shutdown.is_cancelled() {
        match shared.consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let message = Received::from_message(&m);
                drop(m);
                let partition = message.partition;
                let route = assignment.route(
                    message,
                    limit,
                    |partition, rx, stop, flow| {
                        let worker = worker::run(shared.clone(), partition, rx, stop, flow);
                        let health = shared.health.clone();
                        runtime.spawn(async move {
                            use futures::FutureExt;
                            if std::panic::AssertUnwindSafe(worker)
                                .catch_unwind()
                                .await
                                .is_err()
                            {
                                health.failed(format!(
                                    "the worker of partition {partition} panicked"
                                ));
                            }
                        })
                    },
                    || shared.pause(partition),
                );
                match route {
                    Route::Queued => {}
                    Route::QueuedAndPaused => {
                        shared
                            .metrics
                            .pauses
                            .get_or_create(&TopicLabels {
                                topic: shared.settings.topic.clone(),
                            })
                            .inc();
                        tracing::debug!(topic = %shared.settings.topic, partition, "worker queue full; partition paused");
                    }
                    Route::NotOwned => {
                        tracing::debug!(topic = %shared.settings.topic, partition, "message of a partition not owned; dropped");
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(topic = %shared.settings.topic, error = %e, "consumer error");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    // Shutdown: every worker finishes its batch in hand; what they applied is committed.
    let offsets = assignment.revoke_all();
    assignment::commit_drained(&shared.consumer, &shared.settings.topic, &offsets);
    // Dropping the last handle (here, or in a worker that is just ending) leaves the group.
}
