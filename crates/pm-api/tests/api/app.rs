//! `spawn_app`: the API on a free port, its database, and a stub provider.

use std::time::Duration;

use pm_domain::signature;
use pm_provider::ProviderConfig;
use pm_storage::testing::TestDatabase;
use serde_json::{json, Value};
use wiremock::MockServer;

pub const SECRET: &[u8] = b"whsec_test";
pub const TOKEN: &str = "internal-token";
pub const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";

pub struct TestApp {
    pub base: String,
    /// A key with every scope; `http` sends it.
    pub key: String,
    pub db: TestDatabase,
    pub provider: MockServer,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|api| api).await
    }

    /// Like [`TestApp::spawn`], with settings of its own.
    pub async fn spawn_with(
        configure: impl FnOnce(pm_api::testing::TestApi) -> pm_api::testing::TestApi,
    ) -> TestApp {
        let db = TestDatabase::new().await;
        let provider = MockServer::start().await;
        let served = configure(pm_api::testing::TestApi::new(SECRET))
            .internal_token(TOKEN)
            .provider(ProviderConfig {
                base_url: provider.uri(),
                request_timeout: Duration::from_millis(500),
                initial_backoff: Duration::from_millis(10),
                ..ProviderConfig::default()
            })
            .serve(db.pool.clone())
            .await;
        TestApp {
            http: served.client(),
            key: served.key,
            base: served.base,
            db,
            provider,
        }
    }

    /// A new API key with `scopes`, made as `pmctl api-keys create` would.
    pub async fn key(&self, name: &str, scopes: &[pm_domain::api_key::Scope]) -> String {
        pm_storage::api_keys::create(
            &self.db.pool,
            name,
            scopes,
            None,
            &pm_storage::audit::Actor::new("cli:tests", None),
            pm_domain::time::now(),
        )
        .await
        .expect("key")
        .1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a signed webhook body (raw bytes, so tests control them exactly).
    pub async fn webhook_raw(&self, route: &str, body: &str) -> reqwest::Response {
        signed_post(&self.http, &self.url(route), body).await
    }

    pub async fn order_webhook(&self, body: &Value) -> reqwest::Response {
        self.webhook_raw("/webhooks/payments/orders", &body.to_string())
            .await
    }

    pub async fn chargeback_webhook(&self, body: &Value) -> reqwest::Response {
        self.webhook_raw("/webhooks/payments/chargebacks", &body.to_string())
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The raw body, for assertions on exact number formatting (`100.50`).
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }

    /// Creates an order in the given status through a webhook.
    pub async fn order_in(&self, order_id: &str, status: &str) {
        let r = self
            .order_webhook(&order(
                &format!("evt-{order_id}-{status}"),
                order_id,
                status,
                "2026-01-01T00:00:05Z",
            ))
            .await;
        assert_eq!(r.status(), 202);
    }

    /// Creates a paid order with an open dispute; returns the dispute id.
    pub async fn open_dispute(&self, order_id: &str) -> String {
        self.order_in(order_id, "success").await;
        let r = self
            .chargeback_webhook(&chargeback(&format!("cb-{order_id}"), order_id, "opened"))
            .await;
        assert_eq!(r.status(), 202);
        let (_, list) = self.get(&format!("/disputes?order_id={order_id}")).await;
        list["items"][0]["dispute_id"]
            .as_str()
            .expect("dispute id")
            .to_owned()
    }
}

/// POSTs `body` to `url` signed with the test secret.
pub async fn signed_post(http: &reqwest::Client, url: &str, body: &str) -> reqwest::Response {
    let t = chrono::Utc::now().timestamp();
    http.post(url)
        .header("content-type", "application/json")
        .header(
            signature::HEADER,
            signature::header_value(SECRET, t, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

/// POSTs a signed JSON webhook and answers its status (for webhooks sent from tasks).
pub async fn send_signed(http: &reqwest::Client, url: &str, body: &Value) -> u16 {
    signed_post(http, url, &body.to_string())
        .await
        .status()
        .as_u16()
}

pub fn order(event: &str, order_id: &str, status: &str, updated_at: &str) -> Value {
    json!({
        "provider_event_id": event,
        "order_id": order_id,
        "user_id": USER,
        "status": status,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated_at,
        "meta": {"source": "test"}
    })
}

pub fn chargeback(event: &str, order_id: &str, status: &str) -> Value {
    json!({
        "provider_event_id": event,
        "order_id": order_id,
        "user_id": USER,
        "status": status,
        "reason": "fraud",
        "amount": 100.50,
        "currency": "USD",
        "occurred_at": "2026-01-02T00:00:00Z",
        "evidence_due_at": "2026-01-20T00:00:00Z"
    })
}
