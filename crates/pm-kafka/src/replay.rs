//! Listing and replaying dead letters.
//!
//! `list` reads a DLQ topic from the beginning to its current end without committing
//! anything. `replay` reads through its own consumer group (`pmctl-replay-dlq.<dlq topic>`),
//! republishes the messages that match the filters to their original topic (or another),
//! and commits its position as it goes: a replay interrupted half-way resumes where it
//! stopped. Offsets are stored explicitly, one message at a time, once the message was
//! replayed or passed over: a run never commits past a message whose publish failed, and
//! messages that arrived after the run started (past the ends it captured) are left for
//! the next run. Filters decide what is republished; everything read is passed over, so a
//! filtered run does not see the same messages again (`from_beginning` rescans). Replayed
//! messages carry `pm-replay-count`, so a message that keeps failing is visible, and
//! `max_replays` stops it from looping.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dlq::{self, DeadLetterInfo, ErrorClass};
use crate::producer::Producer;
use crate::{headers, KafkaConfig, KafkaError};

/// One dead letter as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub key: String,
    pub event_type: Option<String>,
    pub replay_count: u32,
    pub correlation_id: Option<String>,
    /// `None` when the message lacks the dead-letter headers (written by something else).
    pub info: Option<DeadLetterInfo>,
    /// The original value, as text.
    pub value: String,
}

/// Which dead letters to act on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub error_class: Option<ErrorClass>,
    pub error_contains: Option<String>,
    pub key: Option<String>,
    pub event_type: Option<String>,
    /// Only the dead letter at this DLQ partition and offset.
    pub at: Option<(i32, i64)>,
}

impl Filter {
    pub fn matches(&self, d: &DeadLetter) -> bool {
        let failed_at = d.info.as_ref().map(|i| i.first_failed_at);
        self.at
            .is_none_or(|at| at == (d.dlq_partition, d.dlq_offset))
            && self.since.is_none_or(|s| failed_at.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| failed_at.is_some_and(|t| t < u))
            && self
                .error_class
                .is_none_or(|c| d.info.as_ref().is_some_and(|i| i.class == c))
            && self.error_contains.as_ref().is_none_or(|s| {
                d.info
                    .as_ref()
                    .is_some_and(|i| i.error.contains(s.as_str()))
            })
            && self.key.as_ref().is_none_or(|k| &d.key == k)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| d.event_type.as_ref() == Some(t))
    }
}

fn dead_letter(m: &BorrowedMessage<'_>) -> DeadLetter {
    let h = m.headers();
    DeadLetter {
        dlq_partition: m.partition(),
        dlq_offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        event_type: headers::get(h, headers::EVENT_TYPE),
        replay_count: dlq::replay_count(h),
        correlation_id: headers::get(h, headers::CORRELATION_ID),
        info: DeadLetterInfo::from_message(m),
        value: m
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
    }
}

/// The end offsets of every partition of `topic` (reading stops there).
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, (i64, i64)>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = HashMap::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            out.insert(p.id(), (low, high));
        }
    }
    Ok(out)
}

/// Reads messages until every partition reached the end captured at the start.
fn read_to_end(
    consumer: &BaseConsumer,
    ends: &HashMap<i32, (i64, i64)>,
    start: &HashMap<i32, i64>,
    cancel: &CancellationToken,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<bool, KafkaError>,
) -> Result<(), KafkaError> {
    let mut remaining: HashMap<i32, i64> = ends
        .iter()
        .filter(|(p, (_, high))| start.get(p).copied().unwrap_or(0) < *high)
        .map(|(p, (_, high))| (*p, *high))
        .collect();
    let mut idle = 0;
    while !remaining.is_empty() && !cancel.is_cancelled() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle = 0;
                let (p, o) = (m.partition(), m.offset());
                let Some(end) = remaining.get(&p).copied() else {
                    continue;
                };
                if o >= end {
                    remaining.remove(&p);
                    continue;
                }
                if !each(&m)? {
                    return Ok(());
                }
                if o + 1 >= end {
                    remaining.remove(&p);
                }
            }
            Some(Err(e)) => return Err(e),
            None => {
                idle += 1;
                if idle > 40 {
                    return Err(KafkaError::Global(
                        rdkafka::error::RDKafkaErrorCode::OperationTimedOut,
                    ));
                }
            }
        }
    }
    Ok(())
}

