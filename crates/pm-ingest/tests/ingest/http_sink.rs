//! The http sink in front of the real API: answers pass through with their meaning.

use std::time::{Duration, Instant};

use pm_domain::signature;
use serde_json::Value;

use crate::support::{
    chargeback, closed_port, metric_value, order, Api, Ingest, CHARGEBACKS, ORDERS, SECRET, TOKEN,
    USER,
};

const INTERNAL_ORDERS: &str = "/internal/updates/orders";
const INTERNAL_DISPUTES: &str = "/internal/updates/disputes";

fn retry_after(r: &reqwest::Response) -> Option<&str> {
    r.headers().get("retry-after").and_then(|v| v.to_str().ok())
}

fn content_type(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_order_is_stored_by_the_api_and_a_redelivery_is_its_duplicate() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;
    let body = order("evt-1", "ord-1", USER);

    let r = ingest.webhook(ORDERS, &body).await;
    assert_eq!(r.status(), 202);
    let ack: Value = r.json().await.expect("json");
    assert_eq!(ack["status"], "accepted", "{ack}");
    assert!(ack["event_id"].is_string(), "{ack}");

    let (status, stored) = api.get("/orders/ord-1").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        (stored["status"].as_str(), stored["user_id"].as_str()),
        (Some("created"), Some(USER))
    );
    assert_eq!(api.count("order_events").await, 1);

    let again = ingest.webhook(ORDERS, &body).await;
    assert_eq!(again.status(), 200);
    let ack: Value = again.json().await.expect("json");
    assert_eq!(ack["status"], "duplicate", "{ack}");
    assert_eq!(api.count("order_events").await, 1);
    // Both reached the API: the http sink leaves deduplication to the database.
    assert_eq!(api.served(INTERNAL_ORDERS, 202).await, 1);
    assert_eq!(api.served(INTERNAL_ORDERS, 200).await, 1);

    let metrics = ingest.metrics().await;
    for (sample, want) in [
        (
            r#"pm_ingest_webhooks_total{kind="order",result="accepted"}"#,
            1,
        ),
        (
            r#"pm_ingest_webhooks_total{kind="order",result="duplicate"}"#,
            1,
        ),
        (
            r#"pm_ingest_sink_seconds_count{sink="http",kind="order"}"#,
            2,
        ),
    ] {
        assert_eq!(metric_value(&metrics, sample), want, "{sample}\n{metrics}");
    }
}

#[tokio::test]
async fn a_chargeback_for_an_unknown_order_passes_the_apis_404_through_unretried() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;

    let r = ingest
        .webhook(CHARGEBACKS, &chargeback("cb-1", "ord-unknown", USER))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(content_type(&r), Some("application/problem+json"));
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/not-found", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ord-unknown")),
        "{problem}"
    );
    assert_eq!(
        api.served(INTERNAL_DISPUTES, 404).await,
        1,
        "a 4xx is final"
    );
    assert_eq!(api.count("disputes").await, 0);
    let metrics = ingest.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_rejections_total{reason="downstream_4xx"}"#
        ),
        1,
        "{metrics}"
    );

    // Once the order exists, the provider's redelivery goes through.
    assert_eq!(
        ingest
            .webhook(ORDERS, &order("evt-o", "ord-unknown", USER))
            .await
            .status(),
        202
    );
    let r = ingest
        .webhook(CHARGEBACKS, &chargeback("cb-1", "ord-unknown", USER))
        .await;
    assert_eq!(r.status(), 202);
    let (_, disputes) = api.get("/disputes?order_id=ord-unknown").await;
    assert_eq!(disputes["items"][0]["amount"], 100.5, "{disputes}");
}

#[tokio::test]
async fn field_errors_are_answered_422_by_ingest_itself_with_every_error() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;

    let r = ingest
        .webhook(ORDERS, r#"{"order_id": 42, "user_id": "nope"}"#)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(content_type(&r), Some("application/problem+json"));
    let problem: Value = r.json().await.expect("json");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "order_id",
            "provider_event_id",
            "status",
            "updated_at",
            "user_id"
        ],
        "{problem}"
    );

    let r = ingest.webhook(CHARGEBACKS, r#"{"amount": "#).await;
    assert_eq!(r.status(), 400);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["type"], "/problems/malformed-json", "{problem}");

    assert_eq!(api.served(INTERNAL_ORDERS, 202).await, 0);
    let metrics = ingest.metrics().await;
    for reason in ["invalid_fields", "malformed_json"] {
        let sample = format!(r#"pm_ingest_rejections_total{{reason="{reason}"}}"#);
        assert_eq!(metric_value(&metrics, &sample), 1, "{sample}\n{metrics}");
    }
}

