//! Hold and capture: the provider is called once per request, outside transactions, and
//! idempotency keys are enforced.

use serde_json::json;
use wiremock::matchers::{body_json, header, header_exists, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::app::TestApp;

fn capture_body(amount: f64, key: &str) -> serde_json::Value {
    json!({"amount": amount, "currency": "USD", "idempotency_key": key})
}

async fn provider_captures(app: &TestApp, tx: &str, status: &str) {
    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .and(header_exists("idempotency-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": tx, "status": status})),
        )
        .mount(&app.provider)
        .await;
}

#[tokio::test]
async fn hold_set_and_clear_are_recorded_and_block_capture() {
    let app = TestApp::spawn().await;
    app.order_in("ord-h", "updated").await;
    let (status, hold) = app
        .post_json(
            "/orders/ord-h/hold",
            &json!({"action": "set", "reason": "risk"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (hold["on_hold"].as_bool(), hold["hold_reason"].as_str()),
        (Some(true), Some("risk"))
    );

    let (status, p) = app
        .post_json("/orders/ord-h/capture", &capture_body(10.0, "k-h"))
        .await;
    assert_eq!(status, 409, "{p}");
    assert!(p["detail"].as_str().expect("detail").contains("on hold"));
    assert_eq!(app.count("order_captures").await, 0);

    let (status, hold) = app
        .post_json("/orders/ord-h/hold", &json!({"action": "clear"}))
        .await;
    assert_eq!((status, hold["on_hold"].as_bool()), (200, Some(false)));
    let (_, events) = app
        .get("/orders/ord-h/events?kind=hold_set&kind=hold_cleared")
        .await;
    let kinds: Vec<_> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("hold_set"), json!("hold_cleared")]);

    assert_eq!(
        app.post_json("/orders/nope/hold", &json!({"action": "clear"}))
            .await
            .0,
        404
    );
    let (status, p) = app
        .post_json("/orders/ord-h/hold", &json!({"action": "set"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"][0]["field"], "reason");
}

#[tokio::test]
async fn capture_is_idempotent_on_its_key_with_one_provider_call() {
    let app = TestApp::spawn().await;
    app.order_in("ord-c", "updated").await;
    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .and(header("idempotency-key", "cap-1"))
        .and(header("x-correlation-id", "corr-42"))
        .and(body_json(json!({"order_id": "ord-c", "amount": 25.50, "currency": "USD", "idempotency_key": "cap-1"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"transaction_id": "tx-1", "status": "success"})))
        .expect(1)
        .mount(&app.provider)
        .await;
    let send = || {
        app.http
            .post(app.url("/orders/ord-c/capture"))
            .header("x-correlation-id", "corr-42")
            .json(&capture_body(25.5, "cap-1"))
            .send()
    };
    let first = send().await.expect("send");
    assert_eq!(first.status(), 200);
    let text = first.text().await.expect("text");
    assert!(text.contains(r#""amount":25.50,"#), "{text}");
    let first: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(first["provider_tx_id"], "tx-1");
    assert_eq!(first["status"], "success");
    let replay: serde_json::Value = send().await.expect("send").json().await.expect("json");
    assert_eq!(replay, first);

    let (status, p) = app
        .post_json("/orders/ord-c/capture", &capture_body(30.0, "cap-1"))
        .await;
    assert_eq!(status, 422, "{p}");
    let (status, p) = app
        .post_json("/orders/ord-c/capture", &capture_body(25.5, "cap-2"))
        .await;
    assert_eq!(status, 409, "{p}");
    assert!(p["detail"]
        .as_str()
        .expect("detail")
        .contains("already captured"));
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM order_events WHERE kind LIKE 'capture%' ORDER BY created_at",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("events");
    assert_eq!(kinds, ["capture_requested", "capture_completed"]);
    // MockServer verifies `expect(1)` when dropped.
}

#[tokio::test]
async fn capture_refusals() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post_json("/orders/ghost/capture", &capture_body(1.0, "k1"))
            .await
            .0,
        404
    );
    app.order_in("ord-final", "failed").await;
    let (status, p) = app
        .post_json("/orders/ord-final/capture", &capture_body(1.0, "k2"))
        .await;
    assert_eq!(status, 409);
    assert!(p["detail"].as_str().expect("detail").contains("final"));
    let (status, p) = app
        .post_json(
            "/orders/ord-final/capture",
            &json!({"amount": -1, "currency": "US"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["errors"].as_array().map(Vec::len), Some(3));
    assert_eq!(app.count("order_captures").await, 0);
}

#[tokio::test]
async fn a_declined_capture_is_502_with_the_reason_and_replays_the_same() {
    let app = TestApp::spawn().await;
    app.order_in("ord-dec", "created").await;
    provider_captures(&app, "tx-9", "declined").await;
    let (status, p) = app
        .post_json("/orders/ord-dec/capture", &capture_body(5.0, "k-dec"))
        .await;
    assert_eq!(status, 502);
    assert!(
        p["detail"].as_str().expect("detail").contains("declined"),
        "{p}"
    );
    let (status, again) = app
        .post_json("/orders/ord-dec/capture", &capture_body(5.0, "k-dec"))
        .await;
    assert_eq!(
        (status, again["detail"].clone()),
        (502, p["detail"].clone())
    );
    assert_eq!(
        app.provider.received_requests().await.map(|r| r.len()),
        Some(1)
    );
    let failed: String = sqlx::query_scalar("SELECT status FROM order_captures")
        .fetch_one(&app.db.pool)
        .await
        .expect("row");
    assert_eq!(failed, "failed");
}

#[tokio::test]
async fn a_provider_outage_leaves_the_capture_unknown_and_retryable_with_the_same_key() {
    let app = TestApp::spawn().await;
    app.order_in("ord-out", "updated").await;
    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .mount(&app.provider)
        .await;
    let (status, p) = app
        .post_json("/orders/ord-out/capture", &capture_body(7.0, "k-out"))
        .await;
    assert_eq!(status, 502, "{p}");
    assert!(p["detail"]
        .as_str()
        .expect("detail")
        .contains("same idempotency_key"));
    let unknown: String = sqlx::query_scalar("SELECT status FROM order_captures")
        .fetch_one(&app.db.pool)
        .await
        .expect("row");
    assert_eq!(unknown, "unknown");

    provider_captures(&app, "tx-late", "success").await;
    let (status, c) = app
        .post_json("/orders/ord-out/capture", &capture_body(7.0, "k-out"))
        .await;
    assert_eq!(
        (status, c["provider_tx_id"].as_str()),
        (200, Some("tx-late"))
    );
}

#[tokio::test]
async fn a_provider_4xx_fails_the_capture_with_its_message() {
    let app = TestApp::spawn().await;
    app.order_in("ord-4xx", "updated").await;
    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"error": {"code": "amount_exceeds", "message": "amount exceeds the authorization"}})))
        .expect(1)
        .mount(&app.provider)
        .await;
    let (status, p) = app
        .post_json("/orders/ord-4xx/capture", &capture_body(7.0, "k-4xx"))
        .await;
    assert_eq!(status, 502);
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("amount exceeds the authorization"),
        "{p}"
    );
}
