//! A capture never charges twice: against the simulated provider configured to capture and
//! then lose its answer (time out, or answer 500), with retries under the same key,
//! concurrent captures under other keys, restarts of the API in between, and the
//! reconciliation. The provider's own book is the witness: exactly one charge.

use std::time::Duration;

use futures::future::join_all;
use pm_api::captures::{reconcile, ReconcileReport, ReconcileSettings};
use pm_api::testing::hostile::Dress;
use pm_api::testing::{RunningApi, TestApi};
use pm_provider::{ProviderClient, ProviderConfig};
use pm_sim::provider::{Accepted, CaptureFault, ProviderBehaviour, ProviderSim};
use pm_storage::testing::TestDatabase;
use serde_json::{json, Value};

use crate::app::{order, SECRET};

struct Lab {
    db: TestDatabase,
    sim: ProviderSim,
    sim_url: String,
    http: reqwest::Client,
}

impl Lab {
    async fn new(behaviour: ProviderBehaviour) -> Lab {
        let sim = ProviderSim::new(behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sim_url = format!("http://{}", listener.local_addr().expect("addr"));
        let router = sim.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Lab {
            db: TestDatabase::new().await,
            sim,
            sim_url,
            http: reqwest::Client::new(),
        }
    }

    fn provider(&self, base_url: &str) -> ProviderConfig {
        ProviderConfig {
            base_url: base_url.to_owned(),
            request_timeout: Duration::from_millis(400),
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            ..ProviderConfig::default()
        }
    }

    /// Starts (or restarts) the API against the simulated provider.
    async fn api(&self) -> RunningApi {
        self.api_with_provider(&self.sim_url.clone()).await
    }

    async fn api_with_provider(&self, provider_url: &str) -> RunningApi {
        TestApi::new(SECRET)
            .provider(self.provider(provider_url))
            .spawn(self.db.pool.clone())
            .await
    }

    async fn order(&self, api: &RunningApi, order_id: &str) {
        let body = order(
            &format!("evt-{order_id}"),
            order_id,
            "updated",
            "2026-01-01T00:00:05Z",
        )
        .to_string();
        let r = Dress::valid()
            .apply(
                self.http
                    .post(format!("{}/webhooks/payments/orders", api.base)),
                SECRET,
                body.as_bytes(),
            )
            .send()
            .await
            .expect("webhook");
        assert_eq!(r.status(), 202);
    }

    async fn capture(&self, api: &RunningApi, order_id: &str, key: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/orders/{order_id}/capture", api.base))
            .bearer_auth(&api.key)
            .json(&json!({"amount": 42.10, "currency": "EUR", "idempotency_key": key}))
            .send()
            .await
            .expect("capture");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn captures_of(&self, api: &RunningApi, order_id: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/orders/{order_id}/captures", api.base))
            .bearer_auth(&api.key)
            .send()
            .await
            .expect("captures");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// The charges the provider made for an order.
    fn charges(&self, order_id: &str) -> Vec<String> {
        self.sim
            .accepted()
            .into_iter()
            .filter_map(|a| match a {
                Accepted::Capture {
                    order_id: o,
                    transaction_id,
                    status,
                    ..
                } if o == order_id && status == "success" => Some(transaction_id),
                _ => None,
            })
            .collect()
    }

    async fn reconcile(&self, stale_after: Duration) -> ReconcileReport {
        let client = ProviderClient::new(self.provider(&self.sim_url)).expect("client");
        reconcile(
            &self.db.pool,
            &client,
            ReconcileSettings {
                stale_after,
                batch: 100,
            },
            pm_domain::time::now(),
        )
        .await
        .expect("reconcile")
    }

    fn heal(&self) {
        self.sim.set_behaviour(ProviderBehaviour::default());
    }
}

fn losing(fault: CaptureFault) -> ProviderBehaviour {
    ProviderBehaviour {
        capture_fault: fault,
        capture_fault_rate: 1.0,
        ..ProviderBehaviour::default()
    }
}

fn kind(problem: &Value) -> &str {
    problem["type"].as_str().unwrap_or_default()
}

fn detail(problem: &Value) -> &str {
    problem["detail"].as_str().unwrap_or_default()
}

/// Exactly one capture of the order succeeded, under `key`, with the provider's one charge.
async fn one_success(lab: &Lab, api: &RunningApi, order_id: &str, key: &str) {
    let charges = lab.charges(order_id);
    assert_eq!(charges.len(), 1, "the provider charged {charges:?}");
    let captures = lab.captures_of(api, order_id).await;
    let succeeded: Vec<_> = captures
        .iter()
        .filter(|c| c["status"] == "success")
        .collect();
    assert_eq!(succeeded.len(), 1, "{captures:?}");
    assert_eq!(succeeded[0]["idempotency_key"], key);
    assert_eq!(succeeded[0]["provider_tx_id"], charges[0].as_str());
}

#[tokio::test]
async fn charge_then_500_retried_under_the_same_key_across_a_restart_charges_once() {
    let lab = Lab::new(losing(CaptureFault::ChargeThenError)).await;
    let api = lab.api().await;
    lab.order(&api, "ord-500").await;

    let (status, p) = lab.capture(&api, "ord-500", "key-a").await;
    assert_eq!(
        (status, kind(&p)),
        (502, "/problems/capture-outcome-unknown"),
        "{p}"
    );
    assert!(detail(&p).contains("key-a"), "{p}");
    assert_eq!(lab.charges("ord-500").len(), 1, "captured, answer lost");

    // Other keys at once, and the same key again: the others are refused naming key-a;
    // the retry is sent under key-a and loses its answer again.
    let others = join_all(
        ["key-b", "key-c", "key-d", "key-e", "key-a"]
            .into_iter()
            .map(|k| lab.capture(&api, "ord-500", k)),
    )
    .await;
    for (status, p) in &others[..4] {
        assert_eq!(
            (*status, kind(p)),
            (409, "/problems/capture-unsettled"),
            "{p}"
        );
        assert!(detail(p).contains("key-a"), "{p}");
    }
    assert_eq!(others[4].0, 502, "{}", others[4].1);

    drop(api);
    let api = lab.api().await;
    let (status, p) = lab.capture(&api, "ord-500", "key-b").await;
    assert_eq!((status, kind(&p)), (409, "/problems/capture-unsettled"));

    lab.heal();
    let (status, c) = lab.capture(&api, "ord-500", "key-a").await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("success")),
        "{c}"
    );
    assert!(c["attempts"].as_i64() >= Some(3), "{c}");
    let (status, p) = lab.capture(&api, "ord-500", "key-b").await;
    assert_eq!((status, kind(&p)), (409, "/problems/already-captured"));
    one_success(&lab, &api, "ord-500", "key-a").await;
}

#[tokio::test]
async fn charge_then_timeout_is_settled_by_the_reconciliation_after_a_restart() {
    let lab = Lab::new(losing(CaptureFault::ChargeThenTimeout)).await;
    let api = lab.api().await;
    lab.order(&api, "ord-hang").await;
    let (status, p) = lab.capture(&api, "ord-hang", "key-a").await;
    assert_eq!(
        (status, kind(&p)),
        (502, "/problems/capture-outcome-unknown"),
        "{p}"
    );
    assert!(detail(&p).contains("timed out"), "{p}");

    drop(api);
    let api = lab.api().await;
    let (status, p) = lab.capture(&api, "ord-hang", "key-b").await;
    assert_eq!((status, kind(&p)), (409, "/problems/capture-unsettled"));
    assert!(detail(&p).contains("unknown outcome"), "{p}");

    // Captures still lose their answers; the lookup does not.
    let report = lab.reconcile(Duration::from_secs(3600)).await;
    assert_eq!(
        (report.examined, report.captured, report.errors.len()),
        (1, 1, 0),
        "{report:?}"
    );
    // The stored result now answers the same key without asking the provider.
    let (status, c) = lab.capture(&api, "ord-hang", "key-a").await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("success")),
        "{c}"
    );
    let (status, p) = lab.capture(&api, "ord-hang", "key-b").await;
    assert_eq!((status, kind(&p)), (409, "/problems/already-captured"));
    one_success(&lab, &api, "ord-hang", "key-a").await;
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT kind || ':' || (data->>'settled_by') FROM order_events
         WHERE order_id = 'ord-hang' AND kind = 'capture_completed'",
    )
    .fetch_all(&lab.db.pool)
    .await
    .expect("events");
    assert_eq!(events, ["capture_completed:reconciliation"]);
}

