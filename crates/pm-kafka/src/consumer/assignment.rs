//! Which partitions this member owns, their workers, and the rebalance callbacks.
//!
//! The invariant: **a worker runs only on a partition this member owns.** librdkafka
//! calls the rebalance callbacks on the receive thread (inside `poll`), before it hands
//! revoked partitions to another member. On revocation we stop the revoked partitions'
//! workers, let each finish the batch in hand (bounded by the drain timeout), commit what
//! they applied, and forget them — all before the callback returns, so the next owner
//! starts exactly after the last applied message. A worker that does not finish in time
//! is aborted and marked abandoned: it may no longer store offsets, and what it had not stored
//! is delivered to the next owner (the database's dedupe makes a repeat harmless). On
//! assignment a partition is only recorded as owned; its worker is created by the first
//! message, so it always starts from the committed offset.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::ConsumerHealth;
use super::Received;
use crate::metrics::{ConsumerMetrics, PartitionLabels, TopicLabels};

/// What the receive loop and a partition's worker share.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Messages waiting in the worker's queue.
    queued: AtomicUsize,
    /// Whether the partition is paused; the lock also orders pause against resume.
    paused: Mutex<bool>,
    /// The next offset to commit: everything before it is applied or dead-lettered.
    applied: AtomicI64,
    /// Set when the worker outlived its revocation: it must not commit any more.
    abandoned: AtomicBool,
}

impl Flow {
    fn new() -> Self {
        Flow {
            applied: AtomicI64::new(-1),
            ..Flow::default()
        }
    }

    /// Records that everything before `next` is applied; `false` when the worker was
    /// abandoned and must not commit.
    pub(super) fn applied(&self, next: i64) -> bool {
        self.applied.store(next, Ordering::SeqCst);
        !self.abandoned.load(Ordering::SeqCst)
    }

    /// The worker took `n` messages off its queue; resumes the partition once the queue
    /// is down to half the limit.
    pub(super) fn taken(&self, n: usize, limit: usize, resume: impl FnOnce()) {
        let left = self.queued.fetch_sub(n, Ordering::SeqCst) - n;
        let mut paused = lock(&self.paused);
        if *paused && left <= limit / 2 {
            resume();
            *paused = false;
        }
    }

    /// A message was queued; pauses the partition once the queue reaches the limit.
    /// `true` when it paused.
    fn queued(&self, limit: usize, pause: impl FnOnce()) -> bool {
        let queued = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut paused = lock(&self.paused);
        if !*paused && queued >= limit {
            pause();
            *paused = true;
            return true;
        }
        false
    }
}

/// A partition's worker as its owner sees it.
pub(super) struct Worker {
    pub(super) queue: mpsc::UnboundedSender<(Received, Instant)>,
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<()>,
    pub(super) flow: Arc<Flow>,
}

#[derive(Default)]
struct Owned {
    partitions: BTreeSet<i32>,
    workers: HashMap<i32, Worker>,
}

/// The partitions this member owns and their workers.
pub(super) struct Assignment {
    topic: String,
    owned: Mutex<Owned>,
    runtime: tokio::runtime::Handle,
    drain_timeout: Duration,
    rebalances: AtomicUsize,
    health: ConsumerHealth,
}

/// Where a message goes.
pub(super) enum Route {
    /// Queued for its partition's worker.
    Queued,
    /// Queued, and the partition was paused because the queue is full.
    QueuedAndPaused,
    /// The partition is not ours (a message fetched before a revocation); dropped.
    NotOwned,
}

impl Assignment {
    pub(super) fn new(
        topic: String,
        runtime: tokio::runtime::Handle,
        drain_timeout: Duration,
        health: ConsumerHealth,
    ) -> Self {
        Assignment {
            topic,
            owned: Mutex::default(),
            runtime,
            drain_timeout,
            rebalances: AtomicUsize::new(0),
            health,
        }
    }

    /// Queues a message for its partition's worker, starting the worker with `spawn` if the
    /// partition has none; pauses the partition with `pause` when its queue is full.
    pub(super) fn route(
        &self,
        message: Received,
        limit: usize,
        spawn: impl FnOnce(
            i32,
            mpsc::UnboundedReceiver<(Received, Instant)>,
            CancellationToken,
            Arc<Flow>,
        ) -> JoinHandle<()>,
        pause: impl FnOnce(),
    ) -> Route {
        let partition = message.partition;
        let mut owned = lock(&self.owned);
        if !owned.partitions.contains(&partition) {
            return Route::NotOwned;
        }
        let worker = owned.workers.entry(partition).or_insert_with(|| {
            let (queue, rx) = mpsc::unbounded_channel();
            let stop = CancellationToken::new();
            let flow = Arc::new(Flow::new());
            let task = spawn(partition, rx, stop.clone(), flow.clone());
            Worker {
                queue,
                stop,
                task,
                flow,
            }
        });
        // Counted before it is sent, so the worker never takes more than was counted.
        let paused = worker.flow.queued(limit, pause);
        // A send fails only when the worker ended on its own (a panic, reported to
        // health); the message is not committed and comes again to the next owner.
        let _ = worker.queue.send((message, Instant::now()));
        if paused {
            Route::QueuedAndPaused
        } else {
            Route::Queued
        }
    }

    fn assign(&self, partitions: &[i32]) {
        lock(&self.owned)
            .partitions
            .extend(partitions.iter().copied());
    }

    /// Stops the workers of `partitions` (each finishes its batch in hand, bounded by the
    /// drain timeout), forgets the partitions, and returns the offsets to commit for them.
    pub(super) fn revoke(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let workers: Vec<(i32, Worker)> = {
            let mut owned = lock(&self.owned);
            for p in partitions {
                owned.partitions.remove(p);
            }
            partitions
                .iter()
                .filter_map(|p| owned.workers.remove(p).map(|w| (*p, w)))
                .collect()
        };
        self.drain(workers)
    }

