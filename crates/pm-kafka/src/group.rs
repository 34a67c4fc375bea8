//! A consumer group's committed offsets, read from outside the group: by `replay-dlq`
//! (where to resume) and by benchmarks and tests (how far a consumer got — committed
//! offsets move only after the handler's transaction committed).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use crate::{KafkaConfig, KafkaError};

/// The committed offsets of `consumer`'s group (blocking). The group's coordinator may
/// still be loading on a fresh cluster (or moving after a broker failure): such answers
/// are retried for a while.
pub(crate) fn committed_offsets(
    consumer: &BaseConsumer,
    tpl: TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    use rdkafka::error::RDKafkaErrorCode as Code;
    let mut attempt = 0;
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Err(e)
                if attempt < 20
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            Code::NotCoordinator
                                | Code::CoordinatorNotAvailable
                                | Code::CoordinatorLoadInProgress
                        )
                    ) =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Watches how far a consumer group has committed on a topic, without joining the group
/// (benchmarks and tests read progress this way: committed offsets move only after the
/// handler's transaction committed).
pub struct GroupProgress {
    reader: BaseConsumer,
    partitions: TopicPartitionList,
}

impl std::fmt::Debug for GroupProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupProgress")
            .field("partitions", &self.partitions.count())
            .finish_non_exhaustive()
    }
}

impl GroupProgress {
    /// Blocking: fetches the topic's partitions.
    pub fn new(config: &KafkaConfig, group: &str, topic: &str) -> Result<Self, KafkaError> {
        let reader: BaseConsumer = config
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let md = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut partitions = TopicPartitionList::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                partitions.add_partition(topic, p.id());
            }
        }
        Ok(GroupProgress { reader, partitions })
    }

    /// The committed offsets summed over the partitions (blocking): the messages the
    /// group has applied, on a topic whose log starts at offset 0.
    pub fn committed(&self) -> Result<u64, KafkaError> {
        let committed = committed_offsets(&self.reader, self.partitions.clone())?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw())
            .filter(|o| *o > 0)
            .map(|o| o as u64)
            .sum())
    }
}
