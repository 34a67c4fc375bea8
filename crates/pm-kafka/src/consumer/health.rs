//! Whether a consumer is doing its job, for `/health/ready`.
//!
//! A consumer that stopped silently is the worst failure of an at-least-once pipeline:
//! nothing is lost, yet nothing moves, and no error is ever returned to anyone. So each
//! consumer reports here: its receive loop and its partition workers say when they fail
//! (a panic, a loop that ended on its own), and each worker says when it starts and ends a
//! batch. A batch in hand for longer than the stall limit — a handler that hangs, a
//! database that refuses every write while answering `SELECT 1` — makes the check fail
//! with the reason, as does any failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The health of one consumer; cheap to clone, shared with its workers.
#[derive(Debug, Clone)]
pub struct ConsumerHealth {
    inner: Arc<Mutex<State>>,
    topic: String,
    stall_after: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Why the consumer cannot work any more, if it cannot.
    failed: Option<String>,
    /// Partitions with a batch in hand: since when, and the last transient error seen.
    busy: BTreeMap<i32, (Instant, Option<String>)>,
    /// Set once the consumer's receive loop is running.
    started: bool,
    /// Why it has not started yet, when its owner knows (e.g. migrations pending).
    waiting: Option<String>,
}

impl ConsumerHealth {
    /// A consumer of `topic` is stalled when a batch has been in hand for `stall_after`.
    pub fn new(topic: impl Into<String>, stall_after: Duration) -> Self {
        ConsumerHealth {
            inner: Arc::default(),
            topic: topic.into(),
            stall_after,
        }
    }

    /// `Ok` while the consumer works; otherwise what is wrong, in words for an operator.
    pub fn check(&self) -> Result<(), String> {
        let state = self.lock();
        if let Some(why) = &state.failed {
            return Err(format!("consumer of {}: {why}", self.topic));
        }
        if !state.started {
            let why = state.waiting.as_deref().unwrap_or("not started yet");
            return Err(format!("consumer of {}: {why}", self.topic));
        }
        for (partition, (since, last_error)) in &state.busy {
            let age = since.elapsed();
            if age >= self.stall_after {
                let why = last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "partition {partition} of {} has not finished a batch in {} s{why}",
                    self.topic,
                    age.as_secs()
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn started(&self) {
        let mut state = self.lock();
        state.started = true;
        state.waiting = None;
    }

    /// Says why the consumer has not started yet (its owner holds it back).
    pub fn waiting(&self, why: impl Into<String>) {
        self.lock().waiting = Some(why.into());
    }

    /// Records why the consumer cannot work any more (the first reason is kept).
    pub fn failed(&self, why: impl Into<String>) {
        let why = why.into();
        tracing::error!(topic = %self.topic, %why, "the consumer cannot work any more");
        self.lock().failed.get_or_insert(why);
    }

    pub(crate) fn batch_started(&self, partition: i32) {
        self.lock().busy.insert(partition, (Instant::now(), None));
    }

    pub(crate) fn transient_error(&self, partition: i32, error: &str) {
        if let Some((_, last)) = self.lock().busy.get_mut(&partition) {
            *last = Some(error.to_owned());
        }
    }

    /// The batch is done, or the worker stopped (revoked, shut down).
    pub(crate) fn batch_ended(&self, partition: i32) {
        self.lock().busy.remove(&partition);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent: keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_healthy_once_started_and_while_batches_finish() {
        let h = ConsumerHealth::new("t", Duration::from_secs(60));
        assert!(h.check().is_err(), "not started yet");
        h.waiting("2 migration(s) pending");
        let err = h.check().expect_err("still waiting");
        assert!(err.contains("2 migration(s) pending"), "{err}");
        h.started();
        h.batch_started(0);
        assert_eq!(h.check(), Ok(()));
        h.batch_ended(0);
        assert_eq!(h.check(), Ok(()));
    }

    #[test]
    fn a_batch_in_hand_past_the_limit_fails_the_check_with_its_last_error() {
        let h = ConsumerHealth::new("t", Duration::ZERO);
        h.started();
        h.batch_started(2);
        h.transient_error(2, "relation \"orders\" does not exist");
        let err = h.check().expect_err("stalled");
        assert!(err.contains("partition 2 of t"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        h.batch_ended(2);
        assert_eq!(h.check(), Ok(()));
    }

    #[test]
    fn a_failure_is_reported_for_good() {
        let h = ConsumerHealth::new("t", Duration::from_secs(60));
        h.started();
        h.failed("worker of partition 1 panicked");
        h.failed("a second failure does not hide the first");
        let err = h.check().expect_err("failed");
        assert!(err.contains("partition 1 panicked"), "{err}");
    }
}