fn assign(
    consumer: &BaseConsumer,
    topic: &str,
    offsets: &HashMap<i32, i64>,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer.assign(&tpl)
}

/// Every dead letter of `dlq_topic` matching `filter` (nothing is committed).
pub fn list(
    config: &KafkaConfig,
    dlq_topic: &str,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<DeadLetter>, KafkaError> {
    let consumer: BaseConsumer = config
        .client()
        .set("group.id", format!("pmctl-list-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let ends = ends(&consumer, dlq_topic)?;
    let start: HashMap<i32, i64> = ends.iter().map(|(p, (low, _))| (*p, *low)).collect();
    assign(&consumer, dlq_topic, &start)?;
    let mut out = Vec::new();
    read_to_end(&consumer, &ends, &start, &CancellationToken::new(), |m| {
        let d = dead_letter(m);
        if filter.matches(&d) {
            out.push(d);
        }
        Ok(out.len() < limit)
    })?;
    out.sort_by_key(|d| (d.dlq_partition, d.dlq_offset));
    Ok(out)
}

/// Replays of one message after which it is skipped (`pm-replay-count`): a message that
/// keeps failing stops looping.
pub const DEFAULT_MAX_REPLAYS: u32 = 3;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Publish to this topic instead of the original one.
    pub to: Option<String>,
    pub dry_run: bool,
    /// Replay at most this many messages.
    pub limit: Option<usize>,
    /// Messages per second (`None`: as fast as the broker takes them).
    pub rate: Option<f64>,
    /// Skip messages already replayed this many times.
    pub max_replays: u32,
    /// Rescan the DLQ from its start instead of resuming.
    pub from_beginning: bool,
    /// Replay outside the replay group: read from the DLQ's start and commit nothing, so
    /// the resumable replay's position is left alone (the admin UI's "replay this one").
    pub detached: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplaySummary {
    pub replayed: usize,
    /// Read but not replayed: filtered out, or over `max_replays`.
    pub skipped: usize,
    pub over_max_replays: usize,
    pub failed: usize,
    /// What was (or, with `dry_run`, would be) replayed.
    pub messages: Vec<DeadLetter>,
}

/// Where the replay group resumes on each partition: its committed offset, or the log's
/// start when it has none (or the log was truncated past it).
fn resume_points(
    consumer: &BaseConsumer,
    dlq_topic: &str,
    ends: &HashMap<i32, (i64, i64)>,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition(dlq_topic, *p);
    }
    let committed = crate::group::committed_offsets(consumer, tpl)?;
    Ok(ends
        .iter()
        .map(|(p, (low, _))| {
            let resumed = committed
                .find_partition(dlq_topic, *p)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            (*p, resumed.unwrap_or(*low).max(*low))
        })
        .collect())
}

/// Messages between `start` and the ends.
fn remaining(ends: &HashMap<i32, (i64, i64)>, start: &HashMap<i32, i64>) -> u64 {
    ends.iter()
        .map(|(p, (_, high))| (high - start.get(p).copied().unwrap_or(0)).max(0) as u64)
        .sum()
}

/// The dead letters of one DLQ topic that `replay` has not read yet: what a resumed replay
/// would go through. Watched by `serve-api` as `pm_kafka_dlq_depth`.
pub struct Backlog {
    consumer: BaseConsumer,
    dlq_topic: String,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("dlq_topic", &self.dlq_topic)
            .finish_non_exhaustive()
    }
}

impl Backlog {
    /// A reader of the replay group's offsets; it never joins the group or commits.
    pub fn new(config: &KafkaConfig, dlq_topic: &str) -> Result<Self, KafkaError> {
        let consumer = config
            .client()
            .set("group.id", replay_group(dlq_topic))
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Backlog {
            consumer,
            dlq_topic: dlq_topic.to_owned(),
        })
    }

    pub fn dlq_topic(&self) -> &str {
        &self.dlq_topic
    }

    /// Messages not yet replayed (blocking: run it on a blocking thread).
    pub fn depth(&self) -> Result<u64, KafkaError> {
        let ends = ends(&self.consumer, &self.dlq_topic)?;
        let start = resume_points(&self.consumer, &self.dlq_topic, &ends)?;
        Ok(remaining(&ends, &start))
    }
}

