//! Distributed tracing: one webhook through `serve-ingest` (kafka or http sink) and
//! `serve-api` is one trace across both processes, and an operator's capture is one trace
//! from the API down to the provider's own server; all exported over OTLP/HTTP to a
//! collector the test runs itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use pm_storage::testing::TestDatabase;
use prost::Message as _;

use crate::process::{eventually, order_json, send_webhook, signed_webhook, Pmctl, SECRET};

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
    /// The exporting process's resource attributes.
    resource: HashMap<String, String>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A minimal OTLP/HTTP collector: decodes `ExportTraceServiceRequest`s into a list.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start(&self) -> String {
        async fn export(State(c): State<Collector>, body: Bytes) -> Vec<u8> {
            let request =
                ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf trace export");
            let mut spans = c.spans.lock().unwrap_or_else(|e| e.into_inner());
            for resource_spans in request.resource_spans {
                let resource: HashMap<String, String> = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .map(|kv| (kv.key.clone(), text(kv)))
                    .collect();
                let service = resource.get("service.name").cloned().unwrap_or_default();
                for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(Received {
                        service: service.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent: hex::encode(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv)))
                            .collect(),
                        resource: resource.clone(),
                    });
                }
            }
            ExportTraceServiceResponse::default().encode_to_vec()
        }
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("collector listener");
        let address = listener.local_addr().expect("collector address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn trace_ids(&self) -> std::collections::BTreeSet<String> {
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.trace_id.clone())
            .collect()
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// Sends an order webhook to `target`, with the caller's `traceparent` when given; the status.
async fn send_traced(target: &Pmctl, body: &str, traceparent: Option<String>) -> u16 {
    let mut request = signed_webhook(target, "/webhooks/payments/orders", body, SECRET);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request.send().await.expect("request").status().as_u16()
}

/// Waits until the collector has the server span of each of `services` in the trace (a
/// service's server span ends after everything it did for the request).
async fn server_spans_of(collector: &Collector, trace_id: &str, services: &[&str]) {
    eventually(&format!("the server spans of {services:?}"), || async {
        let spans = collector.of_trace(trace_id);
        services.iter().all(|service| {
            spans
                .iter()
                .any(|s| s.service == *service && s.kind == SpanKind::Server as i32)
        })
    })
    .await;
}

fn one<'a>(spans: &'a [Received], what: &str, test: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| test(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what} span in {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_webhook_through_kafka_is_one_trace_across_ingest_and_api() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let db = TestDatabase::new().await;
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("e2e-trace");
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_KAFKA_BROKERS", brokers.as_str()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ];
    let ingest = Pmctl::start(&["serve-ingest", "--sink", "kafka"], &env).await;
    let api = Pmctl::start(&["serve-api", "--mode", "kafka"], &env).await;
    api.wait_for("/health/ready", 200).await;

    // The provider's own trace: ingest's server span must continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let body = order_json("trace-1", "trace-o1", "created", 0);
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    assert_eq!(send_traced(&ingest, &body, Some(traceparent)).await, 202);

    // Every span of the flow, as both processes export them (in batches, about a second).
    // A span ends after its children and each process exports in the order spans end:
    // once the server and consumer spans are in, so is everything under them.
    eventually("the spans of both services", || async {
        let spans = collector.of_trace(trace_id);
        let has = |kind: SpanKind| spans.iter().any(|s| s.kind == kind as i32);
        has(SpanKind::Server) && has(SpanKind::Producer) && has(SpanKind::Consumer)
    })
    .await;
    let spans = collector.of_trace(trace_id);

    let server = one(&spans, "ingest server", |s| {
        s.service == "pmctl-serve-ingest" && s.kind == SpanKind::Server as i32
    });
    assert_eq!(server.name, "POST /webhooks/payments/orders");
    assert_eq!(
        server.parent, caller_span,
        "continues the caller's traceparent"
    );
    assert_eq!(server.attribute("http.request.method"), Some("POST"));
    assert_eq!(
        server.attribute("http.route"),
        Some("/webhooks/payments/orders")
    );
    assert_eq!(server.attribute("http.response.status_code"), Some("202"));

    let verify = one(&spans, "signature", |s| s.name == "verify signature");
    assert_eq!(verify.service, "pmctl-serve-ingest");
    assert_eq!(verify.parent, server.span_id);

    let topic = format!("{prefix}webhooks.orders");
    let send = one(&spans, "producer", |s| s.kind == SpanKind::Producer as i32);
    assert_eq!(send.service, "pmctl-serve-ingest");
    assert_eq!(send.name, format!("send {topic}"));
    assert_eq!(send.parent, server.span_id);
    assert_eq!(send.attribute("messaging.system"), Some("kafka"));
    assert_eq!(
        send.attribute("messaging.destination.name"),
        Some(topic.as_str())
    );
    assert!(
        send.attribute("messaging.destination.partition.id")
            .is_some(),
        "{send:?}"
    );
    assert!(
        send.attribute("messaging.kafka.offset").is_some(),
        "{send:?}"
    );

    let process = one(&spans, "consumer", |s| s.kind == SpanKind::Consumer as i32);
    assert_eq!(process.service, "pmctl-serve-api");
    assert_eq!(process.name, format!("process {topic}"));
    assert_eq!(
        process.parent, send.span_id,
        "the consumer continues the producer's span"
    );
    assert_eq!(
        process.attribute("messaging.kafka.offset"),
        send.attribute("messaging.kafka.offset")
    );

    let statements: Vec<_> = spans
        .iter()
        .filter(|s| s.attribute("db.system") == Some("postgresql"))
        .collect();
    assert!(!statements.is_empty());
    for statement in statements {
        assert_eq!(statement.service, "pmctl-serve-api");
        assert_eq!(statement.parent, process.span_id, "{statement:?}");
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert!(statement.attribute("db.operation.name").is_some());
        assert!(statement.attribute("db.collection.name").is_some());
    }
    assert!(spans.iter().all(|s| s.trace_id == trace_id));

    // The collector answered every export: the counter is there, at zero.
    let metrics = ingest
        .http
        .get(ingest.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("pm_otel_spans_dropped_total 0"),
        "{metrics}"
    );
    drop((ingest, api));
}