#[tokio::test]
async fn a_capture_the_provider_never_saw_is_given_up_only_after_stale_after() {
    let lab = Lab::new(ProviderBehaviour::default()).await;
    // The provider is unreachable: nothing listens on port 9.
    let api = lab.api_with_provider("http://127.0.0.1:9").await;
    lab.order(&api, "ord-down").await;
    let (status, p) = lab.capture(&api, "ord-down", "key-a").await;
    assert_eq!(
        (status, kind(&p)),
        (502, "/problems/capture-outcome-unknown"),
        "{p}"
    );

    // The provider is back. It has no record of key-a, but the attempt is recent: a request
    // of ours might still be on its way, so it is not given up yet.
    drop(api);
    let api = lab.api().await;
    let report = lab.reconcile(Duration::from_secs(3600)).await;
    assert_eq!((report.examined, report.left_open), (1, 1), "{report:?}");
    let (status, _) = lab.capture(&api, "ord-down", "key-b").await;
    assert_eq!(status, 409);

    let report = lab.reconcile(Duration::ZERO).await;
    assert_eq!((report.examined, report.not_captured), (1, 1), "{report:?}");
    let (status, p) = lab.capture(&api, "ord-down", "key-a").await;
    assert_eq!((status, kind(&p)), (502, "/problems/capture-failed"));
    assert!(detail(&p).contains("never reached"), "{p}");
    let (status, c) = lab.capture(&api, "ord-down", "key-b").await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("success")),
        "{c}"
    );
    one_success(&lab, &api, "ord-down", "key-b").await;
    assert_eq!(lab.reconcile(Duration::ZERO).await.examined, 0);
}

