//! For tests of other crates (feature `testing`): a subscriber under which `tracing` spans
//! have real OpenTelemetry trace and span ids, exported nowhere.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;

/// A subscriber that gives every span an OpenTelemetry context (install it with
/// `tracing::subscriber::set_default` for one test).
pub fn traced_subscriber() -> impl tracing::Subscriber + Send + Sync {
    let provider = SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
}

/// The trace id of `span` as 32 hex digits (all zeros outside [`traced_subscriber`]).
pub fn trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.context().span().span_context().trace_id().to_string()
}
