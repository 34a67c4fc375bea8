//! `serve-api --mode kafka` against a real broker: end to end, the DLQ and its replay,
//! a database outage, and a SIGKILL mid-stream.

use std::process::Command;
use std::time::Duration;

use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook, WebhookKind};
use pm_kafka::replay::{self, Filter};
use pm_kafka::{headers, KafkaConfig, Producer, Topics};
use pm_storage::testing::TestDatabase;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::process::{chargeback_json, eventually, order_json, Pmctl, SECRET};

/// A topic set of its own on the test broker, and a producer (shared with the admin UI test).
pub(crate) struct Kafka {
    pub(crate) config: KafkaConfig,
    prefix: String,
    pub(crate) topics: Topics,
    producer: Producer,
}

impl Kafka {
    pub(crate) async fn new() -> Kafka {
        let config = KafkaConfig::new(pm_kafka::testing::brokers(), "e2e");
        let prefix = pm_kafka::testing::unique("e2e");
        let topics = Topics::with_prefix(&prefix);
        pm_kafka::topics::ensure_topics(
            &config,
            &topics,
            &pm_kafka::topics::TopicSettings::with_partitions(3),
        )
        .await
        .expect("topics");
        let producer = Producer::new(&config, Duration::from_secs(60)).expect("producer");
        Kafka {
            config,
            prefix,
            topics,
            producer,
        }
    }

    /// What ingest does with an accepted webhook.
    pub(crate) async fn publish(&self, kind: WebhookKind, json: &str) {
        let (topic, env, user) = match kind {
            WebhookKind::Order => {
                let w = OrderWebhook::parse(json.as_bytes()).expect("valid order webhook");
                (
                    &self.topics.orders,
                    WebhookEnvelope::new(kind, &w, pm_domain::time::now()),
                    w.user_id,
                )
            }
            WebhookKind::Chargeback => {
                let w = ChargebackWebhook::parse(json.as_bytes()).expect("valid chargeback");
                (
                    &self.topics.disputes,
                    WebhookEnvelope::new(kind, &w, pm_domain::time::now()),
                    w.user_id,
                )
            }
        };
        let value = serde_json::to_vec(&env.expect("envelope")).expect("json");
        let h = headers::build([
            (headers::CORRELATION_ID, "e2e"),
            (headers::EVENT_TYPE, kind.as_str()),
        ]);
        self.producer
            .send(topic, user.to_string().as_bytes(), &value, h)
            .await
            .expect("produce");
    }

    pub(crate) async fn api(&self, db: &TestDatabase, database_url: &str, extra: &[&str]) -> Pmctl {
        let brokers = self.config.brokers.clone();
        let mut args = vec![
            "serve-api",
            "--mode",
            "kafka",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic-prefix",
            &self.prefix,
        ];
        args.extend_from_slice(extra);
        let api = Pmctl::start(
            &args,
            &[
                ("PM_DATABASE_URL", database_url),
                ("PM_WEBHOOK_SECRETS", SECRET),
            ],
        )
        .await
        .keyed(db)
        .await;
        api.wait_for("/health/ready", 200).await;
        api
    }

    pub(crate) fn dead_letters(&self, topic: &str) -> usize {
        replay::list(&self.config, &Topics::dlq(topic), &Filter::default(), 1000)
            .map(|l| l.len())
            .unwrap_or(0)
    }
}

