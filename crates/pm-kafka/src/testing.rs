//! Apache Kafka for tests (feature `testing`).
//!
//! Tests run against the real broker, started by the project's own launcher
//! ([`crate::local`]): one single-node cluster per test binary, shared by its tests
//! through unique topic and group names ([`brokers`], [`unique`]), and clusters of a
//! test's own ([`Cluster`]) for tests that stop, kill or restart brokers or need a
//! SASL_SSL listener ([`ClusterOptions`]).
//! `PM_TEST_KAFKA_BROKERS` names an existing cluster instead of the shared one. Every
//! cluster lives no longer than the test process (see [`crate::local`]).

use std::sync::OnceLock;

pub use crate::local::LocalCluster as Cluster;
pub use crate::local::{ClusterOptions, SaslSsl};

/// The variable naming an existing cluster.
pub const BROKERS_VAR: &str = "PM_TEST_KAFKA_BROKERS";

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

enum Shared {
    Existing(String),
    Started(Cluster),
}

/// Bootstrap servers of the test binary's cluster. Panics with what is missing when there
/// is none: a Kafka test never skips silently.
pub fn brokers() -> String {
    let shared = SHARED.get_or_init(|| {
        if let Ok(b) = std::env::var(BROKERS_VAR) {
            if !b.is_empty() {
                return Ok(Shared::Existing(b));
            }
        }
        Cluster::start(1).map(Shared::Started)
    });
    match shared {
        Ok(Shared::Existing(b)) => b.clone(),
        Ok(Shared::Started(c)) => c.brokers().to_owned(),
        Err(e) => panic!("no Kafka cluster for the tests: {e}"),
    }
}

/// A unique prefix for topic and group names of one test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Every message of `topic` from its start to the end it has now, in each partition's order
/// (a reader of its own, committing nothing). Waits at most 30 s.
///
/// # Panics
/// When the broker cannot be read: a test set-up error.
pub fn read_all(config: &crate::KafkaConfig, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = config
        .client()
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("tpl");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if ends
                .get(&m.partition())
                .is_some_and(|end| m.offset() + 1 >= *end)
            {
                ends.remove(&m.partition());
            }
            out.push(m.detach());
        }
    }
    out
}

/// The value of header `name` of `m`, as text.
pub fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::{Headers, Message};
    let h = m.headers()?;
    (0..h.count())
        .map(|i| h.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
