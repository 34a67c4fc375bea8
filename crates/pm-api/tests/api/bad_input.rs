//! Every bad input gets the documented 4xx, a message that says what is wrong, and
//! nothing is stored.

use pm_domain::signature;
use serde_json::{json, Value};

use crate::app::{chargeback, order, TestApp, SECRET};

async fn assert_nothing_stored(app: &TestApp) {
    for table in [
        "orders",
        "order_events",
        "disputes",
        "dispute_events",
        "processed_webhooks",
    ] {
        assert_eq!(app.count(table).await, 0, "{table} must stay empty");
    }
}

async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    (status, r.json().await.expect("problem body"))
}

fn error_fields(p: &Value) -> Vec<String> {
    p["errors"].as_array().map_or_else(Vec::new, |e| {
        e.iter()
            .map(|e| e["field"].as_str().unwrap_or("").to_owned())
            .collect()
    })
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in ["{", "[]", "not json", r#"{"order_id": }"#] {
        let (status, p) = problem(app.webhook_raw("/webhooks/payments/orders", body).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            p["detail"].as_str().expect("detail").contains("JSON"),
            "{p}"
        );
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn field_errors_are_422_and_all_listed() {
    let app = TestApp::spawn().await;
    let body = json!({"provider_event_id": "e1", "user_id": "not-a-uuid", "status": 7, "created_at": "yesterday"});
    let (status, p) = problem(app.order_webhook(&body).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        error_fields(&p),
        ["order_id", "user_id", "status", "created_at", "updated_at"]
    );
    let messages = p["errors"].to_string();
    assert!(
        messages.contains("is required")
            && messages.contains("UUID")
            && messages.contains("must be a string"),
        "{messages}"
    );
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn bad_money_is_422() {
    let app = TestApp::spawn().await;
    app.order_in("ord-m", "success").await;
    let cases = [
        (json!(-5), json!("USD"), "amount"),
        (json!("ten"), json!("USD"), "amount"),
        (json!(1.005), json!("USD"), "amount"),
        (json!(10), json!("usd"), "currency"),
        (json!(10), json!("XYZ"), "currency"),
    ];
    for (amount, currency, field) in cases {
        let mut body = chargeback("cb-m", "ord-m", "opened");
        body["amount"] = amount.clone();
        body["currency"] = currency;
        let (status, p) = problem(app.chargeback_webhook(&body).await).await;
        assert_eq!(
            (status, error_fields(&p)),
            (422, vec![field.to_owned()]),
            "{amount}"
        );
    }
    for table in ["disputes", "dispute_events"] {
        assert_eq!(app.count(table).await, 0);
    }
}

#[tokio::test]
async fn signatures_are_required_valid_and_fresh() {
    let app = TestApp::spawn().await;
    let body = order("e1", "o1", "created", "2026-01-01T00:00:00Z").to_string();
    let url = app.url("/webhooks/payments/orders");
    let send = |sig: Option<String>| {
        let mut req = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header(signature::HEADER, sig);
        }
        req.send()
    };
    let now = chrono::Utc::now().timestamp();
    let cases = [
        (None, "missing"),
        (Some("t=1,v1=zz".to_owned()), "must look like"),
        (
            Some(signature::header_value(
                b"wrong-secret",
                now,
                body.as_bytes(),
            )),
            "no v1 signature matches",
        ),
        (
            Some(signature::header_value(SECRET, now - 3600, body.as_bytes())),
            "away from now",
        ),
        (
            Some(signature::header_value(SECRET, now, b"{}")),
            "no v1 signature matches",
        ),
    ];
    for (sig, expected) in cases {
        let (status, p) = problem(send(sig).await.expect("send")).await;
        assert_eq!(status, 401);
        assert!(
            p["detail"].as_str().expect("detail").contains(expected),
            "{p}"
        );
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let mut big = order("e1", "o1", "created", "2026-01-01T00:00:00Z");
    big["meta"] = json!({"padding": "x".repeat(70 * 1024)});
    let (status, p) = problem(app.order_webhook(&big).await).await;
    assert_eq!(status, 413);
    assert!(p["detail"].as_str().expect("detail").contains("65536"));
    let r = app
        .http
        .post(app.url("/webhooks/payments/orders"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(problem(r).await.0, 415);
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn bad_queries_and_paths_are_400_or_404_with_problems() {
    let app = TestApp::spawn().await;
    for (path, status) in [
        ("/orders?status=done", 400),
        ("/orders?user_id=nope", 400),
        ("/orders?limit=0", 400),
        ("/orders?limit=1001", 400),
        ("/orders?cursor=garbage", 400),
        ("/orders?created_from=yesterday", 400),
        ("/orders?on_hold=maybe", 400),
        ("/orders?unknown=1", 400),
        ("/orders/events?kind=nope", 400),
        (
            "/orders/events?time_from=2026-01-02T00:00:00Z&time_to=2026-01-01T00:00:00Z",
            400,
        ),
        ("/disputes/not-a-uuid", 400),
        ("/disputes/events?dispute_id=nope", 400),
        ("/disputes?status=pending", 400),
        ("/orders/unknown-order", 404),
        ("/disputes/0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e", 404),
        ("/no/such/route", 404),
    ] {
        let r = app.http.get(app.url(path)).send().await.expect("send");
        let (got, p) = problem(r).await;
        assert_eq!(got, status, "{path}: {p}");
        assert!(!p["detail"].as_str().unwrap_or("").is_empty(), "{path}");
    }
    let r = app
        .http
        .delete(app.url("/orders"))
        .send()
        .await
        .expect("send");
    assert_eq!(problem(r).await.0, 405);
}

#[tokio::test]
async fn control_characters_are_refused_naming_the_field_and_a_value_the_database_refuses_is_never_a_500(
) {
    let app = TestApp::spawn().await;
    app.order_in("o-nul", "success").await;
    let before = app.count("dispute_events").await;
    // A NUL character passes JSON parsing; PostgreSQL's text type would refuse it.
    let mut body = chargeback("nul-1", "o-nul", "opened");
    body["reason"] = json!("fraud\u{0}");
    body["meta"] = json!({"note": "esc\u{1b}[31m"});
    let (status, p) = problem(app.chargeback_webhook(&body).await).await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(error_fields(&p), ["reason", "meta.note"]);
    assert_eq!(app.count("dispute_events").await, before, "nothing stored");
    assert_eq!(app.count("disputes").await, 0);

    let (status, p) = app
        .post_json(
            "/orders/o-nul/capture",
            &json!({"amount": 10.00, "currency": "USD", "idempotency_key": "clé-1"}),
        )
        .await;
    assert_eq!(status, 422, "a key that cannot become a header: {p}");
    assert_eq!(error_fields(&p), ["idempotency_key"]);

    // Query parameters and cursors: 400 naming the parameter, before any query runs.
    for (path, param) in [
        ("/disputes?reason=%00", "reason"),
        ("/disputes?reason=fraud%1B", "reason"),
        ("/orders/events?order_id=o%00", "order_id"),
        ("/orders?unknown%00=1", "unknown\u{0}"),
        // Decoded cursors with a time beyond year 9999 or before year 1, a NUL in the id, or
        // (disputes) an id that is not a UUID: each was a 500 or a 422 from PostgreSQL.
        (
            "/orders/events?cursor=YTI1MzQwMjMwMDgwMDAwMDAwMHx4",
            "cursor",
        ),
        ("/orders?cursor=ZC05MDAwMDAwMDAwMDAwMDAwMDAwfHg", "cursor"),
        ("/orders?cursor=ZDV8aWQA", "cursor"),
        ("/disputes?cursor=ZDV8bm90LWEtdXVpZA", "cursor"),
    ] {
        let (status, p) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {p}");
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("`{param}`")) || detail.contains("cursor"),
            "{path}: {p}"
        );
    }
}
