//! Reading a topic as it grows, from its beginning, in a throw-away group that commits
//! nothing: what a benchmark uses to see when each message arrives.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaConfig;

/// A reader of every partition of one topic, from offset zero on.
pub struct Tail {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

impl Tail {
    /// Assigns every partition `topic` has now (it must exist) from its beginning. Blocking.
    pub fn from_beginning(config: &KafkaConfig, topic: &str) -> Result<Tail, crate::Error> {
        let consumer: BaseConsumer = config
            .client()
            .set("group.id", format!("tail-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
        {
            assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Tail { consumer })
    }

    /// The next message, waiting at most `timeout`; `None` when none came.
    pub fn next(&self, timeout: Duration) -> Option<Result<BorrowedMessage<'_>, crate::Error>> {
        self.consumer
            .poll(timeout)
            .map(|m| m.map_err(crate::Error::from))
    }
}

/// The payload of `m`, or an empty slice.
pub fn payload<'a>(m: &'a BorrowedMessage<'_>) -> &'a [u8] {
    m.payload().unwrap_or_default()
}
