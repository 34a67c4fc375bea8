//! Kafka over SASL_SSL with SCRAM-SHA-512, against Apache Kafka itself.
//!
//! The binary starts one cluster of its own whose brokers also listen with SASL_SSL,
//! presenting a certificate from a CA made for the run. The clients are the ones the
//! pipeline uses — topic creation, the producer, the consumer loop — configured only by
//! librdkafka properties, which is all an operator passes (`--kafka-config KEY=VALUE`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pm_kafka::consumer::Transient;
use pm_kafka::consumer::{self, ConsumerHealth, ConsumerSettings, Handler, Outcome, Received};
use pm_kafka::metrics::ConsumerMetrics;
use pm_kafka::testing::{unique, Cluster, ClusterOptions, SaslSsl};
use pm_kafka::topics::{ensure_topics, TopicSettings};
use pm_kafka::{headers, Error, KafkaConfig, Producer, Topics};
use pm_telemetry::metrics::Registry;
use pm_tls::testing::TestCa;
use tokio_util::sync::CancellationToken;

const USER: &str = "pm-webhooks";
const PASSWORD: &str = "correct-horse-battery-staple";

/// The binary's cluster and the CA files its clients trust or not.
struct Secure {
    cluster: Cluster,
    /// The CA that issued the brokers' certificate.
    ca: PathBuf,
    /// A CA that did not.
    stranger_ca: PathBuf,
}

fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let ca = TestCa::new("pm-kafka test CA");
        // The launcher copies the broker's files; these go when the start is done.
        let issued = tempfile::tempdir().expect("a directory for the broker's certificate");
        let broker = ca
            .server(&["localhost", "127.0.0.1"])
            .write(issued.path(), "broker");
        let options = ClusterOptions::new(1).with_sasl_ssl(SaslSsl {
            cert: broker.cert,
            key: broker.key,
            users: vec![(USER.to_owned(), PASSWORD.to_owned())],
        });
        let cluster = Cluster::start_with(&options)
            .unwrap_or_else(|e| panic!("cannot start Kafka with a SASL_SSL listener: {e}"));
        // The clients' CA files live in the cluster's directory, which goes with it.
        let trusted = cluster.dir().join("client/trusted");
        let stranger = cluster.dir().join("client/stranger");
        for dir in [&trusted, &stranger] {
            std::fs::create_dir_all(dir).expect("a directory for the client's CA");
        }
        Secure {
            ca: ca.write_cert(&trusted),
            stranger_ca: TestCa::new("a stranger").write_cert(&stranger),
            cluster,
        }
    })
}

/// A client of the SASL_SSL listener, configured as an operator would.
fn sasl_ssl_client(password: &str, ca: &Path) -> KafkaConfig {
    let s = secure();
    let brokers = s.cluster.sasl_ssl_brokers().expect("the SASL_SSL listener");
    KafkaConfig::new(brokers, "pm-kafka-sasl-ssl-test").with_properties(
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", USER),
            ("sasl.password", password),
            ("ssl.ca.location", &ca.display().to_string()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec(),
    )
}

/// Keeps what it is handed.
#[derive(Default)]
struct Collect(Mutex<Vec<Received>>);

impl Collect {
    fn received(&self) -> Vec<Received> {
        self.0.lock().expect("lock").clone()
    }
}

impl Handler for Collect {
    async fn handle(&self, batch: &[Received]) -> Result<Vec<Outcome>, Transient> {
        self.0.lock().expect("lock").extend_from_slice(batch);
        Ok(vec![Outcome::Done; batch.len()])
    }
}

#[tokio::test]
async fn a_message_goes_through_topic_creation_producer_and_consumer_over_sasl_ssl() {
    let config = sasl_ssl_client(PASSWORD, &secure().ca);
    let topics = Topics::with_prefix(&unique("sasl"));
    ensure_topics(&config, &topics, &TopicSettings::with_partitions(1))
        .await
        .expect("topics created over SASL_SSL");
    let producer = Producer::new(&config, Duration::from_secs(10)).expect("producer");
    producer
        .send(
            &topics.orders,
            b"user-1",
            b"over TLS",
            headers::build([(headers::CORRELATION_ID, "corr-sasl")]),
        )
        .await
        .expect("stored over SASL_SSL");

    let collect = Arc::new(Collect::default());
    let stop = CancellationToken::new();
    let settings = ConsumerSettings::new(&topics.orders, format!("{}group", topics.orders));
    let health = ConsumerHealth::new(&topics.orders, Duration::from_secs(60));
    let metrics = ConsumerMetrics::register(&mut Registry::default());
    let task = tokio::spawn({
        let (config, collect, stop) = (config.clone(), collect.clone(), stop.clone());
        async move { consumer::run(&config, settings, collect, producer, metrics, health, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while collect.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing consumed over SASL_SSL in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.expect("consumer task").expect("consumer");
    let received = collect.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].payload.as_deref(), Some(&b"over TLS"[..]));
    assert_eq!(received[0].key.as_deref(), Some(&b"user-1"[..]));
    assert_eq!(
        received[0].header(headers::CORRELATION_ID),
        Some("corr-sasl")
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_at_once_not_a_timeout() {
    let config = sasl_ssl_client("not-the-password", &secure().ca);
    // Both wait 10 s for a broker that does not answer; a refusal must not take that long.
    let started = Instant::now();
    let err = ensure_topics(
        &config,
        &Topics::with_prefix(&unique("denied")),
        &TopicSettings::with_partitions(1),
    )
    .await
    .expect_err("a wrong password creates no topics");
    let took = started.elapsed();
    assert!(matches!(err, Error::Authentication(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("Kafka authentication failed: ")
            && message.contains("invalid credentials")
            && message.contains("SCRAM-SHA-512"),
        "{message}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}: {message}");

    let producer = Producer::new(&config, Duration::from_secs(5)).expect("producer");
    let started = Instant::now();
    let probe = tokio::task::spawn_blocking(move || producer.reachable(Duration::from_secs(10)))
        .await
        .expect("probe");
    let took = started.elapsed();
    assert!(matches!(probe, Err(Error::Authentication(_))), "{probe:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn the_sasl_ssl_listener_takes_only_tls_with_the_brokers_certificate() {
    let s = secure();
    let reachable = |config: KafkaConfig, timeout| async move {
        let producer = Producer::new(&config, timeout).expect("producer");
        tokio::task::spawn_blocking(move || producer.reachable(timeout))
            .await
            .expect("probe")
    };

    // The broker is up: its PLAINTEXT listener answers a PLAINTEXT client...
    let plain = KafkaConfig::new(s.cluster.brokers(), "pm-kafka-plaintext-test");
    reachable(plain, Duration::from_secs(10))
        .await
        .expect("the PLAINTEXT listener answers");
    // ...which gets nothing from the SASL_SSL one.
    let brokers = s.cluster.sasl_ssl_brokers().expect("the SASL_SSL listener");
    let plain = KafkaConfig::new(brokers, "pm-kafka-plaintext-test");
    let err = reachable(plain, Duration::from_secs(3))
        .await
        .expect_err("a PLAINTEXT client gets no answer from the SASL_SSL listener");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");

    // The right password but a CA that did not issue the broker's certificate: TLS is on,
    // and the certificate is checked before any password is sent.
    let started = Instant::now();
    let err = reachable(
        sasl_ssl_client(PASSWORD, &s.stranger_ca),
        Duration::from_secs(10),
    )
    .await
    .expect_err("a broker certificate from another CA is refused");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(
        err.to_string().contains("certificate verify failed"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
}
