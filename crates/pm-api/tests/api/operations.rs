//! Health, metrics, OpenAPI and correlation ids.

use crate::app::{order, TestApp};

#[tokio::test]
async fn health_metrics_and_openapi() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/live").await.0, 200);
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(
        (status, ready["checks"]["database"].as_str()),
        (200, Some("ok"))
    );

    app.order_in("ord-m", "created").await;
    assert_eq!(app.get("/orders/ord-m").await.0, 200);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"pm_http_requests_total{method="GET",route="/orders/{order_id}",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"pm_webhooks_processed_total{kind="order",outcome="created"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("pm_http_request_duration_seconds_bucket"),
        "{metrics}"
    );

    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    for route in [
        "/webhooks/payments/orders",
        "/orders/{order_id}/capture",
        "/disputes/{dispute_id}/submit",
        "/health/ready",
    ] {
        assert!(
            doc["paths"].get(route).is_some(),
            "{route} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn correlation_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/orders"))
        .header("X-Correlation-ID", "abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-correlation-id"], "abc-123");
    let r = app.http.get(app.url("/orders")).send().await.expect("send");
    let generated = r.headers()["x-correlation-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(generated).is_ok());
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db.pool.close().await;
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, 503);
    assert_ne!(ready["checks"]["database"], "ok");
}

#[tokio::test]
async fn a_webhook_the_database_cannot_take_is_a_503_and_an_apply_error() {
    let app = TestApp::spawn().await;
    let before = app.get_text("/metrics").await;
    for kind in ["order", "chargeback"] {
        for cause in ["unavailable", "internal"] {
            let series =
                format!(r#"pm_webhook_apply_errors_total{{kind="{kind}",cause="{cause}"}} 0"#);
            assert!(before.contains(&series), "{series} missing from\n{before}");
        }
    }

    app.db.pool.close().await;
    let r = app
        .order_webhook(&order(
            "evt-down",
            "ord-down",
            "created",
            "2026-01-01T00:00:00Z",
        ))
        .await;
    assert_eq!(r.status(), 503);
    let after = app.get_text("/metrics").await;
    assert!(
        after.contains(r#"pm_webhook_apply_errors_total{kind="order",cause="unavailable"} 1"#),
        "{after}"
    );
    assert!(
        after.contains(r#"pm_webhook_apply_errors_total{kind="order",cause="internal"} 0"#),
        "{after}"
    );
}