/// The replay consumer group of a DLQ topic.
pub fn replay_group(dlq_topic: &str) -> String {
    format!("pmctl-replay-dlq.{dlq_topic}")
}

/// Replays the matching dead letters of `dlq_topic` (blocking; run it on a blocking
/// thread). `progress` is called after each message read with the summary so far and
/// the total number of messages to read.
pub fn replay(
    config: &KafkaConfig,
    dlq_topic: &str,
    filter: &Filter,
    opts: &ReplayOptions,
    producer: &Producer,
    cancel: &CancellationToken,
    mut progress: impl FnMut(&ReplaySummary, u64),
) -> Result<ReplaySummary, KafkaError> {
    let tracked = !opts.dry_run && !opts.detached;
    let group = if !tracked {
        format!("pmctl-detached-{}", uuid::Uuid::new_v4())
    } else {
        replay_group(dlq_topic)
    };
    let consumer: BaseConsumer<DefaultConsumerContext> = config
        .client()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        // Only what was replayed or passed over on purpose is stored, so no commit can
        // ever move past a message whose publish failed or that arrived after the start.
        .set("enable.auto.offset.store", "false")
        .create()?;
    let ends = ends(&consumer, dlq_topic)?;
    let start = if !tracked || opts.from_beginning {
        ends.iter().map(|(p, (low, _))| (*p, *low)).collect()
    } else {
        resume_points(&consumer, dlq_topic, &ends)?
    };
    let total = remaining(&ends, &start);
    assign(&consumer, dlq_topic, &start)?;

    let runtime = tokio::runtime::Handle::current();
    let mut summary = ReplaySummary::default();
    let interval = opts
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_send = std::time::Instant::now();
    let mut read = 0u64;
    read_to_end(&consumer, &ends, &start, cancel, |m| {
        let d = dead_letter(m);
        let wanted = filter.matches(&d);
        if !wanted {
            summary.skipped += 1;
        } else if d.replay_count >= opts.max_replays {
            summary.skipped += 1;
            summary.over_max_replays += 1;
        } else if opts.dry_run {
            summary.replayed += 1;
            summary.messages.push(d);
        } else {
            let target = opts
                .to
                .clone()
                .or_else(|| d.info.as_ref().map(|i| i.original_topic.clone()));
            match target {
                None => summary.failed += 1,
                Some(target) => {
                    if let Some(iv) = interval {
                        let now = std::time::Instant::now();
                        if next_send > now {
                            std::thread::sleep(next_send - now);
                        }
                        next_send = next_send.max(now) + iv;
                    }
                    let count = (d.replay_count + 1).to_string();
                    let kept: Vec<(String, String)> = headers::pairs(m.headers())
                        .into_iter()
                        .filter(|(k, _)| !k.starts_with("pm-dlq-") && k != headers::REPLAY_COUNT)
                        .collect();
                    let h = headers::build(
                        kept.iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .chain([(headers::REPLAY_COUNT, count.as_str())]),
                    );
                    let key = m.key().unwrap_or_default();
                    let payload = m.payload().unwrap_or_default();
                    match runtime.block_on(producer.send(&target, key, payload, h)) {
                        Ok(_) => {
                            summary.replayed += 1;
                            summary.messages.push(d);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, topic = %target, "replay publish failed");
                            summary.failed += 1;
                            // Stop here so the failed message is not passed over.
                            progress(&summary, total);
                            return Ok(false);
                        }
                    }
                }
            }
        }
        if tracked {
            // Stores the offset after this message's (librdkafka adds the 1).
            consumer.store_offset_from_message(m)?;
            read += 1;
            if read.is_multiple_of(100) {
                // Progress survives an interrupted run; the final commit below is the sure one.
                commit_stored(&consumer, CommitMode::Async)?;
            }
        }
        progress(&summary, total);
        Ok(opts.limit.is_none_or(|l| summary.replayed < l))
    })?;
    if tracked {
        // Make the stored offsets durable before reporting.
        commit_stored(&consumer, CommitMode::Sync)?;
    }
    Ok(summary)
}

/// Commits the offsets stored so far (nothing stored yet is not an error).
fn commit_stored(consumer: &BaseConsumer, mode: CommitMode) -> Result<(), KafkaError> {
    match consumer.commit_consumer_state(mode) {
        Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}
