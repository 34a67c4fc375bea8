//! A partition's worker: takes what has arrived (up to a batch), applies it through the
//! [`Handler`], dead-letters what must be, and stores the partition's offset for commit.
//!
//! It stops when its partition is revoked or the consumer shuts down (its `stop` token):
//! the batch in hand is finished, and a stop during a backoff ends the wait at once, with
//! nothing committed past the last applied message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::assignment::{Context, Flow};
use super::health::ConsumerHealth;
use pm_domain::retry::Backoff;

use super::{ConsumerSettings, Handler, Outcome, Received, Transient};
use crate::dlq::{DeadLetterInfo, ErrorClass};
use crate::headers;
use crate::metrics::{CauseLabels, ConsumerMetrics, OutcomeLabels, TopicLabels};
use crate::producer::Producer;
use crate::topics::Topics;

/// What every worker of one consumer shares.
pub(super) struct Shared<H> {
    pub(super) settings: ConsumerSettings,
    pub(super) handler: Arc<H>,
    pub(super) consumer: Arc<BaseConsumer<Context>>,
    pub(super) dlq: Producer,
    pub(super) metrics: ConsumerMetrics,
    pub(super) health: ConsumerHealth,
}

impl<H> Shared<H> {
    fn one_partition(&self, partition: i32, offset: Offset) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&self.settings.topic, partition, offset);
        tpl
    }

    /// Pauses fetching for `partition` (its worker's queue is full).
    pub(super) fn pause(&self, partition: i32) {
        if let Err(e) = self
            .consumer
            .pause(&self.one_partition(partition, Offset::Invalid))
        {
            tracing::warn!(topic = %self.settings.topic, partition, error = %e, "cannot pause the partition");
        }
    }

    fn resume(&self, partition: i32) {
        if let Err(e) = self
            .consumer
            .resume(&self.one_partition(partition, Offset::Invalid))
        {
            tracing::warn!(topic = %self.settings.topic, partition, error = %e, "cannot resume the partition");
        }
    }

    fn topic_labels(&self) -> TopicLabels {
        TopicLabels {
            topic: self.settings.topic.clone(),
        }
    }
}

/// Stopped (revoked or shut down) before the batch was complete: nothing may be committed.
struct Interrupted;

/// One worker's view: the shared parts plus its partition and stop token.
struct Partition<'a, H> {
    shared: &'a Shared<H>,
    partition: i32,
    stop: &'a CancellationToken,
}

pub(super) async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    partition: i32,
    mut rx: mpsc::UnboundedReceiver<(Received, Instant)>,
    stop: CancellationToken,
    flow: Arc<Flow>,
) {
    let me = Partition {
        shared: &shared,
        partition,
        stop: &stop,
    };
    let _released = Released {
        oldest: &shared.metrics.oldest,
        topic: &shared.settings.topic,
        partition,
    };
    let limit = shared.settings.queue_limit();
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < shared.settings.batch_size {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        flow.taken(batch.len(), limit, || shared.resume(partition));
        let arrived: Vec<Instant> = batch.iter().map(|(_, t)| *t).collect();
        let messages: Vec<Received> = batch.into_iter().map(|(m, _)| m).collect();
        let topic = &shared.settings.topic;
        if let (Some(first), Some(at)) = (messages.first(), arrived.first()) {
            shared
                .metrics
                .oldest
                .waiting_since(topic, partition, produced_at(first, *at));
        }
        shared.health.batch_started(partition);
        let processed = me.process(&messages).await;
        shared.health.batch_ended(partition);
        if processed.is_err() {
            return;
        }
        shared.metrics.oldest.caught_up(topic, partition);
        let Some(last) = messages.last() else {
            continue;
        };
        let next = last.offset + 1;
        if flow.applied(next) {
            me.store(next);
        }
        let histogram = shared.metrics.latency.get_or_create(&shared.topic_labels());
        for t in arrived {
            histogram.observe(t.elapsed().as_secs_f64());
        }
    }
}

/// When a message was produced: its Kafka timestamp, or (a message without one) when it
/// arrived here.
fn produced_at(message: &Received, arrived: Instant) -> DateTime<Utc> {
    message.timestamp.unwrap_or_else(|| {
        Utc::now() - chrono::Duration::from_std(arrived.elapsed()).unwrap_or_default()
    })
}

/// Takes the partition out of `kafka_oldest_unapplied_age_seconds` when its worker ends,
/// however it ends.
struct Released<'a> {
    oldest: &'a crate::metrics::OldestUnapplied,
    topic: &'a str,
    partition: i32,
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.oldest.released(self.topic, self.partition);
    }
}

