//! The simulated provider, driven by the real provider client over HTTP.

use std::time::Duration;

use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_provider::{ProviderClient, ProviderConfig, ProviderError};
use pm_sim::provider::{Accepted, CaptureFault, ProviderBehaviour, ProviderSim};

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

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).expect("key")
}

#[tokio::test]
async fn the_capture_lookup_finds_a_capture_by_its_key_and_never_captures() {
    let (sim, client, _) = serve(ProviderBehaviour::default()).await;
    assert_eq!(
        client.capture_status(&key("never"), "c").await,
        Ok(None),
        "an unknown key is not found"
    );
    let made = client
        .capture(&id("o1"), &usd("3"), &key("k/1?#%"), "c")
        .await
        .expect("capture");
    let found = client
        .capture_status(&key("k/1?#%"), "c")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found, made, "a key with URL-special characters is found");
    assert_eq!(sim.accepted().len(), 1, "the lookups captured nothing");
}

#[tokio::test]
async fn a_bare_404_is_not_taken_for_capture_not_found() {
    // A provider URL with a wrong path prefix answers 404 without the provider's code.
    let (_, _, base) = serve(ProviderBehaviour::default()).await;
    let client = ProviderClient::new(ProviderConfig {
        base_url: format!("{base}/wrong-prefix"),
        ..ProviderConfig::default()
    })
    .expect("client");
    let err = client.capture_status(&key("k"), "c").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Rejected { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn capture_faults_capture_first_then_lose_the_answer_even_for_a_repeated_key() {
    for (fault, what) in [
        (CaptureFault::ChargeThenError, "500"),
        (CaptureFault::ChargeThenTimeout, "timed out"),
    ] {
        let (sim, _, base) = serve(ProviderBehaviour {
            capture_fault: fault,
            capture_fault_rate: 1.0,
            ..Default::default()
        })
        .await;
        let client = ProviderClient::new(ProviderConfig {
            base_url: base,
            request_timeout: Duration::from_millis(300),
            initial_backoff: Duration::from_millis(5),
            max_attempts: 2,
            ..ProviderConfig::default()
        })
        .expect("client");
        let err = client
            .capture(&id("o1"), &usd("1"), &key("k1"), "c")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Unavailable { attempts: 2, last_error } if last_error.contains(what)),
            "{fault:?}: {err:?}"
        );
        assert!(!err.is_definitive());
        assert_eq!(
            sim.accepted().len(),
            1,
            "{fault:?}: captured once, answer lost"
        );

        sim.set_behaviour(ProviderBehaviour::default());
        let outcome = client
            .capture(&id("o1"), &usd("1"), &key("k1"), "c")
            .await
            .expect("the retry is answered");
        assert!(outcome.is_success());
        assert_eq!(
            sim.accepted().len(),
            1,
            "{fault:?}: the retry was deduplicated"
        );
    }
}
