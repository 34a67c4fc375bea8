//! HTTP middleware: correlation id, the server span (W3C `traceparent` accepted),
//! per-route metrics and one log line per request.
//!
//! Routes are measured by their template (`/orders/{order_id}`), never by the concrete
//! path, so the number of time series stays bounded whatever the traffic.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tracing::Instrument;

use pm_telemetry::correlation::{self, CorrelationId};
use pm_telemetry::metrics::{Registry, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Request counters and latency histograms of one HTTP server.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl HttpMetrics {
    /// Registers `http_requests_total` and `http_request_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            latency.clone(),
        );
        Self { requests, latency }
    }
}

/// The method as a metric label: the standard methods by name, any other (HTTP allows
/// arbitrary extension methods) as `OTHER`, so a client cannot mint time series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The middleware (`axum::middleware::from_fn_with_state(metrics, http::track)`).
///
/// Assigns the correlation id (request extension, response header, log span), measures the
/// request, and logs it: server errors at `error` (503 at `debug`: see below), client errors
/// at `info`, the rest at `debug` so that a webhook firehose does not drown the logs.
pub async fn track(State(metrics): State<HttpMetrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(req.method()).to_owned();
    let id = CorrelationId::from_header(
        req.headers()
            .get(correlation::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    req.extensions_mut().insert(id.clone());
    // The server span of OpenTelemetry's HTTP conventions: named by the route template,
    // a child of the caller's `traceparent` when one came.
    let span_name = if route == "unmatched" {
        method.clone()
    } else {
        format!("{method} {route}")
    };
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        method = %method,
        route = %route,
        otel.name = %span_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    pm_telemetry::propagation::set_parent_from_http(&span, req.headers());

    let mut response = next.run(req).instrument(span.clone()).await;

    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(correlation::HEADER, value);
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        // Server errors only: a 4xx is the client's failure, not the server span's.
        span.record("otel.status_code", "error");
    }
    let elapsed = started.elapsed();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| match status {
        // 503 is the service protecting itself (shedding, timeouts, the database away): the
        // cause is logged once where it is decided, and under a flood one line per refused
        // request would cost more than the request did.
        503 => tracing::debug!(status, latency_ms, "request refused: unavailable"),
        500.. => tracing::error!(status, latency_ms, "request failed"),
        400..=499 => tracing::info!(status, latency_ms, "request refused"),
        _ => tracing::debug!(status, latency_ms, "request served"),
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use pm_telemetry::metrics::SharedRegistry;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_per_route_template_and_echo_the_correlation_id() {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let app =
            Router::new()
                .route(
                    "/orders/{id}",
                    get(
                        |axum::Extension(id): axum::Extension<CorrelationId>| async move {
                            id.to_string()
                        },
                    ),
                )
                .layer(axum::middleware::from_fn_with_state(metrics, track));
        let request = Request::builder()
            .uri("/orders/42")
            .header("X-Correlation-ID", "abc-1")
            .body(Body::empty());
        let response = app
            .clone()
            .oneshot(request.expect("request"))
            .await
            .expect("response");
        assert_eq!(
            response
                .headers()
                .get("x-correlation-id")
                .map(|v| v.as_bytes()),
            Some(&b"abc-1"[..])
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], b"abc-1");

        let response = app
            .oneshot(
                Request::builder()
                    .uri("/orders/43")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        let generated = response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

        let text = SharedRegistry::new(registry).render();
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/orders/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_count"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn unknown_methods_and_paths_share_one_label_value_each() {
        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(&mut registry);
        let app = Router::new()
            .route("/orders", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(metrics, track));
        for (method, path) in [
            ("FROBNICATE", "/orders"),
            ("X-MINT-A-SERIES", "/orders"),
            ("GET", "/random/1"),
            ("GET", "/random/2"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .expect("request");
            app.clone().oneshot(request).await.expect("response");
        }
        let text = SharedRegistry::new(registry).render();
        assert!(text.contains(r#"method="OTHER",route="/orders""#), "{text}");
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 2"#),
            "{text}"
        );
        assert!(
            !text.contains("FROBNICATE") && !text.contains("/random/"),
            "{text}"
        );
    }
}
