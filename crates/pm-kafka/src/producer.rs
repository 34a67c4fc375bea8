//! The producer: a send resolves only when the broker has stored the message.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tracing::Instrument as _;

use crate::connection::{self, Watched};
use crate::{Error, KafkaConfig, KafkaError};

/// An idempotent producer with `acks=all` and the murmur2 partitioner that the Java client
/// uses, so a key lands on the partition a Java producer would choose.
///
/// An idempotent producer can enter a state it never leaves (a fatal error, or a broker
/// that lost its producer state after a restart and rejects every further batch); the
/// producer is then rebuilt, so a restarted broker does not mean a gateway that answers
/// 503 forever.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<RwLock<Current>>,
    config: KafkaConfig,
    delivery_timeout: Duration,
}

/// The producer in use, what its error callback heard, and when it was built.
struct Current {
    producer: FutureProducer<Watched>,
    watch: Watched,
    built: Instant,
}

/// A producer is replaced at most this often.
const REBUILD_INTERVAL: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// Where a message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub partition: i32,
    pub offset: i64,
}

impl Producer {
    /// `delivery_timeout` bounds how long a send may take in total (retries included)
    /// before it fails: ingest keeps it short so that an unavailable broker becomes a
    /// prompt 503 the provider retries, never an acknowledged webhook that was not stored.
    pub fn new(config: &KafkaConfig, delivery_timeout: Duration) -> Result<Self, KafkaError> {
        let inner = Self::build(config, delivery_timeout)?;
        Ok(Producer {
            inner: Arc::new(RwLock::new(inner)),
            config: config.clone(),
            delivery_timeout,
        })
    }

    fn build(config: &KafkaConfig, delivery_timeout: Duration) -> Result<Current, KafkaError> {
        let watch = Watched::default();
        let producer = config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .create_with_context(watch.clone())?;
        Ok(Current {
            producer,
            watch,
            built: Instant::now(),
        })
    }

    fn current(&self) -> (FutureProducer<Watched>, Watched) {
        let current = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.producer.clone(), current.watch.clone())
    }

    /// Sends one message and waits for the broker's acknowledgement, in a producer span
    /// whose trace context travels in the message's headers.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Stored, KafkaError> {
        let span = send_span(topic);
        let headers = crate::headers::with_trace_context(headers, &span);
        self.send_record(topic, key, payload, headers)
            .instrument(span.clone())
            .await
            .inspect(|stored| {
                span.record("messaging.destination.partition.id", stored.partition);
                span.record("messaging.kafka.offset", stored.offset);
            })
            .inspect_err(|e| {
                span.record("otel.status_code", "error");
                span.record("otel.status_description", e.to_string());
            })
    }

    async fn send_record(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Stored, KafkaError> {
        let (producer, _) = self.current();
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        match producer
            .send(record, Timeout::After(Duration::from_secs(1)))
            .await
        {
            Ok(delivery) => Ok(Stored {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => {
                if needs_rebuild(&producer, &e) {
                    self.rebuild(&producer);
                }
                Err(e)
            }
        }
    }

    /// Replaces a stuck producer, unless another caller already did or it is young.
    fn rebuild(&self, stuck: &FutureProducer<Watched>) {
        let Ok(mut slot) = self.inner.write() else {
            return;
        };
        if !std::ptr::eq(
            slot.producer.client().native_ptr(),
            stuck.client().native_ptr(),
        ) || slot.built.elapsed() < REBUILD_INTERVAL
        {
            return;
        }
        match Self::build(&self.config, self.delivery_timeout) {
            Ok(fresh) => {
                tracing::warn!(
                    "the Kafka producer stopped delivering; replaced it with a fresh one"
                );
                *slot = fresh;
            }
            Err(e) => tracing::error!(error = %e, "cannot rebuild the Kafka producer"),
        }
    }

    /// Waits until everything queued was delivered (or the timeout passed).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.current().0.flush(timeout)
    }

    /// Whether a broker answers a metadata request (readiness probe; blocking call). A
    /// cluster that refuses this producer's login or TLS handshake fails it before the
    /// timeout, with the reason.
    pub fn reachable(&self, timeout: Duration) -> Result<(), Error> {
        let (producer, watch) = self.current();
        connection::metadata(&producer, &watch, timeout).map(drop)
    }
}

/// The producer span of OpenTelemetry's messaging conventions; partition and offset are
/// recorded once the broker acknowledged the message.
fn send_span(topic: &str) -> tracing::Span {
    tracing::info_span!(
        "send",
        otel.name = %format!("send {topic}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = %topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    )
}

/// Errors after which this producer instance may not recover by itself. A timed-out
/// message stalls an idempotent producer's partition queue until its fate is known, and
/// some brokers never resolve it after a restart; a fresh producer does not carry that
/// state. (What the old one held was answered as not stored, so nothing acknowledged is
/// lost; at worst a retried message is stored twice, which consumers deduplicate.)
fn needs_rebuild(producer: &FutureProducer<Watched>, e: &KafkaError) -> bool {
    if producer.client().fatal_error().is_some() {
        return true;
    }
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::Unknown
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::Fatal
        )
    )
}
