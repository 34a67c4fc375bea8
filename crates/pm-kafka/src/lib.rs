//! Kafka for Payment Manager.
//!
//! - [`topics`]: topic names (`webhooks.orders`, `webhooks.disputes`, their `.dlq`) and
//!   idempotent creation at start-up;
//! - [`producer`]: an idempotent, `acks=all` producer whose `send` resolves only when the
//!   broker has stored the message, keyed with the Java-compatible murmur2 partitioner;
//! - [`consumer`]: the at-least-once consumer loop: partitions processed concurrently, order
//!   kept within a partition, offsets committed only after the handler's transaction
//!   committed or the message was durably dead-lettered, errors classified as transient
//!   (retry forever, the partition waits), retryable (bounded, then DLQ) or permanent (DLQ);
//! - [`dlq`]: dead-letter headers; [`replay`]: listing and replaying dead letters;
//!   [`group`]: a group's committed offsets, read from outside the group; [`tail`]: a
//!   topic read as it grows, committing nothing;
//! - [`local`]: Apache Kafka on this machine (demo, benchmarks, tests);
//! - [`debezium`]: Debezium on this machine, the second outbox relay (benchmarks, tests);
//! - [`Error`]: a broker that refuses our login or TLS handshake is reported as that,
//!   promptly, not as a timeout (see `connection`).
//!
//! Nothing here knows about PostgreSQL or HTTP: the consumer calls a [`consumer::Handler`]
//! that the application provides. Tests run against Apache Kafka itself, started by
//! [`testing`] through the project's launcher (`scripts/kafka.sh`).

pub mod config;
mod connection;
pub mod consumer;
pub mod debezium;
pub mod dlq;
mod error;
pub mod group;
pub mod headers;
pub mod local;
pub mod metrics;
pub mod probe;
pub mod producer;
pub mod replay;
pub mod tail;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

pub use config::KafkaConfig;
pub use error::Error;
pub use producer::Producer;
pub use rdkafka::error::KafkaError;
pub use topics::Topics;