    /// Stops every worker (shutdown); returns the offsets to commit.
    pub(super) fn revoke_all(&self) -> Vec<(i32, i64)> {
        let partitions: Vec<i32> = lock(&self.owned).partitions.iter().copied().collect();
        self.revoke(&partitions)
    }

    /// The partitions owned now.
    pub(super) fn owned(&self) -> Vec<i32> {
        lock(&self.owned).partitions.iter().copied().collect()
    }

    fn drain(&self, workers: Vec<(i32, Worker)>) -> Vec<(i32, i64)> {
        if workers.is_empty() {
            return Vec::new();
        }
        // This runs on the receive thread, outside the runtime's workers: it may block.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut pending = HashMap::new();
        let mut flows = Vec::new();
        for (partition, w) in workers {
            w.stop.cancel();
            drop(w.queue);
            pending.insert(partition, w.task.abort_handle());
            flows.push((partition, w.flow.clone()));
            let done = done_tx.clone();
            let task = w.task;
            self.runtime.spawn(async move {
                let _ = task.await;
                let _ = done.send(partition);
            });
        }
        drop(done_tx);
        let deadline = Instant::now() + self.drain_timeout;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(partition) => {
                    pending.remove(&partition);
                }
                Err(_) => break,
            }
        }
        for (partition, abort) in pending {
            if let Some((_, flow)) = flows.iter().find(|(p, _)| *p == partition) {
                flow.abandoned.store(true, Ordering::SeqCst);
            }
            abort.abort();
            tracing::warn!(
                topic = %self.topic, partition, timeout_ms = self.drain_timeout.as_millis() as u64,
                "a revoked partition's worker did not finish its batch in time; aborted \
                 (its uncommitted messages go to the next owner)"
            );
        }
        flows
            .into_iter()
            .filter_map(|(partition, flow)| {
                self.health.batch_ended(partition);
                let next = flow.applied.load(Ordering::SeqCst);
                (next >= 0).then_some((partition, next))
            })
            .collect()
    }

    fn next_rebalance(&self) -> usize {
        self.rebalances.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The consumer's librdkafka context: rebalance callbacks and lag statistics.
pub(super) struct Context {
    pub(super) assignment: Arc<Assignment>,
    pub(super) metrics: ConsumerMetrics,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    let labels = PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    self.metrics.lag.get_or_create(&labels).set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::connection::log_error(&error, reason);
    }
}

impl Context {
    fn ours(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.assignment.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked = self.ours(tpl);
        let lost = consumer.assignment_lost();
        let n = self.assignment.next_rebalance();
        tracing::info!(
            topic = %self.assignment.topic, partitions = ?revoked, rebalance = n, lost,
            "partitions revoked; draining their workers"
        );
        let offsets = self.assignment.revoke(&revoked);
        self.metrics
            .rebalances
            .get_or_create(&TopicLabels {
                topic: self.assignment.topic.clone(),
            })
            .inc();
        if offsets.is_empty() {
            return;
        }
        if lost {
            // Another member may own them already; its commits win.
            tracing::warn!(topic = %self.assignment.topic, "assignment lost: the drained offsets are not committed");
            return;
        }
        commit_drained(consumer, &self.assignment.topic, &offsets);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = self.ours(tpl);
                let n = self.assignment.next_rebalance();
                self.assignment.assign(&assigned);
                tracing::info!(
                    topic = %self.assignment.topic, partitions = ?assigned,
                    owned = ?self.assignment.owned(), rebalance = n,
                    "partitions assigned"
                );
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.assignment.topic, error = %e, "rebalance failed")
            }
        }
    }
}

/// Commits, synchronously, what drained workers applied (on revocation and shutdown: the
/// next owner starts right after it). A failure only means the next owner repeats those
/// batches, which the database deduplicates.
pub(super) fn commit_drained<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    offsets: &[(i32, i64)],
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => tracing::info!(%topic, ?offsets, "committed the drained partitions' offsets"),
        Err(e) => tracing::warn!(
            %topic, error = %e,
            "cannot commit the drained partitions' offsets; the next owner repeats their last batches"
        ),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves the state half-changed on a panic: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_pauses_at_the_limit_and_resumes_at_half() {
        let flow = Flow::new();
        let pauses = std::cell::Cell::new(0);
        let resumes = std::cell::Cell::new(0);
        for _ in 0..3 {
            assert!(!flow.queued(4, || pauses.set(pauses.get() + 1)));
        }
        assert!(flow.queued(4, || pauses.set(pauses.get() + 1)));
        // Already paused: more messages (fetched before the pause) do not pause again.
        assert!(!flow.queued(4, || pauses.set(pauses.get() + 1)));
        assert_eq!(pauses.get(), 1);
        flow.taken(2, 4, || resumes.set(resumes.get() + 1));
        assert_eq!(resumes.get(), 0, "3 left of 4: still paused");
        flow.taken(1, 4, || resumes.set(resumes.get() + 1));
        assert_eq!(resumes.get(), 1, "2 left: resumed");
        flow.taken(2, 4, || resumes.set(resumes.get() + 1));
        assert_eq!(resumes.get(), 1, "not paused: nothing to resume");
    }

    #[test]
    fn an_abandoned_worker_may_not_commit() {
        let flow = Flow::new();
        assert!(flow.applied(5));
        flow.abandoned.store(true, Ordering::SeqCst);
        assert!(!flow.applied(9));
        assert_eq!(flow.applied.load(Ordering::SeqCst), 9);
    }
}
