//! Captures whose answer is lost, between real processes: `serve-api` killed while the
//! provider (`simulate-provider`, capturing and then never answering) holds the call, a new
//! `serve-api`, and `pmctl reconcile-captures`; and the reconciliation inside `serve-api`.

use std::process::Command;

use pm_storage::testing::TestDatabase;
use serde_json::{json, Value};

use crate::process::{eventually, order_json, send_webhook, Pmctl, SECRET};

async fn provider(fault: &str) -> Pmctl {
    Pmctl::start(
        &[
            "simulate-provider",
            "--capture-fault",
            fault,
            "--capture-fault-rate",
            "1",
        ],
        &[],
    )
    .await
}

async fn api(db: &TestDatabase, provider: &Pmctl, extra: &[&str]) -> Pmctl {
    let provider_url = provider.url("");
    let mut args = vec!["serve-api", "--provider-url", &provider_url];
    args.extend_from_slice(extra);
    Pmctl::start(
        &args,
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await
    .keyed(db)
    .await
}

async fn capture(api: &Pmctl, order_id: &str, key: &str) -> reqwest::Result<(u16, Value)> {
    let r = api
        .client()
        .post(api.url(&format!("/orders/{order_id}/capture")))
        .json(&json!({"amount": 10, "currency": "USD", "idempotency_key": key}))
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
}

async fn charges(provider: &Pmctl) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(provider.url("/_sim/accepted"))
        .await
        .expect("accepted")
        .json()
        .await
        .expect("json");
    all.into_iter().filter(|a| a["type"] == "capture").collect()
}

async fn open_order(api: &Pmctl, order_id: &str) {
    let r = send_webhook(
        api,
        "/webhooks/payments/orders",
        &order_json(&format!("evt-{order_id}"), order_id, "updated", 5),
    )
    .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn an_api_killed_during_a_capture_is_settled_by_reconcile_captures() {
    let db = TestDatabase::new().await;
    let sim = provider("charge-then-timeout").await;
    let stale = ["--capture-stale-after", "1s"];
    let mut first = api(
        &db,
        &sim,
        &[
            "--provider-timeout",
            "2m",
            "--capture-reconcile-interval",
            "0s",
        ],
    )
    .await;
    open_order(&first, "ord-kill").await;

    let (url, client) = (first.url(""), first.client());
    let hung = tokio::spawn(async move {
        client
            .post(format!("{url}/orders/ord-kill/capture"))
            .json(&json!({"amount": 10, "currency": "USD", "idempotency_key": "key-a"}))
            .send()
            .await
    });
    eventually("the provider captured", || async {
        charges(&sim).await.len() == 1
    })
    .await;
    first.kill9();
    assert!(hung.await.expect("join").is_err(), "the API died mid-call");

    let mut args = vec!["--capture-reconcile-interval", "0s"];
    args.extend_from_slice(&stale);
    let second = api(&db, &sim, &args).await;
    let (status, p) = capture(&second, "ord-kill", "key-b")
        .await
        .expect("capture");
    assert_eq!(status, 409, "{p}");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("key-a")),
        "{p}"
    );

    // Once its attempt is older than --capture-stale-after, the dead attempt is the
    // reconciliation's to settle: before that a run leaves it alone.
    let reconcile = || {
        let out = Command::new(env!("CARGO_BIN_EXE_pmctl"))
            .args([
                "reconcile-captures",
                "--json",
                "--provider-url",
                &sim.url(""),
            ])
            .args(stale)
            .env("PM_DATABASE_URL", &db.url)
            .env("PM_LOG", "warn")
            .output()
            .expect("run reconcile-captures");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, report)
    };
    let mut settled = None;
    eventually("reconcile-captures settles the dead attempt", || {
        let (out, report) = reconcile();
        let done = report["captured"].as_u64() == Some(1);
        if done {
            settled = Some((out, report));
        }
        async move { done }
    })
    .await;
    let (out, report) = settled.expect("settled");
    assert!(out.status.success(), "{report}");
    assert_eq!(
        (report["examined"].as_u64(), report["captured"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );

    let (status, c) = capture(&second, "ord-kill", "key-a")
        .await
        .expect("capture");
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("success")),
        "{c}"
    );
    let (status, _) = capture(&second, "ord-kill", "key-b")
        .await
        .expect("capture");
    assert_eq!(status, 409);
    let charged = charges(&sim).await;
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(charged[0]["transaction_id"], c["provider_tx_id"]);
}

#[tokio::test]
async fn serve_api_settles_lost_answers_on_its_own() {
    let db = TestDatabase::new().await;
    let sim = provider("charge-then-error").await;
    let api = api(
        &db,
        &sim,
        &[
            "--provider-attempts",
            "1",
            "--capture-reconcile-interval",
            "300ms",
        ],
    )
    .await;
    open_order(&api, "ord-auto").await;
    let (status, p) = capture(&api, "ord-auto", "key-a").await.expect("capture");
    assert_eq!(status, 502, "{p}");
    assert_eq!(p["type"], "/problems/capture-outcome-unknown");

    let client = api.client();
    eventually("the reconciliation settled the capture", || async {
        let Ok(r) = client
            .get(api.url("/orders/ord-auto/captures"))
            .send()
            .await
        else {
            return false;
        };
        let list: Value = r.json().await.unwrap_or(Value::Null);
        list[0]["status"] == "success"
    })
    .await;
    let metrics = client
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"pm_capture_outcomes_total{outcome="success",settled_by="reconciliation"} 1"#
        ),
        "{metrics}"
    );
    assert_eq!(charges(&sim).await.len(), 1);
}
