//! What ingest measures, beyond the per-route HTTP metrics.

use std::time::Duration;

use pm_domain::webhook::WebhookKind;
use pm_http::telemetry::HttpMetrics;
use pm_telemetry::metrics::{Registry, LATENCY_BUCKETS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The final result of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Why a webhook was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidSignature,
    MalformedJson,
    InvalidFields,
    DownstreamUnavailable,
    /// The API refused the forwarded webhook (HTTP sink); its answer was passed through.
    Downstream4xx,
    /// A bug on our side (the envelope could not be encoded).
    Internal,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::InvalidSignature => "invalid_signature",
            Reason::MalformedJson => "malformed_json",
            Reason::InvalidFields => "invalid_fields",
            Reason::DownstreamUnavailable => "downstream_unavailable",
            Reason::Downstream4xx => "downstream_4xx",
            Reason::Internal => "internal",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
    kind: &'static str,
}

type SinkHistograms = Family<SinkLabels, Histogram, fn() -> Histogram>;

fn sink_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Ingest's metrics; the caller's registry decides the prefix (`pm_`).
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    pub(crate) http: HttpMetrics,
    webhooks: Family<WebhookLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    sink_seconds: SinkHistograms,
}

impl IngestMetrics {
    /// Registers `ingest_webhooks_total{kind,result}`, `ingest_rejections_total{reason}`,
    /// `ingest_sink_seconds{sink,kind}` and the HTTP server metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let rejections = Family::<RejectionLabels, Counter>::default();
        let sink_seconds: SinkHistograms = Family::new_with_constructor(sink_histogram);
        registry.register(
            "ingest_webhooks",
            "Webhooks by kind and result (accepted, duplicate, rejected)",
            webhooks.clone(),
        );
        registry.register(
            "ingest_rejections",
            "Webhooks not accepted, by reason",
            rejections.clone(),
        );
        registry.register(
            "ingest_sink_seconds",
            "Time to hand a webhook on (Kafka produce until stored, or HTTP forward with retries)",
            sink_seconds.clone(),
        );
        Self {
            http: HttpMetrics::register(registry),
            webhooks,
            rejections,
            sink_seconds,
        }
    }

    pub(crate) fn outcome(&self, kind: WebhookKind, outcome: Outcome) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                kind: kind.as_str(),
                result: outcome.as_str(),
            })
            .inc();
    }

    pub(crate) fn rejected(&self, kind: WebhookKind, reason: Reason) {
        self.outcome(kind, Outcome::Rejected);
        self.rejections
            .get_or_create(&RejectionLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn sink_latency(&self, sink: &'static str, kind: WebhookKind, elapsed: Duration) {
        self.sink_seconds
            .get_or_create(&SinkLabels {
                sink,
                kind: kind.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }
}
