//! What the provider calls cost and how they end, per HTTP attempt: a retried call is
//! several attempts, and each says something about the provider's health.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How one attempt ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptOutcome {
    /// A 2xx answer (whatever it says: a declined capture is a successful call).
    Success,
    /// A 4xx: the provider refused the request (409 and 429 included).
    ClientError,
    /// A 5xx.
    ServerError,
    /// No answer in time.
    Timeout,
    /// No connection, or it broke before an answer.
    Unreachable,
    /// An answer we could not read (a 2xx body that does not parse, an unexpected status).
    InvalidResponse,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::ClientError => "client_error",
            AttemptOutcome::ServerError => "server_error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Unreachable => "unreachable",
            AttemptOutcome::InvalidResponse => "invalid_response",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(pm_telemetry::metrics::LATENCY_BUCKETS)
}

/// Provider call metrics; clones share their series.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    requests: Family<AttemptLabels, Counter>,
    duration: Histograms,
}

impl ProviderMetrics {
    /// Registers `provider_requests_total{operation,outcome}` and
    /// `provider_request_duration_seconds{operation}` (the caller's registry adds `pm_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProviderMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram),
        };
        registry.register(
            "provider_requests",
            "HTTP attempts at the provider's API by operation and outcome (success, client_error, \
             server_error, timeout, unreachable, invalid_response); a retried call counts each attempt",
            m.requests.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Duration of each HTTP attempt at the provider's API, by operation",
            m.duration.clone(),
        );
        m
    }

    pub(super) fn observe(&self, operation: &'static str, outcome: AttemptOutcome, took: Duration) {
        self.requests
            .get_or_create(&AttemptLabels {
                operation,
                outcome: outcome.as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }
}
