//! Faults under load on a 3-node Apache Kafka cluster (replication factor 3,
//! `min.insync.replicas` 2): a broker killed, consumers joining and dying, the database
//! gone for 20 s. Each test plays a scenario through ingest (kafka sink) with the provider
//! simulator — which retries what it is refused, as a provider does — and ends with
//! `pmctl verify`: every webhook acknowledged with a 2xx is stored exactly once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pm_kafka::testing::Cluster;
use pm_storage::testing::TestDatabase;

use crate::kafka_mode::{count, url_parts, Proxy};
use crate::process::{eventually, free_port, Pmctl, SECRET};

/// The 3-node cluster shared by the tests that do not kill brokers.
fn shared_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(3).expect("a 3-node Apache Kafka cluster"))
}

/// The quickstart scenario, bigger and slower, so that a fault lands mid-stream:
/// about 4,300 webhooks over about 17 s. `actions` off leaves the merchant's actions out
/// (for a test that takes the database away from the API).
fn long_scenario(dir: &Path, actions: bool) -> PathBuf {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quickstart.toml"),
    )
    .expect("quickstart scenario");
    let mut text = base
        .replace("orders = 300", "orders = 1000")
        .replace("rate = 500.0", "rate = 250.0");
    if !actions {
        text = text
            .replace("evidence_share = 0.5", "evidence_share = 0.0")
            .replace("submit_share = 0.8", "submit_share = 0.0");
    }
    assert_ne!(text, base, "the quickstart scenario changed shape");
    let path = dir.join("long.toml");
    std::fs::write(&path, text).expect("scenario file");
    path
}

/// The provider simulator playing a scenario in the background.
struct Play {
    child: tokio::process::Child,
    ledger: PathBuf,
    key: String,
    _dir: tempfile::TempDir,
}

impl Play {
    fn start(target: &str, api: &Pmctl, provider_port: u16, actions: bool) -> Play {
        let api_url = api.url("");
        let dir = tempfile::tempdir().expect("tmp");
        let scenario = long_scenario(dir.path(), actions);
        let ledger = dir.path().join("ledger.json");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pmctl"))
            .args(["simulate-provider", "--listen"])
            .arg(format!("127.0.0.1:{provider_port}"))
            .arg("--scenario")
            .arg(&scenario)
            .args([
                "--target",
                target,
                "--api-url",
                &api_url,
                "--webhook-secret",
                SECRET,
            ])
            .arg("--ledger")
            .arg(&ledger)
            .arg("--exit-when-done")
            .env("PM_LOG", "warn")
            .env("PM_API_KEY", &api.key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("simulate-provider");
        Play {
            child,
            ledger,
            key: api.key.clone(),
            _dir: dir,
        }
    }

    /// Waits for the simulator, then for `verify` to pass against `api`.
    async fn finish_and_verify(self, api: &str) {
        let out = self.child.wait_with_output().await.expect("simulator");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the simulator failed: {text}");
        let ledger = self.ledger.display().to_string();
        let verify = || {
            std::process::Command::new(env!("CARGO_BIN_EXE_pmctl"))
                .args(["verify", "--ledger", &ledger, "--api-url", api])
                .env("PM_LOG", "warn")
                .env("PM_API_KEY", &self.key)
                .output()
                .expect("verify")
        };
        eventually("verify passes", || async { verify().status.success() }).await;
        let out = verify();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("nothing lost, nothing doubled"), "{text}");
    }
}

/// serve-api in kafka mode against `database_url`, with the provider simulator's API.
async fn api(
    db: &TestDatabase,
    database_url: &str,
    kafka: &[(&str, &str)],
    provider_port: u16,
) -> Pmctl {
    let provider = format!("http://127.0.0.1:{provider_port}");
    let env = [
        &[
            ("PM_DATABASE_URL", database_url),
            ("PM_WEBHOOK_SECRETS", SECRET),
            ("PM_PROVIDER_URL", provider.as_str()),
        ][..],
        kafka,
    ]
    .concat();
    let api = Pmctl::start(&["serve-api", "--mode", "kafka"], &env)
        .await
        .keyed(db)
        .await;
    api.wait_for("/health/ready", 200).await;
    api
}

async fn ingest(kafka: &[(&str, &str)]) -> Pmctl {
    let env = [&[("PM_WEBHOOK_SECRETS", SECRET)][..], kafka].concat();
    let ingest = Pmctl::start(&["serve-ingest", "--sink", "kafka"], &env).await;
    ingest.wait_for("/health/ready", 200).await;
    ingest
}

