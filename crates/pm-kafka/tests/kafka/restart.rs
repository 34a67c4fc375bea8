//! Producing across a broker restart.

use std::time::Duration;

use pm_kafka::testing::Cluster;
use pm_kafka::{headers, KafkaConfig, Producer, Topics};

#[tokio::test]
async fn a_producer_recovers_after_its_broker_restarts() {
    let mut broker = tokio::task::spawn_blocking(|| Cluster::start(1))
        .await
        .expect("task")
        .expect("broker");
    let config = KafkaConfig::new(broker.brokers(), "restart");
    let topics = Topics::with_prefix("r-");
    pm_kafka::topics::ensure_topics(
        &config,
        &topics,
        &pm_kafka::topics::TopicSettings::with_partitions(3),
    )
    .await
    .expect("topics");
    let producer = Producer::new(&config, Duration::from_secs(2)).expect("producer");
    producer
        .send(&topics.orders, b"k", b"before", headers::build([]))
        .await
        .expect("before the restart");

    broker = tokio::task::spawn_blocking(move || {
        broker.stop_node(1).expect("stop");
        broker
    })
    .await
    .expect("task");
    assert!(producer
        .send(&topics.orders, b"k", b"during", headers::build([]))
        .await
        .is_err());
    broker = tokio::task::spawn_blocking(move || {
        broker.start_node(1).expect("restart");
        broker
    })
    .await
    .expect("task");
    let mut last = None;
    for _ in 0..40 {
        match producer
            .send(&topics.orders, b"k", b"after", headers::build([]))
            .await
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, None, "the producer never recovered");
    drop(broker);
}

#[tokio::test]
async fn a_dropped_cluster_stops_its_brokers_and_removes_its_data() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(1))
        .await
        .expect("task")
        .expect("cluster");
    let broker = cluster.broker(1).to_owned();
    let dir = cluster.dir().to_owned();
    assert!(std::net::TcpStream::connect(&broker).is_ok());
    // Dropping waits for the watchdog's stop: the broker is gone when it returns.
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("task");
    assert!(!dir.exists(), "the cluster's data is removed");
    assert!(
        std::net::TcpStream::connect(&broker).is_err(),
        "the broker still listens after its cluster was dropped"
    );
}
