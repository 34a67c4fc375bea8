//! The services Prometheus watches, running: serve-api in Kafka mode and serve-ingest with
//! the Kafka sink on a fresh database and topic prefix, with one webhook gone all the way
//! through (ingest → Kafka → API → database) so that the labelled families have series.

use pm_domain::api_key::Scope;
use pm_storage::audit::Actor;
use pm_storage::testing::TestDatabase;

use crate::process::{eventually, order_json, send_webhook, Pmctl, SECRET};

pub struct Stack {
    /// Held for the services: dropping it drops their database.
    _db: TestDatabase,
    pub api: Pmctl,
    pub ingest: Pmctl,
    /// An API key with scope `read` only: what Prometheus scrapes serve-api with.
    pub read_key: String,
}

impl Stack {
    pub async fn start() -> Stack {
        let db = TestDatabase::new().await;
        let brokers = pm_kafka::testing::brokers();
        let prefix = pm_kafka::testing::unique("e2e-obs");
        let env = [
            ("PM_DATABASE_URL", db.url.as_str()),
            ("PM_WEBHOOK_SECRETS", SECRET),
            ("PM_KAFKA_BROKERS", brokers.as_str()),
            ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ];
        let api = Pmctl::start(&["serve-api", "--mode", "kafka"], &env).await;
        api.wait_for("/health/ready", 200).await;
        let ingest = Pmctl::start(&["serve-ingest", "--sink", "kafka"], &env).await;
        ingest.wait_for("/health/ready", 200).await;
        let (_, read_key) = pm_storage::api_keys::create(
            &db.pool,
            "prometheus",
            &[Scope::Read],
            None,
            &Actor::new("cli:e2e", None),
            pm_domain::time::now(),
        )
        .await
        .expect("a read key");
        let stack = Stack {
            _db: db,
            api,
            ingest,
            read_key,
        };

        let order = order_json("obs-1", "obs-order-1", "created", 0);
        let answer = send_webhook(&stack.ingest, "/webhooks/payments/orders", &order).await;
        assert_eq!(answer.status(), 202, "ingest did not accept the webhook");
        eventually("the webhook applied by the API", || async {
            stack
                .scrape_api()
                .await
                .contains(r#"pm_webhooks_processed_total{kind="order""#)
        })
        .await;
        stack
    }

    /// serve-api's `/metrics`, read with the read key.
    pub async fn scrape_api(&self) -> String {
        scrape(&self.api, Some(&self.read_key)).await
    }

    /// serve-ingest's `/metrics` (open).
    pub async fn scrape_ingest(&self) -> String {
        scrape(&self.ingest, None).await
    }
}

async fn scrape(service: &Pmctl, key: Option<&str>) -> String {
    let mut request = service.http.get(service.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200, "GET {}", service.url("/metrics"));
    response.text().await.expect("the exposition")
}
