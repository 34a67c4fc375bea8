//! Operator authentication: 401 without a usable key, 403 without the scope, 429 for an
//! address that keeps guessing; revoked and expired keys stop working.

use std::time::{Duration, Instant};

use pm_api::testing::{client_with_key, TestApi};
use pm_domain::api_key::Scope;
use pm_storage::api_keys;
use pm_storage::testing::TestDatabase;
use serde_json::{json, Value};

use crate::app::{TestApp, SECRET};

fn tester() -> pm_storage::audit::Actor {
    pm_storage::audit::Actor::new("cli:tests", None)
}

async fn call(http: &reqwest::Client, method: &str, url: String) -> (u16, Option<String>, Value) {
    let request = match method {
        "POST" => http.post(url).json(&json!({"action": "clear"})),
        _ => http.get(url),
    };
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, challenge, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_a_usable_key_every_operator_route_is_401_and_says_nothing_about_keys() {
    let app = TestApp::spawn().await;
    let real = app.key("real", &[Scope::Read]).await;
    let wrong_secret = format!(
        "{}{}",
        &real[..real.len() - 1],
        if real.ends_with('A') { 'B' } else { 'A' }
    );
    let unknown = pm_domain::api_key::NewKey::generate().token;
    let mut bodies = Vec::new();
    for header in [
        None,
        Some("Bearer".to_owned()),
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some("Bearer not-a-key".to_owned()),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {unknown}")),
    ] {
        for (method, path) in [
            ("GET", "/orders"),
            ("GET", "/disputes/events"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("POST", "/orders/o-1/hold"),
        ] {
            let mut request = match method {
                "POST" => app
                    .http
                    .post(app.url(path))
                    .json(&json!({"action": "clear"})),
                _ => app.http.get(app.url(path)),
            };
            // The test app's client sends a valid key by default: replace it.
            request = request.header("authorization", header.clone().unwrap_or_default());
            let r = request.send().await.expect("request");
            assert_eq!(r.status(), 401, "{header:?} {method} {path}");
            assert_eq!(
                r.headers().get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer realm=\"payment-manager\""[..])
            );
            assert_eq!(
                r.headers().get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/problem+json"[..])
            );
            bodies.push(r.text().await.expect("body"));
        }
    }
    let r = app
        .http
        .get(app.url("/orders"))
        .header("authorization", format!("Bearer {}", app.key))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the same requests with a key pass");
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "one answer whatever was wrong: {bodies:?}");

    // Open without credentials: the probes, and the signed webhooks.
    let anonymous = reqwest::Client::new();
    for path in ["/health/live", "/health/ready"] {
        let r = anonymous.get(app.url(path)).send().await.expect("probe");
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn scopes_decide_what_a_key_may_do() {
    let app = TestApp::spawn().await;
    app.order_in("o-s", "updated").await;
    let reader = client_with_key(&app.key("reader", &[Scope::Read]).await);
    let operator = client_with_key(&app.key("operator", &[Scope::Operate]).await);

    assert_eq!(call(&reader, "GET", app.url("/orders")).await.0, 200);
    assert_eq!(call(&reader, "GET", app.url("/metrics")).await.0, 200);
    let (status, challenge, p) = call(&reader, "POST", app.url("/orders/o-s/hold")).await;
    assert_eq!((status, challenge), (403, None), "{p}");
    assert_eq!(p["type"], "/problems/forbidden");
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("operate")),
        "{p}"
    );

    let (status, _, p) = call(&operator, "GET", app.url("/orders/o-s")).await;
    assert_eq!(status, 403, "{p}");
    let (status, _, p) = call(&operator, "POST", app.url("/orders/o-s/hold")).await;
    assert_eq!(status, 200, "{p}");
}

#[tokio::test]
async fn a_revoked_or_expired_key_stops_working_within_seconds() {
    let app = TestApp::spawn().await;
    let token = app.key("soon-revoked", &[Scope::Read]).await;
    let client = client_with_key(&token);
    assert_eq!(call(&client, "GET", app.url("/orders")).await.0, 200);
    api_keys::revoke(
        &app.db.pool,
        "soon-revoked",
        &tester(),
        pm_domain::time::now(),
    )
    .await
    .expect("revoke")
    .expect("exists");
    let revoked_at = Instant::now();
    loop {
        if call(&client, "GET", app.url("/orders")).await.0 == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(30),
            "still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let now = pm_domain::time::now();
    let (_, expiring) = api_keys::create(
        &app.db.pool,
        "expiring",
        &[Scope::Read],
        Some(now + chrono::Duration::seconds(2)),
        &tester(),
        now,
    )
    .await
    .expect("key");
    let client = client_with_key(&expiring);
    assert_eq!(call(&client, "GET", app.url("/orders")).await.0, 200);
    loop {
        if call(&client, "GET", app.url("/orders")).await.0 == 401 {
            break;
        }
        assert!(
            pm_domain::time::now() < now + chrono::Duration::seconds(30),
            "still accepted after expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_address_that_keeps_guessing_is_throttled() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET).spawn(db.pool.clone()).await;
    let good = api.client();
    let url = format!("{}/orders", api.base);
    assert_eq!(call(&good, "GET", url.clone()).await.0, 200);
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let guess = client_with_key(&pm_domain::api_key::NewKey::generate().token);
        statuses.push(call(&guess, "GET", url.clone()).await.0);
    }
    // The default allows 20 failures a minute; then the address is throttled.
    assert_eq!(&statuses[..20], &[401; 20]);
    assert!(statuses[21..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = good.get(&url).send().await.expect("request");
    assert_eq!(
        r.status(),
        429,
        "a throttled address is refused whatever it sends"
    );
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let p: Value = r.json().await.expect("problem");
    assert_eq!(p["type"], "/problems/too-many-failures");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_guessing_client_is_throttled_not_the_proxy() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET)
        .trusted_proxy("127.0.0.1".parse().expect("ip"))
        .spawn(db.pool.clone())
        .await;
    let url = format!("{}/orders", api.base);
    let from = |client: &str, key: &str| {
        reqwest::Client::new()
            .get(&url)
            .header("authorization", format!("Bearer {key}"))
            // What the proxy reports last is believed; what the client put before it is not.
            .header("x-forwarded-for", format!("10.9.9.9, {client}"))
    };
    let mut statuses = Vec::new();
    for _ in 0..22 {
        let guess = pm_domain::api_key::NewKey::generate().token;
        let r = from("203.0.113.7", &guess).send().await.expect("request");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[21], 429, "{statuses:?}");
    let other = from("203.0.113.8", &api.key).send().await.expect("request");
    assert_eq!(
        other.status(),
        200,
        "another client of the same proxy still gets in"
    );
    let guesser = from("203.0.113.7", &api.key).send().await.expect("request");
    assert_eq!(guesser.status(), 429);
}