pub(crate) async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn webhooks_flow_from_kafka_into_the_database_with_duplicates_and_reordering() {
    let db = TestDatabase::new().await;
    let kafka = Kafka::new().await;
    let _api = kafka.api(&db, &db.url, &[]).await;
    let o = WebhookKind::Order;
    kafka
        .publish(o, &order_json("k1", "ko-1", "created", 0))
        .await;
    kafka
        .publish(o, &order_json("k2", "ko-1", "updated", 10))
        .await;
    kafka
        .publish(o, &order_json("k1", "ko-1", "created", 0))
        .await; // duplicate
    kafka
        .publish(o, &order_json("k3", "ko-1", "success", 20))
        .await;
    kafka
        .publish(o, &order_json("k4", "ko-1", "updated", 15))
        .await; // late
    kafka
        .publish(o, &order_json("k6", "ko-2", "updated", 30))
        .await; // before its created
    kafka
        .publish(o, &order_json("k5", "ko-2", "created", 0))
        .await;
    kafka
        .publish(
            WebhookKind::Chargeback,
            &chargeback_json("kc1", "ko-1", "opened"),
        )
        .await;
    let mut closed = chargeback_json("kc2", "ko-1", "closed");
    closed = closed.replace(
        r#""occurred_at""#,
        r#""meta":{"resolution":"won"},"occurred_at""#,
    );
    kafka.publish(WebhookKind::Chargeback, &closed).await;

    eventually("all applied", || async {
        count(&db, "SELECT count(*) FROM processed_webhooks").await == 8
    })
    .await;
    eventually("the dispute decided", || async {
        count(&db, "SELECT count(*) FROM disputes WHERE status = 'won'").await == 1
    })
    .await;
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, status FROM orders ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .expect("orders");
    assert_eq!(
        statuses,
        [
            ("ko-1".into(), "success".into()),
            ("ko-2".into(), "updated".into())
        ]
    );
    assert_eq!(count(&db, "SELECT count(*) FROM order_events").await, 6);
    assert_eq!(count(&db, "SELECT count(*) FROM dispute_events").await, 2);
    assert_eq!(
        kafka.dead_letters(&kafka.topics.orders) + kafka.dead_letters(&kafka.topics.disputes),
        0
    );
}

#[tokio::test]
async fn a_chargeback_before_its_order_is_dead_lettered_then_replayed_home() {
    let db = TestDatabase::new().await;
    let kafka = Kafka::new().await;
    let api = kafka
        .api(
            &db,
            &db.url,
            &[
                "--kafka-retry-attempts",
                "2",
                "--kafka-retry-backoff",
                "50ms",
            ],
        )
        .await;
    kafka
        .publish(
            WebhookKind::Chargeback,
            &chargeback_json("early-cb", "late-order", "opened"),
        )
        .await;
    kafka
        .publish(
            WebhookKind::Order,
            &order_json("poison-next", "other", "created", 0),
        )
        .await;
    eventually("the chargeback in the DLQ", || async {
        kafka.dead_letters(&kafka.topics.disputes) == 1
    })
    .await;
    let listed = replay::list(
        &kafka.config,
        &Topics::dlq(&kafka.topics.disputes),
        &Filter::default(),
        10,
    )
    .expect("list");
    let info = listed[0].info.as_ref().expect("headers");
    assert_eq!((info.class.as_str(), info.attempts), ("retryable", 2));
    assert!(info.error.contains("late-order"), "{}", info.error);
    assert_eq!(count(&db, "SELECT count(*) FROM disputes").await, 0);

    // Operators see it: the dead letter counted by its error class, and the DLQ's depth
    // (read at start and every minute; a second consumer shows it at once).
    let scrape = async |p: &Pmctl| {
        p.client()
            .get(p.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let metrics = scrape(&api).await;
    let dlq_topic = Topics::dlq(&kafka.topics.disputes);
    let published = metrics
        .lines()
        .find(|l| {
            l.starts_with("pm_kafka_dlq_published_total{") && l.contains(r#"outcome="retryable""#)
        })
        .unwrap_or_else(|| panic!("no retryable dead letter counted: {metrics}"));
    assert!(published.ends_with(" 1"), "{published}");
    let second = kafka.api(&db, &db.url, &[]).await;
    let depth_line = format!("pm_kafka_dlq_depth{{topic=\"{dlq_topic}\"}} 1");
    eventually("the DLQ depth", || async {
        scrape(&second).await.lines().any(|l| l == depth_line)
    })
    .await;
    drop(second);

    kafka
        .publish(
            WebhookKind::Order,
            &order_json("the-order", "late-order", "success", 0),
        )
        .await;
    eventually("the order", || async {
        count(
            &db,
            "SELECT count(*) FROM orders WHERE order_id = 'late-order'",
        )
        .await
            == 1
    })
    .await;

    let out = Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args([
            "replay-dlq",
            "replay",
            "--dlq",
            "disputes",
            "--kafka-brokers",
            &kafka.config.brokers,
            "--kafka-topic-prefix",
            &kafka.prefix,
        ])
        .output()
        .expect("replay-dlq");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the dispute", || async {
        count(
            &db,
            "SELECT count(*) FROM disputes WHERE order_id = 'late-order'",
        )
        .await
            == 1
    })
    .await;
    // A second replay finds nothing new.
    let again = Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args([
            "replay-dlq",
            "replay",
            "--dlq",
            "disputes",
            "--json",
            "--kafka-brokers",
            &kafka.config.brokers,
            "--kafka-topic-prefix",
            &kafka.prefix,
        ])
        .output()
        .expect("replay-dlq");
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json summary");
    assert_eq!(summary[0]["summary"]["replayed"], 0);
}

/// A TCP proxy to PostgreSQL that can be cut and restored, to take the database away
/// from a running service.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    upstream: String,
    cut: CancellationToken,
}