async fn orders_at_least(db: &TestDatabase, n: i64) {
    eventually(&format!("{n} orders stored"), || async {
        count(db, "SELECT count(*) FROM orders").await >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_leaders_broker_killed_mid_load_loses_nothing() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(|| Cluster::start(3))
            .await
            .expect("task")
            .expect("a 3-node cluster of this test's own"),
    );
    let db = TestDatabase::new().await;
    let prefix = pm_kafka::testing::unique("leader");
    let kafka = [
        ("PM_KAFKA_BROKERS", cluster.brokers()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    let provider_port = free_port();
    let api = api(&db, &db.url, &kafka, provider_port).await;
    let ingest = ingest(&kafka).await;
    let play = Play::start(&ingest.url(""), &api, provider_port, true);

    orders_at_least(&db, 150).await;
    let topic = format!("{prefix}webhooks.orders");
    let c = cluster.clone();
    let leader = tokio::task::spawn_blocking(move || {
        let leader = c.leader_of(&topic, 0)?;
        c.kill_node(leader).map(|()| leader)
    })
    .await
    .expect("task")
    .expect("kill the leader");
    // The two other brokers still make `min.insync.replicas`: the pipeline goes on.
    let at_kill = count(&db, "SELECT count(*) FROM orders").await;
    orders_at_least(&db, at_kill + 150).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_node(leader))
        .await
        .expect("task")
        .expect("restart the killed broker");

    play.finish_and_verify(&api.url("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_dying_mid_stream_apply_every_webhook_once() {
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .expect("task");
    let db = TestDatabase::new().await;
    let prefix = pm_kafka::testing::unique("members");
    let kafka = [
        ("PM_KAFKA_BROKERS", cluster.brokers()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("PM_KAFKA_TOPIC_PARTITIONS", "6"),
    ];
    let provider_port = free_port();
    // Two members of each group from the start.
    let mut first = api(&db, &db.url, &kafka, provider_port).await;
    let second = api(&db, &db.url, &kafka, provider_port).await;
    let ingest = ingest(&kafka).await;
    let play = Play::start(&ingest.url(""), &second, provider_port, true);

    orders_at_least(&db, 150).await;
    // A third member joins, then the first dies without a word: two rebalances mid-stream,
    // one of them after a crash (its uncommitted tail is repeated and deduplicated).
    let third = api(&db, &db.url, &kafka, provider_port).await;
    let at_join = count(&db, "SELECT count(*) FROM orders").await;
    orders_at_least(&db, at_join + 100).await;
    first.kill9();

    play.finish_and_verify(&second.url("")).await;
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_gone_for_20_s_under_load_dead_letters_nothing() {
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .expect("task");
    let db = TestDatabase::new().await;
    let parts = url_parts::parse(&db.url);
    let mut proxy = Proxy::start(parts.host_port.clone()).await;
    let proxied = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        parts.user, proxy.port, parts.database
    );
    let prefix = pm_kafka::testing::unique("dbout");
    let kafka = [
        ("PM_KAFKA_BROKERS", cluster.brokers()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    let provider_port = free_port();
    // The consumer reaches the database through the proxy; reads and verify go to an API
    // of their own (sync mode, direct), which the outage does not touch.
    let consumer = api(&db, &proxied, &kafka, provider_port).await;
    let reader = Pmctl::start(
        &["serve-api"],
        &[
            ("PM_DATABASE_URL", db.url.as_str()),
            ("PM_WEBHOOK_SECRETS", SECRET),
        ],
    )
    .await
    .keyed(&db)
    .await;
    let ingest = ingest(&kafka).await;
    let play = Play::start(&ingest.url(""), &reader, provider_port, false);

    orders_at_least(&db, 100).await;
    proxy.cut();
    consumer.wait_for("/health/ready", 503).await;
    // The outage itself: ingest keeps accepting (Kafka holds the backlog), the consumer
    // keeps retrying and dead-letters nothing.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let config = pm_kafka::KafkaConfig::new(cluster.brokers(), "e2e-faults");
    let topics = pm_kafka::Topics::with_prefix(&prefix);
    let dead = |topic: &str| {
        pm_kafka::replay::list(
            &config,
            &pm_kafka::Topics::dlq(topic),
            &pm_kafka::replay::Filter::default(),
            1000,
        )
        .map(|l| l.len())
        .expect("list the DLQ")
    };
    assert_eq!(dead(&topics.orders) + dead(&topics.disputes), 0);
    proxy.restore().await;

    play.finish_and_verify(&reader.url("")).await;
    consumer.wait_for("/health/ready", 200).await;
    assert_eq!(dead(&topics.orders) + dead(&topics.disputes), 0);
}
