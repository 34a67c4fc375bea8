//! Starting ingest (and the API behind it) on free ports, and signing webhooks.

use std::time::Duration;

use pm_domain::signature::{self, Verifier};
use pm_http::intake::IntakeConfig;
use pm_ingest::{HttpSinkConfig, IngestMetrics, IngestState, Sink};
use pm_provider::ProviderConfig;
use pm_storage::testing::TestDatabase;
use pm_telemetry::metrics::{Registry, SharedRegistry};
use secrecy::SecretString;
use serde_json::Value;
use wiremock::MockServer;

pub const SECRET: &[u8] = b"whsec_test";
pub const TOKEN: &str = "internal-token";
pub const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";
pub const ORDERS: &str = "/webhooks/payments/orders";
pub const CHARGEBACKS: &str = "/webhooks/payments/chargebacks";

fn intake() -> IntakeConfig {
    IntakeConfig {
        verifier: Some(Verifier::new(vec![SECRET.to_vec()], 300)),
        max_body_bytes: 64 * 1024,
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The gateway on a free port.
pub struct Ingest {
    pub base: String,
    pub http: reqwest::Client,
}

impl Ingest {
    pub async fn spawn(sink: Sink) -> Ingest {
        let mut registry = Registry::with_prefix("pm");
        let metrics = IngestMetrics::register(&mut registry);
        let state = IngestState::new(intake(), sink, metrics, SharedRegistry::new(registry));
        Ingest {
            base: serve(pm_ingest::router(
                state,
                &pm_http::limits::Limits::default(),
            ))
            .await,
            http: reqwest::Client::new(),
        }
    }

    /// The gateway with an http sink towards `api_url`, retrying quickly.
    pub async fn http_sink(api_url: &str, token: &str) -> Ingest {
        let config = HttpSinkConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..HttpSinkConfig::new(api_url, SecretString::from(token))
        };
        Ingest::spawn(Sink::http(config).expect("http sink")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A webhook POST signed at time `t`, to add headers to.
    pub fn signed_at(&self, route: &str, body: &str, t: i64) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(route))
            .header("content-type", "application/json")
            .header(
                signature::HEADER,
                signature::header_value(SECRET, t, body.as_bytes()),
            )
            .body(body.to_owned())
    }

    /// POSTs a body signed now, as raw text so tests control its bytes exactly.
    pub async fn webhook(&self, route: &str, body: &str) -> reqwest::Response {
        self.signed_at(route, body, chrono::Utc::now().timestamp())
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("metrics")
    }
}

/// The real API (pm-api's router) on a free port, on a fresh database.
pub struct Api {
    pub base: String,
    pub db: TestDatabase,
    pub http: reqwest::Client,
    _provider: MockServer,
}

impl Api {
    pub async fn spawn() -> Api {
        let db = TestDatabase::new().await;
        let provider = MockServer::start().await;
        let served = pm_api::testing::TestApi::new(SECRET)
            .internal_token(TOKEN)
            .provider(ProviderConfig {
                base_url: provider.uri(),
                ..ProviderConfig::default()
            })
            .serve(db.pool.clone())
            .await;
        Api {
            http: served.client(),
            base: served.base,
            db,
            _provider: provider,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// How many requests the API answered on `route` with `status`, from its own metrics.
    pub async fn served(&self, route: &str, status: u16) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metric_value(
            &text,
            &format!(
                r#"pm_http_requests_total{{method="POST",route="{route}",status="{status}"}}"#
            ),
        )
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}

/// The value of one sample in a Prometheus text exposition, 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub fn order(event: &str, order_id: &str, user: &str) -> String {
    format!(
        r#"{{"provider_event_id":"{event}","order_id":"{order_id}","user_id":"{user}","status":"created","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","meta":{{"source":"test"}}}}"#
    )
}

/// A chargeback whose amount is written `100.50`, which a float would turn into `100.5`.
pub fn chargeback(event: &str, order_id: &str, user: &str) -> String {
    format!(
        r#"{{"provider_event_id":"{event}","order_id":"{order_id}","user_id":"{user}","status":"opened","reason":"fraud","amount":100.50,"currency":"USD","occurred_at":"2026-01-02T00:00:00Z","evidence_due_at":"2026-01-20T00:00:00Z"}}"#
    )
}