#[test]
fn grpc_export_is_refused_at_start_with_a_clear_message() {
    let out = crate::process::run(
        &["--otlp-endpoint", "http://127.0.0.1:4317", "migrate"],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", crate::process::text(&out));
    let text = crate::process::text(&out);
    assert!(
        text.contains("\"grpc\" is not supported") && text.contains("http/protobuf"),
        "{text}"
    );
}

#[tokio::test]
async fn the_demo_hands_its_collector_to_the_services_it_starts() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let out = crate::process::demo(&["--otlp-endpoint", &endpoint], &[], &[]).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("exported to {endpoint}")),
        "the report says where the traces went: {report}"
    );
    assert!(report.contains("/metrics"), "{report}");

    // The services flush their spans as they stop, before the demo ends: a webhook's trace
    // has the spans of both.
    let spans = collector
        .spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let services_of = |trace: &str| {
        spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .map(|s| s.service.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        spans.iter().any(|s| {
            let services = services_of(&s.trace_id);
            services.contains("pmctl-serve-ingest") && services.contains("pmctl-serve-api")
        }),
        "no trace spans ingest and the API: {spans:#?}"
    );
}

#[tokio::test]
async fn the_standard_sampler_and_resource_variables_are_honoured() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let db = TestDatabase::new().await;
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Follow the caller's decision; sample none of the traces that start here.
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=e2e,service.namespace=payments",
        ),
    ];
    let api = Pmctl::start(&["serve-api"], &env).await;
    api.wait_for("/health/ready", 200).await;
    let send = |n: u32, traceparent: Option<String>| {
        let body = order_json(
            &format!("sampler-{n}"),
            &format!("sampler-o{n}"),
            "created",
            0,
        );
        let api = &api;
        async move { send_traced(api, &body, traceparent).await }
    };
    let sampled = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = "1bf7651916cd43dd8448eb211c80319d";
    let last = "2cf7651916cd43dd8448eb211c80319e";
    assert_eq!(
        send(1, Some(format!("00-{sampled}-b7ad6b7169203331-01"))).await,
        202
    );
    assert_eq!(
        send(2, Some(format!("00-{unsampled}-b7ad6b7169203331-00"))).await,
        202
    );
    assert_eq!(send(3, None).await, 202);
    assert_eq!(
        send(4, Some(format!("00-{last}-b7ad6b7169203331-01"))).await,
        202
    );

    // Spans are exported in the order they end: once the last request's server span is in,
    // anything the two unsampled requests made would be too.
    eventually("the last request's server span", || async {
        collector
            .of_trace(last)
            .iter()
            .any(|s| s.kind == SpanKind::Server as i32)
    })
    .await;
    let traces = collector.trace_ids();
    assert_eq!(
        traces,
        [sampled.to_owned(), last.to_owned()].into(),
        "only the sampled callers' traces are exported"
    );
    let spans = collector.of_trace(sampled);
    let server = one(&spans, "api server", |s| s.kind == SpanKind::Server as i32);
    assert_eq!(server.service, "pmctl-serve-api");
    assert_eq!(
        server
            .resource
            .get("deployment.environment.name")
            .map(String::as_str),
        Some("e2e"),
        "{:?}",
        server.resource
    );
    assert_eq!(
        server.resource.get("service.namespace").map(String::as_str),
        Some("payments")
    );
    drop(api);
}