#[tokio::test]
async fn concurrent_captures_under_different_keys_charge_once() {
    let lab = Lab::new(ProviderBehaviour {
        latency: (Duration::from_millis(100), Duration::from_millis(100)),
        ..ProviderBehaviour::default()
    })
    .await;
    let api = lab.api().await;
    lab.order(&api, "ord-race").await;
    let keys: Vec<String> = (0..8).map(|i| format!("race-{i}")).collect();
    let answers = join_all(keys.iter().map(|k| lab.capture(&api, "ord-race", k))).await;
    let won: Vec<_> = answers
        .iter()
        .zip(&keys)
        .filter(|((s, _), _)| *s == 200)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (status, p) in &answers {
        if *status != 200 {
            assert_eq!(*status, 409, "{p}");
            assert!(
                ["/problems/capture-unsettled", "/problems/already-captured"].contains(&kind(p)),
                "{p}"
            );
        }
    }
    one_success(&lab, &api, "ord-race", won[0].1).await;
}

#[tokio::test]
async fn a_provider_429_leaves_the_capture_unknown_not_failed() {
    let provider = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(429))
        .mount(&provider)
        .await;
    let lab = Lab::new(ProviderBehaviour::default()).await;
    let api = lab.api_with_provider(&provider.uri()).await;
    lab.order(&api, "ord-429").await;
    let (status, p) = lab.capture(&api, "ord-429", "key-a").await;
    assert_eq!(
        (status, kind(&p)),
        (502, "/problems/capture-outcome-unknown"),
        "{p}"
    );
    let captures = lab.captures_of(&api, "ord-429").await;
    assert_eq!(captures[0]["status"], "unknown", "{captures:?}");
    assert!(captures[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("429")));
}