impl<H: Handler> Partition<'_, H> {
    /// Stores `next` as the partition's offset to commit; librdkafka commits it within
    /// half a second (and the revocation or shutdown commit covers it too).
    fn store(&self, next: i64) {
        let tpl = self
            .shared
            .one_partition(self.partition, Offset::Offset(next));
        if let Err(e) = self.shared.consumer.store_offsets(&tpl) {
            // Only when the partition is no longer ours; its new owner repeats the batch.
            tracing::warn!(partition = self.partition, error = %e, "cannot store the offset");
        }
    }

    /// Sleeps unless the worker is stopped first.
    async fn pause(&self, d: Duration) -> Result<(), Interrupted> {
        tokio::select! {
            () = self.stop.cancelled() => Err(Interrupted),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Applies a batch, retrying transient failures until they pass.
    async fn apply_until_not_transient(
        &self,
        batch: &[Received],
    ) -> Result<Vec<Outcome>, Interrupted> {
        let shared = self.shared;
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
                Err(Transient { cause, detail }) => {
                    shared
                        .metrics
                        .transient
                        .get_or_create(&CauseLabels {
                            topic: shared.settings.topic.clone(),
                            cause,
                        })
                        .inc();
                    shared.health.transient_error(self.partition, &detail);
                    tracing::warn!(
                        topic = %shared.settings.topic, partition = self.partition, cause,
                        error = %detail, attempt,
                        "transient failure; the partition waits and retries (nothing dead-lettered)"
                    );
                }
            }
            attempt += 1;
            self.pause(
                Backoff::new(Duration::from_millis(100), shared.settings.max_backoff)
                    .delay(attempt),
            )
            .await?;
        }
    }

    async fn process(&self, batch: &[Received]) -> Result<(), Interrupted> {
        let mut rest = batch;
        while !rest.is_empty() {
            let outcomes = self.apply_until_not_transient(rest).await?;
            let mut handled = 0;
            for (message, outcome) in rest.iter().zip(outcomes) {
                let first_failed_at = Utc::now();
                let failure = match outcome {
                    Outcome::Skipped => break,
                    Outcome::Done => {
                        self.count("done");
                        None
                    }
                    Outcome::Reject(e) => Some((ErrorClass::Permanent, e, 1)),
                    Outcome::Retry(e) => self.retry_alone(message, e).await?,
                };
                if let Some((class, error, attempts)) = failure {
                    self.dead_letter(message, class, &error, attempts, first_failed_at)
                        .await?;
                }
                handled += 1;
            }
            if handled == 0 {
                // A handler that skips the first message would loop; wait and ask again.
                tracing::error!(topic = %self.shared.settings.topic, "handler skipped the first message of a batch");
                self.pause(self.shared.settings.max_backoff).await?;
            }
            rest = &rest[handled..];
        }
        Ok(())
    }

    /// Retries one message with backoff: `None` once it is done, otherwise how to
    /// dead-letter it.
    async fn retry_alone(
        &self,
        message: &Received,
        mut error: String,
    ) -> Result<Option<(ErrorClass, String, u32)>, Interrupted> {
        let settings = &self.shared.settings;
        let mut attempts = 1;
        while attempts < settings.retry_attempts {
            self.pause(Backoff::new(settings.retry_backoff, settings.max_backoff).delay(attempts))
                .await?;
            attempts += 1;
            match self
                .apply_until_not_transient(std::slice::from_ref(message))
                .await?
                .pop()
            {
                Some(Outcome::Done) => {
                    self.count("done");
                    return Ok(None);
                }
                Some(Outcome::Retry(e)) => error = e,
                Some(Outcome::Reject(e)) => return Ok(Some((ErrorClass::Permanent, e, attempts))),
                Some(Outcome::Skipped) | None => {}
            }
        }
        Ok(Some((ErrorClass::Retryable, error, attempts)))
    }

    fn count(&self, outcome: &'static str) {
        self.shared
            .metrics
            .processed
            .get_or_create(&OutcomeLabels {
                topic: self.shared.settings.topic.clone(),
                outcome,
            })
            .inc();
    }

    /// Publishes a dead letter, retrying until the broker has it (or the worker stops).
    async fn dead_letter(
        &self,
        message: &Received,
        class: ErrorClass,
        error: &str,
        attempts: u32,
        first_failed_at: DateTime<Utc>,
    ) -> Result<(), Interrupted> {
        let shared = self.shared;
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
                    self.count("dead_lettered");
                    return Ok(());
                }
                Err(e) => {
                    attempt += 1;
                    let labels = TopicLabels {
                        topic: dlq_topic.clone(),
                    };
                    shared.metrics.dlq_failures.get_or_create(&labels).inc();
                    tracing::error!(topic = %dlq_topic, error = %e, attempt, "cannot publish a dead letter; the offset stays until it is stored");
                    self.pause(
                        Backoff::new(Duration::from_millis(200), shared.settings.max_backoff)
                            .delay(attempt),
                    )
                    .await?;
                }
            }
        }
    }
}
