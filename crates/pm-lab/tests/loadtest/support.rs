//! A tiny webhook server that answers after a fixed delay and records when each request
//! arrived, and traffic from a small scenario.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use pm_lab::loadtest::traffic::{TrafficOptions, TrafficSource};
use pm_scenario::{Delivery, Scenario};

pub const SECRET: &[u8] = b"whsec_loadtest";

/// Arrival times and event ids, in arrival order.
pub type Arrivals = Arc<Mutex<Vec<(Instant, String)>>>;

/// Serves both webhook routes on a free port: each answer comes `delay` after the request
/// (with one connection, requests are therefore served one after another).
pub async fn slow_server(delay: Duration) -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let handler = move |body: String| {
        let seen = seen.clone();
        async move {
            let id = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["provider_event_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            seen.lock().unwrap().push((Instant::now(), id));
            tokio::time::sleep(delay).await;
            (axum::http::StatusCode::ACCEPTED, "{}")
        }
    };
    let app = Router::new()
        .route("/webhooks/payments/orders", post(handler.clone()))
        .route("/webhooks/payments/chargebacks", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, arrivals)
}

/// A scenario with disputes, duplicates and a little bad input.
pub const SCENARIO: &str = r#"
name = "lt-test"
seed = 11
[traffic]
orders = 200
rate = 500.0
[orders]
spread = 4
[disputes]
share = 0.3
evidence_share = 0.5
[faults]
duplicate = 0.05
reorder = 0.02
malformed = 0.01
bad_signature = 0.01
stale_timestamp = 0.01
invalid_fields = 0.01
"#;

pub fn source(run_id: &str) -> TrafficSource {
    TrafficSource::new(
        Scenario::from_toml(SCENARIO).unwrap(),
        TrafficOptions {
            keep_faults: true,
            run_id: run_id.to_owned(),
        },
    )
    .unwrap()
}

/// `count` deliveries for step 0 of a fresh run.
pub fn deliveries(count: u64) -> Arc<Vec<Delivery>> {
    Arc::new(source("t0").traffic(0, count).unwrap().deliveries)
}
