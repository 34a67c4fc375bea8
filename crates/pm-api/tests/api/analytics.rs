//! `GET /analytics/*`: the analytics read models over HTTP, their windows of days, and the
//! 400s (never a 5xx) for whatever else a client sends.

use pm_domain::domain_event::IncomingEvent;
use serde_json::{json, Value};

use crate::app::TestApp;

const DISPUTE_1: &str = "0190a5c4-0000-7000-8000-0000000000d1";
const DISPUTE_2: &str = "0190a5c4-0000-7000-8000-0000000000d2";

/// Projects one event as `pmctl project-analytics` would have.
async fn project(app: &TestApp, n: u32, event_type: &str, aggregate: &str, at: &str, data: Value) {
    let aggregate_type = if event_type.starts_with("order") {
        "order"
    } else {
        "dispute"
    };
    let text = json!({
        "event_id": format!("0190a5c4-0000-7000-8000-{n:012}"),
        "event_type": event_type, "schema_version": 1,
        "aggregate_type": aggregate_type, "aggregate_id": aggregate, "sequence": 1,
        "occurred_at": at, "correlation_id": null, "trace_id": null, "data": data,
    })
    .to_string();
    let event = IncomingEvent::parse(text.as_bytes()).expect("an event");
    pm_storage::analytics::apply(&app.db.pool, &event)
        .await
        .expect("projected");
}

fn created(order: &str) -> Value {
    json!({"order_id": order, "user_id": crate::app::USER, "status": "created",
           "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"})
}

fn capture(order: &str, amount: &str, currency: &str, ok: bool) -> Value {
    let mut data = json!({"order_id": order, "idempotency_key": format!("k-{order}"),
                          "amount": amount, "currency": currency, "settled_by": "request"});
    if ok {
        data["provider_tx_id"] = json!("tx-1");
        data["captured_at"] = json!("2026-01-01T00:00:00Z");
    } else {
        data["reason"] = json!("declined");
    }
    data
}

fn decided(dispute: &str, reason: &str, opened: &str, closed: &str) -> Value {
    json!({"dispute_id": dispute, "order_id": "o1", "reason": reason, "amount": "10.00",
           "currency": "USD", "opened_at": opened, "closed_at": closed,
           "previous_status": "submitted"})
}

async fn seed(app: &TestApp) {
    project(
        app,
        1,
        "order_created",
        "o1",
        "2026-01-01T10:00:00Z",
        created("o1"),
    )
    .await;
    project(
        app,
        2,
        "order_created",
        "o2",
        "2026-01-01T23:59:59Z",
        created("o2"),
    )
    .await;
    project(
        app,
        3,
        "order_created",
        "o3",
        "2026-01-02T00:00:00Z",
        created("o3"),
    )
    .await;
    let at = "2026-01-01T12:00:00Z";
    project(
        app,
        4,
        "order_captured",
        "o1",
        at,
        capture("o1", "100.50", "USD", true),
    )
    .await;
    project(
        app,
        5,
        "order_captured",
        "o2",
        at,
        capture("o2", "0.05", "USD", true),
    )
    .await;
    project(
        app,
        6,
        "order_captured",
        "o3",
        at,
        capture("o3", "1000", "JPY", true),
    )
    .await;
    project(
        app,
        7,
        "order_capture_failed",
        "o4",
        at,
        capture("o4", "7", "USD", false),
    )
    .await;
    let won = decided(
        DISPUTE_1,
        "fraud",
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
    );
    let lost = decided(
        DISPUTE_2,
        "fraud",
        "2026-01-01T00:00:00Z",
        "2026-01-03T00:00:00Z",
    );
    project(app, 8, "dispute_won", DISPUTE_1, at, won).await;
    project(app, 9, "dispute_lost", DISPUTE_2, at, lost).await;
}

