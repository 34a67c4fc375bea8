//! Topic names and idempotent topic creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::KafkaConfig;

/// The project's topics. The defaults are the contract (PRODUCT.md §4); a prefix keeps
/// tests (and several environments on one cluster) apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub orders: String,
    pub disputes: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            orders: "webhooks.orders".to_owned(),
            disputes: "webhooks.disputes".to_owned(),
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
        }
    }

    /// The dead-letter topic of `topic`.
    pub fn dlq(topic: &str) -> String {
        format!("{topic}.dlq")
    }

    /// The main topics and their dead-letter topics.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.orders.clone(),
            self.disputes.clone(),
            Self::dlq(&self.orders),
            Self::dlq(&self.disputes),
        ]
    }
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(
    config: &KafkaConfig,
    names: &[String],
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(%topic, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