#[tokio::test]
async fn a_webhook_through_ingests_http_sink_is_one_trace_down_to_the_api_statements() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let db = TestDatabase::new().await;
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_INTERNAL_TOKEN", "e2e-trace-token"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ];
    let api = Pmctl::start(&["serve-api"], &env).await;
    let api_url = api.url("");
    let ingest = Pmctl::start(
        &["serve-ingest", "--sink", "http", "--api-url", &api_url],
        &env,
    )
    .await;
    ingest.wait_for("/health/ready", 200).await;

    let trace_id = "5cf92f3577b34da6a3ce929d0e0e4737";
    let caller_span = "10f067aa0ba902b8";
    let body = order_json("trace-http-1", "trace-http-o1", "created", 0);
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    assert_eq!(send_traced(&ingest, &body, Some(traceparent)).await, 202);

    // Ingest's server span ends last (after its forward, which waits for the API).
    server_spans_of(
        &collector,
        trace_id,
        &["pmctl-serve-ingest", "pmctl-serve-api"],
    )
    .await;
    let spans = collector.of_trace(trace_id);
    let ingest_server = one(&spans, "ingest server", |s| {
        s.service == "pmctl-serve-ingest" && s.kind == SpanKind::Server as i32
    });
    assert_eq!(ingest_server.parent, caller_span);
    let forward = one(&spans, "forward", |s| {
        s.service == "pmctl-serve-ingest" && s.kind == SpanKind::Client as i32
    });
    assert_eq!(forward.name, "POST /internal/updates/orders");
    assert_eq!(forward.attribute("http.response.status_code"), Some("202"));
    let api_server = one(&spans, "api server", |s| {
        s.service == "pmctl-serve-api" && s.kind == SpanKind::Server as i32
    });
    assert_eq!(
        api_server.parent, forward.span_id,
        "the API continues ingest's forward"
    );
    assert_eq!(api_server.name, "POST /internal/updates/orders");
    // Down to the database: the API's statement spans are in the same trace.
    assert!(
        spans.iter().any(|s| s.service == "pmctl-serve-api"
            && s.kind == SpanKind::Client as i32
            && s.attribute("db.system").is_some()),
        "{spans:#?}"
    );
    drop((ingest, api));
}

#[tokio::test]
async fn a_capture_is_one_trace_from_the_operator_to_the_providers_server() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let db = TestDatabase::new().await;
    let otel = ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str());
    let provider = Pmctl::start(&["simulate-provider"], &[otel]).await;
    let provider_url = provider.url("");
    let api = Pmctl::start(
        &["serve-api", "--provider-url", &provider_url],
        &[
            ("PM_DATABASE_URL", db.url.as_str()),
            ("PM_WEBHOOK_SECRETS", SECRET),
            otel,
        ],
    )
    .await
    .keyed(&db)
    .await;
    let order = order_json("trace-cap-1", "trace-cap-o1", "updated", 5);
    let r = send_webhook(&api, "/webhooks/payments/orders", &order).await;
    assert_eq!(r.status(), 202);

    let trace_id = "6df92f3577b34da6a3ce929d0e0e4738";
    let caller_span = "20f067aa0ba902b9";
    let r = api
        .client()
        .post(api.url("/orders/trace-cap-o1/capture"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&serde_json::json!({"amount": 10, "currency": "USD", "idempotency_key": "trace-cap-k1"}))
        .send()
        .await
        .expect("capture");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // The API's server span ends after its provider call, which ends after the provider's.
    server_spans_of(
        &collector,
        trace_id,
        &["pmctl-serve-api", "pmctl-simulate-provider"],
    )
    .await;
    let spans = collector.of_trace(trace_id);
    let server = one(&spans, "api server", |s| {
        s.service == "pmctl-serve-api" && s.kind == SpanKind::Server as i32
    });
    assert_eq!(server.parent, caller_span);
    assert_eq!(server.name, "POST /orders/{order_id}/capture");
    let call = one(&spans, "provider call", |s| {
        s.service == "pmctl-serve-api"
            && s.kind == SpanKind::Client as i32
            && s.attribute("http.request.method").is_some()
    });
    assert_eq!(call.attribute("http.response.status_code"), Some("200"));
    assert!(
        call.attribute("url.full")
            .is_some_and(|u| u.starts_with(provider_url.as_str())),
        "{call:?}"
    );
    let provider_server = one(&spans, "provider server", |s| {
        s.service == "pmctl-simulate-provider" && s.kind == SpanKind::Server as i32
    });
    assert_eq!(
        provider_server.parent, call.span_id,
        "the provider continues the API's call"
    );
    // The capture's statements, before and after the call, are in the trace too.
    let statements: Vec<&str> = spans
        .iter()
        .filter(|s| {
            s.service == "pmctl-serve-api" && s.attribute("db.system") == Some("postgresql")
        })
        .map(|s| s.name.as_str())
        .collect();
    for expected in [
        "SELECT orders",
        "INSERT order_captures",
        "UPDATE order_captures",
    ] {
        assert!(
            statements.contains(&expected),
            "{expected} in {statements:?}"
        );
    }
    drop((api, provider));
}
