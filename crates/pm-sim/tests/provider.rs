//! The simulated provider, driven by the real provider client over HTTP.

use std::time::Duration;

use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_provider::{ProviderClient, ProviderConfig, ProviderError};
use pm_sim::provider::{Accepted, ProviderBehaviour, ProviderSim};

async fn serve(behaviour: ProviderBehaviour) -> (ProviderSim, ProviderClient, String) {
    let sim = ProviderSim::new(behaviour);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = sim.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = ProviderClient::new(ProviderConfig {
        base_url: base.clone(),
        initial_backoff: Duration::from_millis(5),
        request_timeout: Duration::from_secs(2),
        ..ProviderConfig::default()
    })
    .expect("client");
    (sim, client, base)
}

fn usd(text: &str) -> Money {
    Money::new(
        Amount::parse(text).expect("amount"),
        Currency::parse("USD").expect("usd"),
    )
    .expect("money")
}

fn id(s: &str) -> OrderId {
    OrderId::parse(s).expect("order id")
}

#[tokio::test]
async fn captures_are_accepted_once_per_idempotency_key() {
    let (sim, client, base) = serve(ProviderBehaviour::default()).await;
    let key = IdempotencyKey::parse("cap-1").expect("key");
    let first = client
        .capture(&id("o1"), &usd("10.5"), &key, "corr")
        .await
        .expect("capture");
    assert!(first.is_success());
    let again = client
        .capture(&id("o1"), &usd("10.5"), &key, "corr")
        .await
        .expect("replay");
    assert_eq!(again.transaction_id, first.transaction_id);
    let accepted = sim.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(
        matches!(&accepted[0], Accepted::Capture { amount, currency, .. } if amount == "10.50" && currency == "USD")
    );
    let listed: serde_json::Value = reqwest::get(format!("{base}/_sim/accepted"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["type"], "capture");
}

#[tokio::test]
async fn declines_and_outages_are_configurable() {
    let (_, client, _) = serve(ProviderBehaviour {
        decline_rate: 1.0,
        ..Default::default()
    })
    .await;
    let outcome = client
        .capture(
            &id("o1"),
            &usd("1"),
            &IdempotencyKey::parse("k").expect("key"),
            "c",
        )
        .await
        .expect("answered");
    assert_eq!(outcome.status, "declined");

    let (sim, client, _) = serve(ProviderBehaviour {
        failure_rate: 1.0,
        ..Default::default()
    })
    .await;
    let err = client
        .capture(
            &id("o1"),
            &usd("1"),
            &IdempotencyKey::parse("k").expect("key"),
            "c",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(sim.accepted().is_empty());
}

#[tokio::test]
async fn representments_validate_like_the_real_provider() {
    let (sim, client, _) = serve(ProviderBehaviour::default()).await;
    let none = client
        .submit_representment(&id("o1"), &[], "r0", "c")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &none,
            ProviderError::Rejected {
                status: 400,
                constraints: Some(_),
                ..
            }
        ),
        "{none:?}"
    );
    let pending = client
        .submit_representment(&id("o1"), &["pending_1".to_owned()], "r1", "c")
        .await
        .unwrap_err();
    assert!(
        matches!(&pending, ProviderError::Rejected { status: 422, code, .. } if code == "file_not_ready"),
        "{pending:?}"
    );
    let ok = client
        .submit_representment(&id("o1"), &["file_1".to_owned()], "r2", "c")
        .await
        .expect("accepted");
    assert!(ok.id.starts_with("rep_"));
    assert_eq!(sim.accepted().len(), 1);
}

#[tokio::test]
async fn latency_is_applied() {
    let (_, client, _) = serve(ProviderBehaviour {
        latency: (Duration::from_millis(300), Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    client
        .capture(
            &id("o1"),
            &usd("1"),
            &IdempotencyKey::parse("k").expect("key"),
            "c",
        )
        .await
        .expect("capture");
    // A lower bound only: a slow machine can only make it longer.
    assert!(started.elapsed() >= Duration::from_millis(300));
}
