//! Dead letters: the original key and value, plus headers saying why, how often, and
//! where the message came from.

use chrono::{DateTime, Utc};
use rdkafka::message::{Headers, Message, OwnedHeaders};

use crate::headers;

/// Header names of a dead letter.
pub mod header {
    pub const ERROR: &str = "pm-dlq-error";
    pub const ERROR_CLASS: &str = "pm-dlq-error-class";
    pub const ATTEMPTS: &str = "pm-dlq-attempts";
    pub const ORIGINAL_TOPIC: &str = "pm-dlq-original-topic";
    pub const ORIGINAL_PARTITION: &str = "pm-dlq-original-partition";
    pub const ORIGINAL_OFFSET: &str = "pm-dlq-original-offset";
    pub const FIRST_FAILED_AT: &str = "pm-dlq-first-failed-at";
}

/// Why a message was dead-lettered. Transient errors never are: they are retried until
/// they pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Still failing after the bounded retries (e.g. the order was not known yet).
    Retryable,
    /// Can never succeed as it is (undecodable, invalid).
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retryable" => Some(ErrorClass::Retryable),
            "permanent" => Some(ErrorClass::Permanent),
            _ => None,
        }
    }
}

/// What is known about a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterInfo {
    pub error: String,
    pub class: ErrorClass,
    pub attempts: u32,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub first_failed_at: DateTime<Utc>,
}

impl DeadLetterInfo {
    /// The original headers (correlation id, event type, replay count…) followed by the
    /// dead-letter headers; earlier dead-letter headers are replaced.
    pub fn headers(&self, original: &[(String, String)]) -> OwnedHeaders {
        let attempts = self.attempts.to_string();
        let partition = self.original_partition.to_string();
        let offset = self.original_offset.to_string();
        let failed_at = pm_domain::time::format(&self.first_failed_at);
        let ours = [
            (header::ERROR, self.error.as_str()),
            (header::ERROR_CLASS, self.class.as_str()),
            (header::ATTEMPTS, attempts.as_str()),
            (header::ORIGINAL_TOPIC, self.original_topic.as_str()),
            (header::ORIGINAL_PARTITION, partition.as_str()),
            (header::ORIGINAL_OFFSET, offset.as_str()),
            (header::FIRST_FAILED_AT, failed_at.as_str()),
        ];
        let kept = original
            .iter()
            .filter(|(k, _)| !k.starts_with("pm-dlq-"))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        headers::build(kept.chain(ours))
    }

    /// Reads the dead-letter headers of a message from a DLQ topic.
    pub fn from_message<M: Message>(m: &M) -> Option<Self> {
        let h = m.headers();
        let get = |name| headers::get(h, name);
        Some(DeadLetterInfo {
            error: get(header::ERROR)?,
            class: ErrorClass::parse(&get(header::ERROR_CLASS)?)?,
            attempts: get(header::ATTEMPTS)?.parse().ok()?,
            original_topic: get(header::ORIGINAL_TOPIC)?,
            original_partition: get(header::ORIGINAL_PARTITION)?.parse().ok()?,
            original_offset: get(header::ORIGINAL_OFFSET)?.parse().ok()?,
            first_failed_at: pm_domain::time::parse_rfc3339(&get(header::FIRST_FAILED_AT)?).ok()?,
        })
    }
}

/// True when the headers carry a replay count of at least `max`.
pub fn replay_count<H: Headers>(h: Option<&H>) -> u32 {
    headers::get(h, headers::REPLAY_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
