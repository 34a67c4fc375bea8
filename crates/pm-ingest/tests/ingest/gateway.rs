//! What the gateway itself serves, whatever its sink.

use serde_json::Value;

use crate::support::{closed_port, Ingest, TOKEN};

async fn gateway() -> Ingest {
    // No downstream is needed: none of these requests reaches the sink.
    Ingest::http_sink(&format!("http://127.0.0.1:{}", closed_port()), TOKEN).await
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let ingest = gateway().await;
    let r = ingest.get("/orders").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/not-found", "{problem}");

    let r = ingest.get("/webhooks/payments/orders").await;
    assert_eq!(r.status(), 405);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/method-not-allowed", "{problem}");

    // The API's internal routes are not reachable through the public gateway.
    let r = ingest
        .http
        .post(ingest.url("/internal/updates/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn liveness_metrics_and_correlation_ids() {
    let ingest = gateway().await;
    let r = ingest
        .http
        .get(ingest.url("/health/live"))
        .header("x-correlation-id", "corr-live-1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("x-correlation-id").map(|v| v.as_bytes()),
        Some(&b"corr-live-1"[..])
    );
    let text = ingest.metrics().await;
    assert!(
        text.contains(
            r#"pm_http_requests_total{method="GET",route="/health/live",status="200"} 1"#
        ),
        "{text}"
    );
    for family in [
        "pm_ingest_webhooks",
        "pm_ingest_rejections",
        "pm_ingest_sink_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}\n{text}"
        );
    }
}
