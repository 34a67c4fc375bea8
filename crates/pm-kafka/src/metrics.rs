//! Consumer metrics.

use pm_telemetry::metrics::{Registry, LATENCY_BUCKETS};
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
        m
    }
}
