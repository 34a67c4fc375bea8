//! Consumer metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use pm_telemetry::metrics::{Registry, ScrapeGauge, LATENCY_BUCKETS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) topic: String,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabels {
    pub(crate) topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CauseLabels {
    pub(crate) topic: String,
    pub(crate) cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLabels {
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

type Histograms = Family<TopicLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the consumers measure.
#[derive(Clone, Debug)]
pub struct ConsumerMetrics {
    pub(crate) processed: Family<OutcomeLabels, Counter>,
    pub(crate) latency: Histograms,
    pub(crate) lag: Family<PartitionLabels, Gauge>,
    pub(crate) dlq: Family<OutcomeLabels, Counter>,
    pub(crate) transient: Family<CauseLabels, Counter>,
    pub(crate) dlq_failures: Family<TopicLabels, Counter>,
    pub(crate) pauses: Family<TopicLabels, Counter>,
    pub(crate) rebalances: Family<TopicLabels, Counter>,
    pub(crate) oldest: OldestUnapplied,
    dlq_depth: Family<TopicLabels, Gauge>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ConsumerMetrics {
            processed: Family::default(),
            latency: Family::new_with_constructor(histogram),
            lag: Family::default(),
            dlq: Family::default(),
            transient: Family::default(),
            dlq_failures: Family::default(),
            pauses: Family::default(),
            rebalances: Family::default(),
            oldest: OldestUnapplied::default(),
            dlq_depth: Family::default(),
        };
        registry.register(
            "kafka_messages_processed",
            "Messages processed by topic and outcome (done, dead_lettered)",
            m.processed.clone(),
        );
        registry.register(
            "kafka_processing_seconds",
            "Time from a batch's arrival at its partition worker to its commit, per message",
            m.latency.clone(),
        );
        registry.register(
            "kafka_consumer_lag",
            "Messages behind the partition's high watermark",
            m.lag.clone(),
        );
        registry.register(
            "kafka_dlq_published",
            "Dead letters published by topic and error class",
            m.dlq.clone(),
        );
        registry.register(
            "kafka_transient_errors",
            "Transient failures by cause (batch retried, partition waited, nothing dead-lettered)",
            m.transient.clone(),
        );
        registry.register(
            "kafka_dlq_publish_failures",
            "Failed attempts to publish a dead letter (the offset waits until one succeeds)",
            m.dlq_failures.clone(),
        );
        registry.register(
            "kafka_partition_pauses",
            "Times a partition was paused because its worker's queue was full (backpressure)",
            m.pauses.clone(),
        );
        registry.register(
            "kafka_partitions_revoked",
            "Rebalances that revoked partitions from this member",
            m.rebalances.clone(),
        );
        registry.register(
            "kafka_dlq_depth",
            "Dead letters not yet replayed, by DLQ topic (what a resumed `pmctl replay-dlq` would read)",
            m.dlq_depth.clone(),
        );
        let oldest = m.oldest.clone();
        ScrapeGauge::register(
            registry,
            "kafka_oldest_unapplied_age_seconds",
            "Age of the oldest message received and not yet applied, by partition (0 when none waits)",
            move || oldest.ages(Utc::now()),
        );
        m
    }

    /// Records the depth of a DLQ topic (see `replay::Backlog`).
    pub fn set_dlq_depth(&self, dlq_topic: &str, depth: u64) {
        self.dlq_depth
            .get_or_create(&TopicLabels {
                topic: dlq_topic.to_owned(),
            })
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

/// For each partition this member works on, when the oldest message it has received and
/// not yet applied (or dead-lettered) was produced: exported at scrape time as its age,
/// `kafka_oldest_unapplied_age_seconds{topic,partition}`, 0 while nothing waits. Unlike
/// the lag (a count), the age says how late the effects are: a partition stuck retrying one
/// message shows a growing age with a lag of a few messages.
#[derive(Clone, Debug, Default)]
pub(crate) struct OldestUnapplied(Arc<Mutex<Waiting>>);

/// Per (topic, partition): since when its oldest unapplied message waits, if one does.
type Waiting = BTreeMap<(String, i32), Option<DateTime<Utc>>>;

impl OldestUnapplied {
    fn with<T>(&self, f: impl FnOnce(&mut Waiting) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A worker took a batch whose first message was produced at `since` (everything
    /// before it is applied).
    pub(crate) fn waiting_since(&self, topic: &str, partition: i32, since: DateTime<Utc>) {
        self.with(|m| m.insert((topic.to_owned(), partition), Some(since)));
    }

    /// The worker applied everything it had.
    pub(crate) fn caught_up(&self, topic: &str, partition: i32) {
        self.with(|m| m.insert((topic.to_owned(), partition), None));
    }

    /// The partition is no longer worked on here (revoked, or the consumer stopped).
    pub(crate) fn released(&self, topic: &str, partition: i32) {
        self.with(|m| m.remove(&(topic.to_owned(), partition)));
    }

    fn ages(&self, now: DateTime<Utc>) -> Vec<(PartitionLabels, f64)> {
        self.with(|m| {
            m.iter()
                .map(|((topic, partition), since)| {
                    let age = since.map_or(0.0, |t| {
                        // Clocks of producer and consumer hosts may differ: never negative.
                        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
                    });
                    let labels = PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (labels, age)
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unapplied_message_is_exported_as_its_age_per_partition() {
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::register(registry.sub_registry_with_prefix("pm"));
        let oldest = &metrics.oldest;
        oldest.waiting_since("orders", 0, Utc::now() - chrono::Duration::seconds(90));
        oldest.waiting_since("orders", 1, Utc::now() + chrono::Duration::seconds(5));
        oldest.waiting_since("orders", 2, Utc::now());
        oldest.caught_up("orders", 2);
        oldest.waiting_since("orders", 3, Utc::now());
        oldest.released("orders", 3);
        metrics.set_dlq_depth("orders.dlq", 7);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let age = |partition: i32| -> Option<f64> {
            let prefix = format!(
                "pm_kafka_oldest_unapplied_age_seconds{{topic=\"orders\",partition=\"{partition}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse().expect("a number"))
        };
        let waiting = age(0).expect("partition 0 exported");
        assert!((90.0..120.0).contains(&waiting), "{text}");
        assert_eq!(
            age(1),
            Some(0.0),
            "a clock ahead never gives a negative age"
        );
        assert_eq!(age(2), Some(0.0), "caught up");
        assert_eq!(age(3), None, "released partitions are not exported");
        assert!(
            text.contains("pm_kafka_dlq_depth{topic=\"orders.dlq\"} 7"),
            "{text}"
        );
    }
}