#[tokio::test]
async fn bad_stale_and_missing_signatures_are_401_and_never_forwarded() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;
    let body = order("evt-sig", "ord-sig", USER);
    let now = chrono::Utc::now().timestamp();

    let tampered = ingest
        .signed_at(ORDERS, &body, now)
        .body(body.replace("created", "success"))
        .send()
        .await
        .expect("request");
    let stale = ingest
        .signed_at(ORDERS, &body, now - 301)
        .send()
        .await
        .expect("request");
    let missing = ingest
        .http
        .post(ingest.url(ORDERS))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    for (what, r) in [
        ("tampered", tampered),
        ("stale", stale),
        ("missing", missing),
    ] {
        assert_eq!(r.status(), 401, "{what}");
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["type"], "/problems/invalid-signature", "{what}");
    }
    assert_eq!(api.count("orders").await, 0);
    let metrics = ingest.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_rejections_total{reason="invalid_signature"}"#
        ),
        3,
        "{metrics}"
    );
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_413_and_415() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;

    let padding = "x".repeat(64 * 1024);
    let big = format!(r#"{{"provider_event_id":"evt-big","pad":"{padding}"}}"#);
    let r = ingest.webhook(ORDERS, &big).await;
    assert_eq!(r.status(), 413);

    let body = order("evt-txt", "ord-txt", USER);
    let t = chrono::Utc::now().timestamp();
    let r = ingest
        .http
        .post(ingest.url(ORDERS))
        .header("content-type", "text/plain")
        .header(
            signature::HEADER,
            signature::header_value(SECRET, t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 415);
    assert_eq!(content_type(&r), Some("application/problem+json"));

    assert_eq!(api.count("orders").await, 0);
    let metrics = ingest.metrics().await;
    for reason in ["payload_too_large", "unsupported_media_type"] {
        let sample = format!(r#"pm_ingest_rejections_total{{reason="{reason}"}}"#);
        assert_eq!(metric_value(&metrics, &sample), 1, "{sample}\n{metrics}");
    }
}

#[tokio::test]
async fn an_unreachable_api_is_a_503_with_retry_after_after_bounded_retries() {
    let ingest = Ingest::http_sink(&format!("http://127.0.0.1:{}", closed_port()), TOKEN).await;
    let started = Instant::now();
    let r = ingest
        .webhook(ORDERS, &order("evt-down", "ord-down", USER))
        .await;
    assert_eq!(r.status(), 503);
    assert!(retry_after(&r).is_some_and(|s| s.parse::<u32>().is_ok()));
    assert_eq!(content_type(&r), Some("application/problem+json"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded retries"
    );
    let metrics = ingest.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_rejections_total{reason="downstream_unavailable"}"#
        ),
        1,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"pm_ingest_webhooks_total{kind="order",result="accepted"}"#
        ),
        0
    );
}

#[tokio::test]
async fn an_api_answering_5xx_is_retried_a_bounded_number_of_times_then_503() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, TOKEN).await;
    // The API answers 503 (database unavailable, nothing stored) to every webhook.
    api.db.pool.close().await;

    let r = ingest
        .webhook(ORDERS, &order("evt-5xx", "ord-5xx", USER))
        .await;
    assert_eq!(r.status(), 503);
    assert!(retry_after(&r).is_some());
    assert_eq!(
        api.served(INTERNAL_ORDERS, 503).await,
        4,
        "four attempts, then give up"
    );
}

#[tokio::test]
async fn a_wrong_internal_token_is_a_503_so_the_provider_retries() {
    let api = Api::spawn().await;
    let ingest = Ingest::http_sink(&api.base, "not-the-token").await;

    let r = ingest
        .webhook(ORDERS, &order("evt-tok", "ord-tok", USER))
        .await;
    // Ingest's own misconfiguration must not look like the provider's fault: a 4xx could
    // make the provider give up on the webhook.
    assert_eq!(r.status(), 503);
    assert_eq!(content_type(&r), Some("application/problem+json"));
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(api.served(INTERNAL_ORDERS, 401).await, 1);
    assert_eq!(api.count("orders").await, 0);
}

#[tokio::test]
async fn readiness_follows_the_api() {
    let api = Api::spawn().await;
    let ready = Ingest::http_sink(&api.base, TOKEN).await;
    let r = ready.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    let health: Value = r.json().await.expect("json");
    assert_eq!(health["checks"]["api"], "ok", "{health}");

    let down = Ingest::http_sink(&format!("http://127.0.0.1:{}", closed_port()), TOKEN).await;
    let r = down.get("/health/ready").await;
    assert_eq!(r.status(), 503);
    let health: Value = r.json().await.expect("json");
    assert_eq!(health["status"], "unavailable", "{health}");
    assert_eq!(down.get("/health/live").await.status(), 200);
}
