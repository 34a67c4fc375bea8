//! Topic names and idempotent topic creation with durable settings.
//!
//! Durability is decided here: the webhook topics and their dead letters are created
//! with replication factor 3 (capped at the cluster's size) and `min.insync.replicas`
//! one less, so an acknowledged webhook (the producer uses `acks=all`) survives the loss
//! of a broker; and a dead letter never expires (`retention.ms=-1`) — it must not vanish
//! before an operator has seen it.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::{connection, Error, KafkaConfig};

/// The project's topics. The defaults are the contract (PRODUCT.md §4); a prefix keeps
/// tests (and several environments on one cluster) apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub orders: String,
    pub disputes: String,
    /// Where the outbox relay publishes the domain events (key: the aggregate id).
    pub domain_events: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            orders: "webhooks.orders".to_owned(),
            disputes: "webhooks.disputes".to_owned(),
            domain_events: "domain-events".to_owned(),
        }
    }
}

/// Consumer group of the orders topic.
pub const ORDERS_GROUP: &str = "payment-app-orders";
/// Consumer group of the disputes topic.
pub const DISPUTES_GROUP: &str = "payment-app-disputes";

impl Topics {
    /// `<prefix>webhooks.orders`, `<prefix>webhooks.disputes`.
    pub fn with_prefix(prefix: &str) -> Self {
        let d = Topics::default();
        Topics {
            orders: format!("{prefix}{}", d.orders),
            disputes: format!("{prefix}{}", d.disputes),
            domain_events: format!("{prefix}{}", d.domain_events),
        }
    }

    /// The dead-letter topic of `topic`.
    pub fn dlq(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// How topics are created when missing. Existing topics are never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partitions of each topic.
    pub partitions: i32,
    /// Copies of each partition; `None`: 3, capped at the number of brokers.
    pub replication_factor: Option<i32>,
    /// Replicas that must have a message before it is acknowledged; `None`: one less than
    /// the replication factor (at least 1).
    pub min_insync_replicas: Option<i32>,
    /// Retention of the webhook topics; `None`: the broker's default.
    pub retention: Option<Duration>,
    /// Retention of the dead-letter topics; `None`: unlimited.
    pub dlq_retention: Option<Duration>,
}

impl TopicSettings {
    /// The defaults with `partitions` partitions.
    pub fn with_partitions(partitions: i32) -> Self {
        TopicSettings {
            partitions,
            replication_factor: None,
            min_insync_replicas: None,
            retention: None,
            dlq_retention: None,
        }
    }

    /// The replication factor and `min.insync.replicas` for a cluster of `brokers`.
    pub fn replication(&self, brokers: usize) -> (i32, i32) {
        let brokers = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
        let rf = self.replication_factor.unwrap_or(3.min(brokers)).max(1);
        let min_isr = self.min_insync_replicas.unwrap_or(rf - 1).clamp(1, rf);
        (rf, min_isr)
    }
}

/// Creates the project's topics (main and dead-letter) that do not exist yet; existing
/// ones are left as they are. A cluster that refuses this client's login or TLS
/// handshake fails it at once, with the reason.
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &Topics,
    settings: &TopicSettings,
) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let brokers = broker_count(config).await?;
    let (rf, min_isr) = settings.replication(brokers);
    if rf == 1 {
        tracing::warn!(
            brokers,
            "creating topics with replication factor 1: losing the broker loses acknowledged \
             webhooks; use a cluster of 3 brokers (PM_KAFKA_REPLICATION_FACTOR) in production"
        );
    }
    let min_isr = min_isr.to_string();
    let retention = settings.retention.map(|d| d.as_millis().to_string());
    let dlq_retention = settings
        .dlq_retention
        .map_or("-1".to_owned(), |d| d.as_millis().to_string());
    let main = [&topics.orders, &topics.disputes];
    // The domain events' consumers (`pmctl project-analytics`) dead-letter what is not an
    // event at all, so its partition moves on.
    let dlqs = [&topics.orders, &topics.disputes, &topics.domain_events].map(|t| Topics::dlq(t));
    let new_topic = |name| {
        NewTopic::new(name, settings.partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
    };
    let mut new: Vec<NewTopic<'_>> = Vec::new();
    for name in main {
        new.push(match &retention {
            Some(r) => new_topic(name).set("retention.ms", r),
            None => new_topic(name),
        });
    }
    for name in &dlqs {
        new.push(new_topic(name).set("retention.ms", &dlq_retention));
    }
    // The domain events keep the webhook topics' retention: consumers that fall further
    // behind rebuild from the outbox's own retention, or from the database.
    new.push(match &retention {
        Some(r) => new_topic(&topics.domain_events).set("retention.ms", r),
        None => new_topic(&topics.domain_events),
    });
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(topic) => tracing::info!(
                %topic, partitions = settings.partitions, replication_factor = rf,
                min_insync_replicas = %min_isr, "topic created"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code).into());
            }
        }
    }
    Ok(())
}

/// How many brokers the cluster has (a blocking metadata request, off the async threads).
pub async fn broker_count(config: &KafkaConfig) -> Result<usize, Error> {
    let client = config.client();
    tokio::task::spawn_blocking(move || {
        let md = connection::probe(&client, Duration::from_secs(10))?;
        Ok(md.brokers().len())
    })
    .await
    .unwrap_or(Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Fail).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_defaults_to_three_capped_at_the_cluster_with_one_less_in_sync() {
        let s = TopicSettings::with_partitions(3);
        assert_eq!(s.replication(1), (1, 1));
        assert_eq!(s.replication(3), (3, 2));
        assert_eq!(s.replication(5), (3, 2));
        let explicit = TopicSettings {
            replication_factor: Some(2),
            min_insync_replicas: Some(5),
            ..s
        };
        assert_eq!(explicit.replication(3), (2, 2), "min ISR never above RF");
    }
}
