//! Distributed tracing: spans exported with OTLP over HTTP/protobuf.
//!
//! Configured by the standard OpenTelemetry variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); off when no endpoint is set.
//!
//! Invariant: tracing never slows a request down or makes it fail. Spans go through the
//! bounded, non-blocking [`queue`]; what it cannot deliver is counted in
//! `pm_otel_spans_dropped_total`, never waited for. Only the spans of this workspace's
//! crates (targets `pm_*`) are exported, so library internals (the exporter's own HTTP
//! client included) can never feed back into the pipeline.

pub mod queue;

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::metrics::Registry;

pub use queue::{QueueProcessor, QueueSettings};

/// How long the exporter waits for the collector per batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the exit waits for queued spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans lost in this process. The span pipeline is process-wide (like the tracing
/// subscriber it hangs off), so its counter is too; services register it with
/// [`register_metrics`].
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Registers `otel_spans_dropped_total` (under the service's `pm` prefix:
/// `pm_otel_spans_dropped_total`): spans dropped because the export queue was full or
/// the collector refused or did not answer.
pub fn register_metrics(registry: &mut Registry) {
    registry.register(
        "otel_spans_dropped",
        "Spans not delivered to the OpenTelemetry collector (queue full or export failed)",
        DROPPED.clone(),
    );
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("OTLP protocol {0:?} is not supported: set OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf (the collector's port 4318) or leave it unset")]
    Protocol(String),
    #[error("invalid OTLP traces endpoint {endpoint:?}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot start the span export thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Where and as whom spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesConfig {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub traces_endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
}

impl TracesConfig {
    /// The configuration from the environment and the `--otlp-endpoint` flag (`endpoint`,
    /// which stands for `OTEL_EXPORTER_OTLP_ENDPOINT`); `None` when tracing is off.
    /// `default_service` names the service unless `OTEL_SERVICE_NAME` or a `service.name`
    /// in `OTEL_RESOURCE_ATTRIBUTES` does.
    pub fn from_env(
        endpoint: Option<&str>,
        default_service: &str,
    ) -> Result<Option<Self>, TracesError> {
        Self::from_lookup(endpoint, default_service, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    fn from_lookup(
        endpoint: Option<&str>,
        default_service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TracesError> {
        let traces_endpoint = match var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            // The signal's own variable is the full URL, per the specification.
            Some(url) => url,
            None => match endpoint.filter(|e| !e.trim().is_empty()) {
                Some(base) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
                None => return Ok(None),
            },
        };
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(protocol) = protocol.filter(|p| p != "http/protobuf") {
            return Err(TracesError::Protocol(protocol));
        }
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                var("OTEL_RESOURCE_ATTRIBUTES").and_then(|attrs| {
                    attrs.split(',').find_map(|pair| {
                        let (key, value) = pair.split_once('=')?;
                        (key.trim() == "service.name").then(|| value.trim().to_owned())
                    })
                })
            })
            .unwrap_or_else(|| default_service.to_owned());
        Ok(Some(TracesConfig {
            traces_endpoint,
            service_name,
        }))
    }
}

/// The running span pipeline; dropping it exports what is queued (at most about 5 s).
#[derive(Debug)]
pub struct TracesGuard {
    provider: SdkTracerProvider,
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            eprintln!("warning: not every span reached the collector at exit: {e}");
        }
    }
}

/// A boxed layer for the global subscriber.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Builds the exporter and the provider (sampler from `OTEL_TRACES_SAMPLER`/`_ARG`,
/// resource from `OTEL_RESOURCE_ATTRIBUTES`) and the layer that turns this workspace's
/// `tracing` spans into OpenTelemetry spans.
///
/// Must be called outside the async runtime: the exporter's blocking HTTP client runs on
/// a thread of its own.
pub fn pipeline<S>(config: &TracesConfig) -> Result<(BoxedLayer<S>, TracesGuard), TracesError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| TracesError::Exporter {
            endpoint: config.traces_endpoint.clone(),
            source,
        })?;
    let processor = QueueProcessor::new(exporter, QueueSettings::default(), DROPPED.clone())
        .map_err(TracesError::Thread)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource(&config.service_name))
        .build();
    let tracer = provider.tracer("pmctl");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_level(true)
        .with_threads(false)
        .with_filter(FilterFn::new(|meta| {
            meta.is_span() && meta.target().starts_with("pm_")
        }));
    Ok((Box::new(layer), TracesGuard { provider }))
}

/// The SDK's resource (`OTEL_RESOURCE_ATTRIBUTES`, `telemetry.sdk.*`) with the service
/// name resolved by [`TracesConfig`], which wins over both.
fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

#[cfg(test)]
mod tests;