#[tokio::test]
async fn the_read_models_are_served_per_day_with_exact_amounts() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    let (status, orders) = app.get("/analytics/orders").await;
    assert_eq!(status, 200, "{orders}");
    assert_eq!(
        orders,
        json!({"days": [
            {"day": "2026-01-01", "orders_created": 2},
            {"day": "2026-01-02", "orders_created": 1},
        ]})
    );
    let (_, one_day) = app
        .get("/analytics/orders?from=2026-01-02&to=2026-01-03")
        .await;
    assert_eq!(one_day["days"].as_array().map(Vec::len), Some(1));

    // Amounts keep their digits: the raw body, not a float.
    let text = app.get_text("/analytics/captures").await;
    assert!(
        text.contains(r#""captured_amount":100.55"#) && text.contains(r#""failed_amount":7.00"#),
        "{text}"
    );
    assert!(
        text.contains(r#""captured_amount":1000,"#),
        "JPY has no minor unit: {text}"
    );
    let (_, captures) = app.get("/analytics/captures?to=2026-01-02").await;
    let days = captures["days"].as_array().expect("days");
    assert_eq!(days.len(), 2, "{captures}");
    assert_eq!(days[0]["currency"], "JPY");
    assert_eq!(days[1]["currency"], "USD");
    assert_eq!(days[1]["captured"], 2);
    assert_eq!(days[1]["captured_minor_units"], 10055);
    assert_eq!(days[1]["failed"], 1);
    assert_eq!(days[1]["failed_minor_units"], 700);

    let (_, disputes) = app.get("/analytics/disputes").await;
    assert_eq!(
        disputes["outcomes"],
        json!([{"reason": "fraud", "won": 1, "lost": 1, "win_rate": 0.5}])
    );
    let times = &disputes["time_to_decision"];
    assert_eq!(times["decided"], 2);
    assert_eq!(times["mean_seconds"], 0.5 * (3_600.0 + 172_800.0));
    assert_eq!(times["p50_seconds"], 0.5 * (3_600.0 + 172_800.0));
    // Decisions are windowed by the day they were made.
    let (_, first_day) = app
        .get("/analytics/disputes?from=2026-01-01&to=2026-01-02")
        .await;
    assert_eq!(
        first_day,
        json!({
            "outcomes": [{"reason": "fraud", "won": 1, "lost": 0, "win_rate": 1.0}],
            "time_to_decision": {"decided": 1, "mean_seconds": 3600.0,
                                 "p50_seconds": 3600.0, "p90_seconds": 3600.0}
        })
    );
}

#[tokio::test]
async fn empty_read_models_are_empty_lists_and_null_statistics() {
    let app = TestApp::spawn().await;
    for (path, empty) in [
        ("/analytics/orders", json!({"days": []})),
        ("/analytics/captures", json!({"days": []})),
        (
            "/analytics/disputes",
            json!({"outcomes": [], "time_to_decision": {
                "decided": 0, "mean_seconds": null, "p50_seconds": null, "p90_seconds": null}}),
        ),
    ] {
        assert_eq!(app.get(path).await, (200, empty), "{path}");
    }
}

#[tokio::test]
async fn bad_windows_are_400_problems_naming_the_parameter() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let cases = [
        ("from=2026-13-01", "from"),
        ("from=yesterday", "from"),
        ("from=2026-1-1", "from"),
        ("to=2026-01-01T00:00:00Z", "to"),
        ("from=0000-12-31", "from"),
        ("to=10000-01-01", "to"),
        ("from=%2B2026-01-01", "from"),
        ("from=", "from"),
        ("from=2026-01-01%00", "from"),
        ("from=2026-01-01&from=2026-01-02", "from"),
        ("from=2026-01-02&to=2026-01-02", "from"),
        ("from=2026-01-03&to=2026-01-02", "from"),
        ("limit=10", "limit"),
        ("day=2026-01-01", "day"),
    ];
    for route in ["orders", "captures", "disputes"] {
        for (query, name) in cases {
            let path = format!("/analytics/{route}?{query}");
            let r = app.http.get(app.url(&path)).send().await.expect("answer");
            assert_eq!(r.status(), 400, "{path}");
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
            let problem: Value = r.json().await.expect("a problem");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(&format!("`{name}`")), "{path}: {problem}");
        }
    }
}

#[tokio::test]
async fn the_routes_need_a_key_with_the_read_scope_and_are_documented() {
    let app = TestApp::spawn().await;
    let operate = app
        .key("operate-only", &[pm_domain::api_key::Scope::Operate])
        .await;
    let anonymous = reqwest::Client::new();
    let operator = pm_api::testing::client_with_key(&operate);
    for route in ["orders", "captures", "disputes"] {
        let url = app.url(&format!("/analytics/{route}"));
        let none = anonymous.get(&url).send().await.expect("answer");
        assert_eq!(none.status(), 401, "{url}");
        let wrong = operator.get(&url).send().await.expect("answer");
        assert_eq!(wrong.status(), 403, "{url}");
    }
    let (_, doc) = app.get("/openapi.json").await;
    for (route, schema) in [
        ("orders", "OrderVolume"),
        ("captures", "CaptureVolume"),
        ("disputes", "DisputeAnalytics"),
    ] {
        let op = &doc["paths"][format!("/analytics/{route}")]["get"];
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{route}"
        );
        assert!(op["responses"]["400"].is_object(), "{route}");
    }
}
