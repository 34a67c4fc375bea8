//! The audit trail: every operator action leaves a row — who, what, on which object, with
//! which correlation id, and how it ended — readable with the `admin` scope only.

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::app::TestApp;

async fn act(app: &TestApp, route: &str, body: Value, correlation: &str) -> u16 {
    app.http
        .post(app.url(route))
        .header("x-correlation-id", correlation)
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn summary(rows: &Value) -> Vec<(String, String, String, String)> {
    rows["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}:{}",
                    r["object_type"].as_str().unwrap_or_default(),
                    r["object_id"].as_str().unwrap_or_default()
                ),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["correlation_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn row(
    action: &str,
    object: &str,
    outcome: &str,
    correlation: &str,
) -> (String, String, String, String) {
    (
        action.into(),
        object.into(),
        outcome.into(),
        correlation.into(),
    )
}

#[tokio::test]
async fn operator_actions_are_recorded_with_who_what_and_how_it_ended() {
    let app = TestApp::spawn().await;
    let dispute = app.open_dispute("ord-a").await;
    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-a", "status": "success"})),
        )
        .mount(&app.provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/dispute-representments/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "rep_a"})))
        .mount(&app.provider)
        .await;
    app.order_in("ord-c", "updated").await;

    let capture = |key: &str| json!({"amount": 10, "currency": "USD", "idempotency_key": key});
    assert_eq!(
        act(
            &app,
            "/orders/ord-c/hold",
            json!({"action": "set", "reason": "risk"}),
            "c-1"
        )
        .await,
        200
    );
    assert_eq!(
        act(&app, "/orders/ord-c/capture", capture("k-1"), "c-2").await,
        409
    );
    assert_eq!(
        act(
            &app,
            "/orders/ord-c/hold",
            json!({"action": "clear"}),
            "c-3"
        )
        .await,
        200
    );
    assert_eq!(
        act(&app, "/orders/ord-c/capture", capture("k-1"), "c-4").await,
        200
    );
    let evidence = json!({"fields": {"tracking": "1Z"}, "files": []});
    assert_eq!(
        act(
            &app,
            &format!("/disputes/{dispute}/evidence"),
            evidence,
            "c-5"
        )
        .await,
        200
    );
    assert_eq!(
        act(
            &app,
            &format!("/disputes/{dispute}/submit"),
            json!({}),
            "c-6"
        )
        .await,
        202
    );

    // Operator actions only: the harness's own key creation is in the trail too.
    let (status, trail) = app
        .get("/audit?sort=asc&object_type=order&object_type_=x")
        .await;
    assert_eq!(status, 400, "unknown parameters are refused: {trail}");
    let (status, trail) = app
        .get(&format!(
            "/audit?sort=asc&{}",
            [
                "hold_set",
                "hold_cleared",
                "capture_requested",
                "capture_settled",
                "evidence_saved",
                "representment_submitted"
            ]
            .map(|a| format!("action={a}"))
            .join("&")
        ))
        .await;
    assert_eq!(status, 200, "{trail}");
    let d = format!("dispute:{dispute}");
    assert_eq!(
        summary(&trail),
        [
            row("hold_set", "order:ord-c", "applied", "c-1"),
            row(
                "capture_requested",
                "order:ord-c",
                "refused: on hold",
                "c-2"
            ),
            row("hold_cleared", "order:ord-c", "applied", "c-3"),
            row("capture_requested", "order:ord-c", "pending", "c-4"),
            row("capture_settled", "order:ord-c", "success", "c-4"),
            row("evidence_saved", &d, "applied", "c-5"),
            row("representment_submitted", &d, "applied", "c-6"),
        ],
        "{trail}"
    );
    let actors: Vec<_> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["actor"].clone())
        .collect();
    assert!(
        actors
            .iter()
            .all(|a| a.as_str().is_some_and(|a| a.starts_with("test-"))),
        "{actors:?}"
    );
    assert_eq!(trail["items"][4]["detail"]["provider_tx_id"], "tx-a");

    // Filters and pagination, like the other lists.
    let (_, order_trail) = app
        .get("/audit?object_type=order&object_id=ord-c&action=capture_settled")
        .await;
    assert_eq!(
        summary(&order_trail),
        [row("capture_settled", "order:ord-c", "success", "c-4")]
    );
    let (_, first) = app.get("/audit?limit=2").await;
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = app.get(&format!("/audit?limit=2&cursor={cursor}")).await;
    assert_eq!(
        summary(&second)[0].0,
        "capture_settled",
        "newest first: {second}"
    );
}

#[tokio::test]
async fn only_admin_keys_read_the_trail() {
    let app = TestApp::spawn().await;
    let (_, reader) = pm_storage::api_keys::create(
        &app.db.pool,
        "reader",
        &[
            pm_domain::api_key::Scope::Read,
            pm_domain::api_key::Scope::Operate,
        ],
        None,
        &pm_storage::audit::Actor::new("cli:tests", None),
        pm_domain::time::now(),
    )
    .await
    .expect("key");
    let r = pm_api::testing::client_with_key(&reader)
        .get(app.url("/audit"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let (status, trail) = app
        .get("/audit?action=api_key_created&object_type=api_key&object_id=reader")
        .await;
    assert_eq!(status, 200);
    assert_eq!(trail["items"][0]["actor"], "cli:tests");
    assert_eq!(
        trail["items"][0]["detail"]["scopes"],
        json!(["read", "operate"])
    );
}
