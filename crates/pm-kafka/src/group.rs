//! A consumer group's committed offsets, read from outside the group: by `replay-dlq`
//! (where to resume) and by benchmarks and tests (how far a consumer got — committed
//! offsets move only after the handler's transaction committed); and forgotten, for a
//! consumer that rebuilds what it derives from a topic ([`forget`]).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::{KafkaConfig, KafkaError};

/// What [`forget`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// The group and its committed offsets are gone.
    Deleted,
    /// The group had never committed anything (or was deleted before).
    Unknown,
    /// The group has members (a consumer still running, or a crashed one whose session has
    /// not yet expired): nothing was changed.
    HasMembers,
}

/// Forgets `group`'s committed offsets by deleting the group, so that its next member
/// starts every partition at the log's start (the consumer's `auto.offset.reset` is
/// `earliest`). Only a group without members can be deleted: moving the offsets of
/// partitions a running member owns would race with its commits.
pub async fn forget(config: &KafkaConfig, group: &str) -> Result<Forgotten, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let mut attempt = 0;
    loop {
        let result = admin
            .delete_groups(&[group], &opts)
            .await?
            .into_iter()
            .next()
            .unwrap_or(Ok(group.to_owned()));
        match result {
            Ok(_) => return Ok(Forgotten::Deleted),
            Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Ok(Forgotten::Unknown),
            Err((_, RDKafkaErrorCode::NonEmptyGroup)) => return Ok(Forgotten::HasMembers),
            // A fresh cluster's coordinator may still be loading, or moving after a failure.
            Err((
                _,
                RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress,
            )) if attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
}

/// The committed offsets of `consumer`'s group (blocking). The group's coordinator may
/// still be loading on a fresh cluster (or moving after a broker failure): such answers
/// are retried for a while.
pub(crate) fn committed_offsets(
    consumer: &BaseConsumer,
    tpl: TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    use RDKafkaErrorCode as Code;
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
