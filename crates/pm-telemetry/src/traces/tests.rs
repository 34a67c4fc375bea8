use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::metrics::counter::Counter;

use super::*;

fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn tracing_is_off_without_an_endpoint() {
    assert_eq!(
        TracesConfig::from_lookup(None, "pmctl-serve-api", lookup(&[])).expect("config"),
        None
    );
}

#[test]
fn the_base_endpoint_gets_the_traces_path_and_the_signal_endpoint_is_kept() {
    let config = TracesConfig::from_lookup(Some("http://collector:4318/"), "svc", lookup(&[]))
        .expect("config")
        .expect("on");
    assert_eq!(config.traces_endpoint, "http://collector:4318/v1/traces");
    assert_eq!(config.service_name, "svc");
    let vars = [(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://other:4318/custom",
    )];
    let config = TracesConfig::from_lookup(Some("http://collector:4318"), "svc", lookup(&vars))
        .expect("config")
        .expect("on");
    assert_eq!(config.traces_endpoint, "http://other:4318/custom");
}

#[test]
fn the_service_name_comes_from_the_environment_first() {
    let vars = [(
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=lab, service.name=from-attrs",
    )];
    let config = TracesConfig::from_lookup(Some("http://c:4318"), "svc", lookup(&vars))
        .expect("config")
        .expect("on");
    assert_eq!(config.service_name, "from-attrs");
    let vars = [
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
        ("OTEL_SERVICE_NAME", "from-name"),
    ];
    let config = TracesConfig::from_lookup(Some("http://c:4318"), "svc", lookup(&vars))
        .expect("config")
        .expect("on");
    assert_eq!(config.service_name, "from-name");
}

#[test]
fn grpc_is_refused_with_a_clear_message() {
    let vars = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
    let err = TracesConfig::from_lookup(Some("http://c:4317"), "svc", lookup(&vars))
        .expect_err("grpc is not supported");
    assert!(err.to_string().contains("http/protobuf"), "{err}");
    let vars = [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")];
    assert!(TracesConfig::from_lookup(Some("http://c:4318"), "svc", lookup(&vars)).is_ok());
}

/// A collector that accepts connections and never answers: the worst case, as every
/// export then lasts its whole timeout.
#[test]
fn spans_never_wait_for_an_unreachable_collector_and_every_lost_span_is_counted() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let endpoint = format!("http://{}/v1/traces", silent.local_addr().expect("address"));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_millis(200))
        .build()
        .expect("exporter");
    let dropped = Counter::default();
    let settings = QueueSettings {
        capacity: 16,
        max_batch: 8,
        interval: Duration::from_millis(50),
    };
    let processor = QueueProcessor::new(exporter, settings, dropped.clone()).expect("processor");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("test");

    const SPANS: u64 = 2000;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..SPANS {
        let one = Instant::now();
        tracer.in_span(format!("span {i}"), |_| {});
        slowest = slowest.max(one.elapsed());
    }
    let elapsed = started.elapsed();
    // One export alone takes 200 ms: a span that waited for one would show it.
    assert!(
        slowest < Duration::from_millis(100),
        "a span took {slowest:?} to end"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "{SPANS} spans took {elapsed:?}"
    );
    assert!(dropped.get() > 0, "the full queue dropped nothing");

    provider
        .shutdown_with_timeout(Duration::from_secs(10))
        .expect("shutdown");
    assert_eq!(
        dropped.get(),
        SPANS,
        "every span was lost and must be counted"
    );
}