impl Proxy {
    pub(crate) async fn start(upstream: String) -> Proxy {
        let port = crate::process::free_port();
        let p = Proxy {
            port,
            upstream,
            cut: CancellationToken::new(),
        };
        p.serve().await;
        p
    }

    async fn serve(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy bind");
        let (upstream, cut) = (self.upstream.clone(), self.cut.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = cut.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let (upstream, cut) = (upstream.clone(), cut.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
    }

    /// Drops every connection and refuses new ones.
    pub(crate) fn cut(&mut self) {
        self.cut.cancel();
    }

    pub(crate) async fn restore(&mut self) {
        self.cut = CancellationToken::new();
        self.serve().await;
    }
}

#[tokio::test]
async fn a_database_outage_pauses_processing_without_dead_letters() {
    let db = TestDatabase::new().await;
    let upstream_url: url_parts::Parts = url_parts::parse(&db.url);
    let mut proxy = Proxy::start(upstream_url.host_port.clone()).await;
    let proxied = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        upstream_url.user, proxy.port, upstream_url.database
    );
    let kafka = Kafka::new().await;
    let api = kafka.api(&db, &proxied, &[]).await;
    kafka
        .publish(
            WebhookKind::Order,
            &order_json("before", "db-1", "created", 0),
        )
        .await;
    eventually("the first webhook", || async {
        count(&db, "SELECT count(*) FROM orders").await == 1
    })
    .await;

    // The instance knows the key before its database goes away (it re-reads keys every 2 s),
    // so its metrics stay readable through the outage.
    let http = api.client();
    eventually("the key is known", || async {
        http.get(api.url("/metrics"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    proxy.cut();
    api.wait_for("/health/ready", 503).await;
    for i in 0..5 {
        kafka
            .publish(
                WebhookKind::Order,
                &order_json(&format!("during-{i}"), &format!("db-out-{i}"), "created", 0),
            )
            .await;
    }
    // Let the outage last until the consumer has retried (and failed) several times: it must
    // keep retrying, not drain the topic into the DLQ.
    eventually("the consumer retrying through the outage", || async {
        let Ok(r) = http.get(api.url("/metrics")).send().await else {
            return false;
        };
        let Ok(text) = r.text().await else {
            return false;
        };
        counter_total(&text, "pm_kafka_transient_errors_total") >= 3
            && counter_total(
                &text,
                r#"pm_webhook_apply_errors_total{kind="order",cause="unavailable"}"#,
            ) >= 3
    })
    .await;
    assert_eq!(kafka.dead_letters(&kafka.topics.orders), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 1);

    proxy.restore().await;
    eventually("everything after the outage", || async {
        count(&db, "SELECT count(*) FROM orders").await == 6
    })
    .await;
    api.wait_for("/health/ready", 200).await;
    assert_eq!(kafka.dead_letters(&kafka.topics.orders), 0);
}

#[tokio::test]
async fn a_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let db = TestDatabase::new().await;
    let kafka = Kafka::new().await;
    const N: usize = 800;
    let bodies: Vec<String> = (0..N)
        .map(|i| {
            order_json(
                &format!("kill-{i}"),
                &format!("kill-order-{i}"),
                "created",
                0,
            )
        })
        .collect();
    for chunk in bodies.chunks(100) {
        futures::future::join_all(chunk.iter().map(|b| kafka.publish(WebhookKind::Order, b))).await;
    }
    let mut api = kafka.api(&db, &db.url, &["--kafka-batch-size", "1"]).await;
    eventually("some progress", || async {
        count(&db, "SELECT count(*) FROM orders").await >= 100
    })
    .await;
    api.kill9();
    let at_kill = count(&db, "SELECT count(*) FROM orders").await;
    assert!(
        at_kill < N as i64,
        "killed after everything was applied ({at_kill}); the test did not cut mid-stream"
    );

    let _api = kafka.api(&db, &db.url, &[]).await;
    eventually("all applied after the restart", || async {
        count(&db, "SELECT count(*) FROM orders").await == N as i64
    })
    .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM order_events").await,
        N as i64,
        "each webhook applied exactly once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM processed_webhooks").await,
        N as i64
    );
}

/// Splits the harness's `postgres://user@host:port/db` URL.
pub(crate) mod url_parts {
    pub struct Parts {
        pub user: String,
        pub host_port: String,
        pub database: String,
    }

    pub fn parse(url: &str) -> Parts {
        let rest = url
            .trim_start_matches("postgres://")
            .trim_start_matches("postgresql://");
        let (user, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
        let (host_port, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let database = database.split('?').next().unwrap_or(database);
        Parts {
            user: user.to_owned(),
            host_port: host_port.to_owned(),
            database: database.to_owned(),
        }
    }
}

/// The sum of a counter's series in Prometheus text (`name{labels} value` lines).
pub(crate) fn counter_total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn a_missing_table_pauses_the_consumer_with_the_reason_instead_of_dead_lettering() {
    let db = TestDatabase::new().await;
    let kafka = Kafka::new().await;
    let api = kafka
        .api(&db, &db.url, &["--kafka-stall-timeout", "1s"])
        .await;
    // An operator's mistake, not the input's: the dedupe table is gone.
    sqlx::query("ALTER TABLE processed_webhooks RENAME TO processed_webhooks_away")
        .execute(&db.pool)
        .await
        .expect("rename");
    kafka
        .publish(
            WebhookKind::Order,
            &order_json("gone-1", "gone-o1", "created", 0),
        )
        .await;
    let http = api.client();
    api.wait_for_body("/health/ready", 503, "has not finished a batch")
        .await;
    let metrics = http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"cause="schema""#),
        "the transient errors are counted with their cause"
    );
    assert!(
        counter_total(
            &metrics,
            r#"pm_webhook_apply_errors_total{kind="order",cause="internal"}"#
        ) >= 1,
        "a missing table is not an outage but the service's fault: {metrics}"
    );
    // The stuck partition shows as the age of its waiting message, the DLQ as empty.
    let oldest = metrics
        .lines()
        .filter(|l| l.starts_with("pm_kafka_oldest_unapplied_age_seconds{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(oldest > 0.0, "{metrics}");
    let dlq = pm_kafka::Topics::dlq(&kafka.topics.orders);
    assert!(
        metrics.contains(&format!(r#"pm_kafka_dlq_depth{{topic="{dlq}"}} 0"#)),
        "{metrics}"
    );
    assert_eq!(kafka.dead_letters(&kafka.topics.orders), 0);

    sqlx::query("ALTER TABLE processed_webhooks_away RENAME TO processed_webhooks")
        .execute(&db.pool)
        .await
        .expect("rename back");
    eventually("applied once the table is back", || async {
        count(&db, "SELECT count(*) FROM orders").await == 1
    })
    .await;
    api.wait_for("/health/ready", 200).await;
    assert_eq!(kafka.dead_letters(&kafka.topics.orders), 0);
}

#[tokio::test]
async fn consumers_wait_for_pending_migrations() {
    let db = TestDatabase::new().await;
    // The newest migration "not applied yet", as on a deploy that runs serve-api first.
    for sql in [
        "CREATE TABLE newest_migration AS SELECT * FROM _sqlx_migrations \
         WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT version FROM newest_migration)",
    ] {
        sqlx::query(sql).execute(&db.pool).await.expect(sql);
    }
    let kafka = Kafka::new().await;
    kafka
        .publish(
            WebhookKind::Order,
            &order_json("mig-1", "mig-o1", "created", 0),
        )
        .await;
    let brokers = kafka.config.brokers.clone();
    let api = Pmctl::start(
        &[
            "serve-api",
            "--mode",
            "kafka",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic-prefix",
            &kafka.prefix,
        ],
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await;
    api.wait_for_body("/health/ready", 503, "pending").await;
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 0);

    // `pmctl migrate` ran (here: the record is back, the schema never changed).
    sqlx::query("INSERT INTO _sqlx_migrations SELECT * FROM newest_migration")
        .execute(&db.pool)
        .await
        .expect("restore the record");
    api.wait_for("/health/ready", 200).await;
    eventually("applied once the schema is current", || async {
        count(&db, "SELECT count(*) FROM orders").await == 1
    })
    .await;
}
