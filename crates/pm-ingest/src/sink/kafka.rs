//! The Kafka sink: one message per webhook, acknowledged only once the broker stored it.

use std::time::Duration;

use pm_domain::webhook::WebhookKind;
use pm_kafka::headers::{self, CORRELATION_ID, EVENT_TYPE};
use pm_kafka::{Producer, Topics};
use pm_telemetry::CorrelationId;

use crate::dedupe::RecentlyAccepted;
use crate::sink::{Delivered, SinkError};
use crate::webhook::AcceptedWebhook;

/// How long a readiness probe waits for broker metadata.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Produces envelopes to the orders or disputes topic, keyed by user id (so each user's
/// events keep their order on one partition), with the correlation id and the event type
/// in headers.
#[derive(Debug)]
pub struct KafkaSink {
    producer: Producer,
    topics: Topics,
    recent: RecentlyAccepted,
}

impl KafkaSink {
    /// A sink remembering the last [`crate::DEFAULT_DEDUPE_CAPACITY`] deliveries.
    pub fn new(producer: Producer, topics: Topics) -> Self {
        Self {
            producer,
            topics,
            recent: RecentlyAccepted::default(),
        }
    }

    /// Changes how many recent deliveries are remembered for the duplicate shortcut.
    pub fn with_dedupe_capacity(mut self, capacity: usize) -> Self {
        self.recent = RecentlyAccepted::new(capacity);
        self
    }

    /// The topics produced to.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    fn topic(&self, kind: WebhookKind) -> &str {
        match kind {
            WebhookKind::Order => &self.topics.orders,
            WebhookKind::Chargeback => &self.topics.disputes,
        }
    }

    pub(crate) async fn deliver(
        &self,
        webhook: &AcceptedWebhook,
        correlation: &CorrelationId,
    ) -> Result<Delivered, SinkError> {
        let kind = webhook.kind;
        if self.recent.contains(kind, &webhook.provider_event_id) {
            return Ok(Delivered::Duplicate);
        }
        let payload = webhook.envelope_json()?;
        // The canonical text form, so a key is the same bytes whatever case the provider
        // wrote the UUID in, and equal to what a Java producer keyed by the string sends.
        let key = webhook.user_id.to_string();
        let headers = headers::build([
            (CORRELATION_ID, correlation.as_str()),
            (EVENT_TYPE, kind.as_str()),
        ]);
        let topic = self.topic(kind);
        let stored = self
            .producer
            .send(topic, key.as_bytes(), &payload, headers)
            .await
            .map_err(SinkError::Kafka)?;
        // Only now: remembering a webhook that was not stored would turn the provider's
        // retry into a "duplicate" and lose it.
        self.recent.insert(kind, &webhook.provider_event_id);
        tracing::debug!(
            topic,
            partition = stored.partition,
            offset = stored.offset,
            event_id = %webhook.envelope.event_id,
            "webhook stored in Kafka"
        );
        Ok(Delivered::Stored {
            event_id: webhook.envelope.event_id,
        })
    }

    /// Whether a broker answers a metadata request.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        // The metadata call blocks a thread; it must not stall the async workers.
        let probe = tokio::task::spawn_blocking(move || producer.reachable(READY_TIMEOUT));
        match tokio::time::timeout(READY_TIMEOUT + Duration::from_secs(1), probe).await {
            Ok(Ok(Ok(()))) => Ok(()),
            // Says itself whether no broker answered or one refused us (wrong password,
            // untrusted certificate).
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("the probe failed: {e}")),
            Err(_) => Err("no broker answered in time".to_owned()),
        }
    }
}
