//! Webhooks over HTTP: acknowledgements, duplicates, reordering, internal routes.

use serde_json::json;

use crate::app::{chargeback, order, TestApp, TOKEN};

#[tokio::test]
async fn an_order_webhook_is_applied_and_a_redelivery_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let body = order("evt-1", "ord-1", "created", "2026-01-01T00:00:00Z");
    let r = app.order_webhook(&body).await;
    assert_eq!(r.status(), 202);
    let ack: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (ack["status"].as_str(), ack["effect"].as_str()),
        (Some("accepted"), Some("created"))
    );

    let again = app.order_webhook(&body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<serde_json::Value>().await.expect("json")["status"],
        "duplicate"
    );
    assert_eq!(app.count("order_events").await, 1);

    let (status, o) = app.get("/orders/ord-1").await;
    assert_eq!(status, 200);
    assert_eq!(o["status"], "created");
    assert_eq!(o["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(o["hold_reason"], serde_json::Value::Null);
}

#[tokio::test]
async fn twenty_parallel_deliveries_over_http_make_one_event() {
    let app = TestApp::spawn().await;
    let body = order("evt-par", "ord-par", "updated", "2026-01-01T00:00:03Z");
    let sends = (0..20).map(|_| app.order_webhook(&body));
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(app.count("order_events").await, 1);
    let (_, o) = app.get("/orders/ord-par").await;
    assert_eq!(o["status"], "updated");
}

#[tokio::test]
async fn reordered_webhooks_never_move_an_order_backwards() {
    let app = TestApp::spawn().await;
    // updated arrives first, then success, then the late created and an older updated.
    for (ev, status, at) in [
        ("e2", "updated", "2026-01-01T00:00:02Z"),
        ("e4", "success", "2026-01-01T00:00:04Z"),
        ("e1", "created", "2026-01-01T00:00:00Z"),
        ("e3", "updated", "2026-01-01T00:00:03Z"),
    ] {
        assert_eq!(
            app.order_webhook(&order(ev, "ord-r", status, at))
                .await
                .status(),
            202
        );
    }
    let (_, o) = app.get("/orders/ord-r").await;
    assert_eq!(
        (o["status"].as_str(), o["updated_at"].as_str()),
        (Some("success"), Some("2026-01-01T00:00:04Z"))
    );
    let (_, events) = app.get("/orders/ord-r/events").await;
    let effects: Vec<_> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["data"]["effect"].clone())
        .collect();
    assert_eq!(
        effects,
        [
            json!("created"),
            json!("applied"),
            json!("final_kept"),
            json!("final_kept")
        ]
    );
}

#[tokio::test]
async fn a_chargeback_for_an_unknown_order_is_404_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let r = app
        .chargeback_webhook(&chargeback("cb-1", "ord-missing", "opened"))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.expect("json");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("ord-missing"));
    for table in ["disputes", "dispute_events", "processed_webhooks"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    // Once the order exists, the provider's retry applies in full.
    app.order_in("ord-missing", "success").await;
    assert_eq!(
        app.chargeback_webhook(&chargeback("cb-1", "ord-missing", "opened"))
            .await
            .status(),
        202
    );
    let (_, list) = app.get("/disputes?order_id=ord-missing").await;
    assert_eq!(list["items"][0]["status"], "open");
    assert!(app
        .get_text("/disputes?order_id=ord-missing")
        .await
        .contains(r#""amount":100.50,"#));
}

#[tokio::test]
async fn dispute_lifecycle_over_http() {
    let app = TestApp::spawn().await;
    let id = app.open_dispute("ord-d").await;
    let mut closed = chargeback("cb-close", "ord-d", "closed");
    closed["meta"] = json!({"resolution": "LOST"});
    closed["occurred_at"] = json!("2026-01-05T00:00:00Z");
    assert_eq!(app.chargeback_webhook(&closed).await.status(), 202);
    let (_, d) = app.get(&format!("/disputes/{id}")).await;
    assert_eq!(
        (d["status"].as_str(), d["closed_at"].as_str()),
        (Some("lost"), Some("2026-01-05T00:00:00Z"))
    );
    // A late opened (new event id) does not reopen it.
    assert_eq!(
        app.chargeback_webhook(&chargeback("cb-late-open", "ord-d", "opened"))
            .await
            .status(),
        202
    );
    let (_, d) = app.get(&format!("/disputes/{id}")).await;
    assert_eq!(d["status"], "lost");
    let (_, events) = app.get(&format!("/disputes/events?dispute_id={id}")).await;
    let kinds: Vec<_> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["webhook_opened", "provider_decision", "webhook_opened"]
    );
}

fn envelope(kind: &str, payload: serde_json::Value) -> serde_json::Value {
    json!({
        "event_id": "01900000-0000-7000-8000-000000000001",
        "type": kind,
        "received_at": "2026-11-20T10:00:00Z",
        "payload": payload
    })
}

#[tokio::test]
async fn internal_updates_need_the_service_token_and_keep_ingests_event_id() {
    let app = TestApp::spawn().await;
    let env = envelope(
        "order",
        order("evt-int", "ord-int", "created", "2026-01-01T00:00:00Z"),
    );
    let url = app.url("/internal/updates/orders");
    let no_token = app.http.post(&url).json(&env).send().await.expect("send");
    assert_eq!(no_token.status(), 401);
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&env)
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    assert_eq!(app.count("orders").await, 0);

    let ok = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&env)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 202);
    let (event_id, created_at): (uuid::Uuid, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT event_id, created_at FROM order_events")
            .fetch_one(&app.db.pool)
            .await
            .expect("event");
    assert_eq!(event_id.to_string(), "01900000-0000-7000-8000-000000000001");
    assert_eq!(pm_domain::time::format(&created_at), "2026-11-20T10:00:00Z");
    let dup = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&env)
        .send()
        .await
        .expect("send");
    assert_eq!(dup.status(), 200);

    // The envelope type must match the route; an invalid payload is 422 like a webhook.
    let wrong_type = envelope("chargeback", chargeback("cb-x", "ord-int", "opened"));
    let r = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&wrong_type)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    let bad_payload = envelope("order", json!({"order_id": "x"}));
    let r = app
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&bad_payload)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    let disputes_url = app.url("/internal/updates/disputes");
    let unknown = envelope("chargeback", chargeback("cb-y", "ord-nope", "opened"));
    let r = app
        .http
        .post(&disputes_url)
        .bearer_auth(TOKEN)
        .json(&unknown)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}
