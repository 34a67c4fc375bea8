//! Group commit for sync-mode webhooks: webhooks that arrive while the database is busy
//! share one transaction, one round trip per group of distinct orders, and one WAL flush.
//!
//! A handler hands its webhook to [`WebhookGroups::apply_order`] (or `apply_chargeback`) and
//! waits. Each webhook goes to the worker its order id hashes to; a worker takes whatever is
//! queued for it (never waiting for more, so a lone webhook is applied at once), applies
//! the group in one transaction — order webhooks first, in one statement per round (see
//! [`pm_storage::webhooks::apply_orders`]), then chargebacks, which so see the orders of
//! their own group — and answer every member only after the commit. Under load the queue
//! fills while a group is in the database, so groups grow with the offered rate and the
//! per-webhook cost of round trips and commits falls.
//!
//! Sharding by order id keeps concurrent groups out of each other's way: every row a webhook
//! locks — its order, the order's dispute, its dedupe row (a provider event belongs to one
//! order) — is touched by one worker only, so two groups never wait for each other and cannot
//! deadlock, whatever mix of duplicates and lifecycle events of one order they hold.
//!
//! Invariants:
//! - a webhook is acknowledged only after the transaction holding it committed;
//! - a failure of one webhook never fails the others: when a group's transaction fails for
//!   any reason, nothing of it was stored, and every member is applied again on its own, in
//!   its own transaction, by the waiting handler — exactly the path used without groups. A
//!   group whose COMMIT was lost in transit may in fact have committed; its members then
//!   meet their own dedupe rows and are answered as duplicates, which is true.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use pm_storage::webhooks::{self, ChargebackOutcome, Delivery, OrderOutcome};
use pm_storage::{PgPool, StorageError};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

/// How webhooks are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// The most webhooks in one group; 0 turns grouping off (one transaction per request).
    pub max_size: usize,
    /// Groups applied at the same time, each on its own connection.
    pub workers: usize,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            max_size: 128,
            workers: 4,
        }
    }
}

/// A webhook waiting for its group.
enum Job {
    Order {
        webhook: Arc<OrderWebhook>,
        delivery: Delivery,
        answer: oneshot::Sender<Option<OrderOutcome>>,
        span: tracing::Span,
    },
    Chargeback {
        webhook: Arc<ChargebackWebhook>,
        delivery: Delivery,
        answer: oneshot::Sender<Option<ChargebackOutcome>>,
        span: tracing::Span,
    },
}

impl Job {
    fn span(&self) -> &tracing::Span {
        match self {
            Job::Order { span, .. } | Job::Chargeback { span, .. } => span,
        }
    }

    fn order_id(&self) -> &str {
        match self {
            Job::Order { webhook, .. } => webhook.order_id.as_str(),
            Job::Chargeback { webhook, .. } => webhook.order_id.as_str(),
        }
    }
}

/// The queues in front of the group workers, one each. Cloning shares them.
#[derive(Debug, Clone)]
pub(crate) struct WebhookGroups {
    queues: Vec<mpsc::Sender<Job>>,
    metrics: GroupMetrics,
}

impl WebhookGroups {
    /// Starts `settings.workers` workers on the current runtime; without a runtime, or with
    /// grouping off, every webhook takes its own transaction.
    pub(crate) fn start(pool: &PgPool, settings: GroupSettings, metrics: GroupMetrics) -> Self {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (Some(runtime), true) = (runtime, settings.max_size > 0 && settings.workers > 0) else {
            return Self {
                queues: Vec::new(),
                metrics,
            };
        };
        let queues = (0..settings.workers)
            .map(|_| {
                let (queue, receiver) = mpsc::channel(settings.max_size * 2);
                let worker = Worker {
                    pool: pool.clone(),
                    receiver,
                    max_size: settings.max_size,
                    metrics: metrics.clone(),
                };
                runtime.spawn(worker.run());
                queue
            })
            .collect();
        Self { queues, metrics }
    }

    /// The queue of the worker that owns `order_id`.
    fn queue_of(&self, order_id: &str) -> Option<&mpsc::Sender<Job>> {
        if self.queues.is_empty() {
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        order_id.hash(&mut hasher);
        let index = (hasher.finish() % self.queues.len() as u64) as usize;
        self.queues.get(index)
    }

    /// Applies an order webhook in a group, or alone when the group failed or grouping is
    /// off. Answers only after the webhook's transaction committed.
    pub(crate) async fn apply_order(
        &self,
        pool: &PgPool,
        webhook: OrderWebhook,
        delivery: Delivery,
    ) -> Result<OrderOutcome, StorageError> {
        let webhook = Arc::new(webhook);
        let job = |answer, span| Job::Order {
            webhook: webhook.clone(),
            delivery: delivery.clone(),
            answer,
            span,
        };
        self.grouped_or_alone(job, webhooks::apply_order_tx(pool, &webhook, &delivery))
            .await
    }

    /// Applies a chargeback webhook in a group, or alone (see [`Self::apply_order`]).
    pub(crate) async fn apply_chargeback(
        &self,
        pool: &PgPool,
        webhook: ChargebackWebhook,
        delivery: Delivery,
    ) -> Result<ChargebackOutcome, StorageError> {
        let webhook = Arc::new(webhook);
        let job = |answer, span| Job::Chargeback {
            webhook: webhook.clone(),
            delivery: delivery.clone(),
            answer,
            span,
        };
        self.grouped_or_alone(
            job,
            webhooks::apply_chargeback_tx(pool, &webhook, &delivery),
        )
        .await
    }

    /// Queues a job and waits for its group's answer; when grouping is off or the group
    /// failed, runs `alone` (the webhook in its own transaction) instead. `alone` is a
    /// future, so it does nothing unless it is awaited.
    async fn grouped_or_alone<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Option<T>>, tracing::Span) -> Job,
        alone: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let (answer, answered) = oneshot::channel();
        let job = job(answer, tracing::Span::current());
        let Some(queue) = self.queue_of(job.order_id()) else {
            return alone.await;
        };
        self.metrics.queued.inc();
        if queue.send(job).await.is_err() {
            self.metrics.queued.dec();
            return alone.await;
        }
        match answered.await.ok().flatten() {
            Some(outcome) => Ok(outcome),
            None => {
                self.metrics.alone.inc();
                alone.await
            }
        }
    }
}

struct Worker {
    pool: PgPool,
    receiver: mpsc::Receiver<Job>,
    max_size: usize,
    metrics: GroupMetrics,
}

impl Worker {
    async fn run(mut self) {
        while let Some(group) = self.next_group().await {
            // The group's statements join the first member's trace; the others link to it.
            let span = tracing::info_span!(parent: group[0].span(), "apply webhook group", size = group.len());
            for job in &group[1..] {
                span.follows_from(job.span());
            }
            self.metrics.size.observe(group.len() as f64);
            self.apply(group).instrument(span).await;
        }
    }

    /// Waits for a webhook, then takes those queued behind it, up to the group size.
    async fn next_group(&mut self) -> Option<Vec<Job>> {
        let first = self.receiver.recv().await?;
        let mut group = vec![first];
        while group.len() < self.max_size {
            match self.receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        self.metrics.queued.dec_by(group.len() as i64);
        Some(group)
    }

    async fn apply(&self, group: Vec<Job>) {
        let mut orders = Vec::new();
        let mut chargebacks = Vec::new();
        for job in group {
            match job {
                // A member whose request was abandoned (request timeout, client gone) before
                // its group started is left out: its answer was already "not done".
                Job::Order { answer, .. } if answer.is_closed() => {}
                Job::Chargeback { answer, .. } if answer.is_closed() => {}
                Job::Order {
                    webhook,
                    delivery,
                    answer,
                    ..
                } => orders.push((webhook, delivery, answer)),
                Job::Chargeback {
                    webhook,
                    delivery,
                    answer,
                    ..
                } => chargebacks.push((webhook, delivery, answer)),
            }
        }
        if orders.is_empty() && chargebacks.is_empty() {
            return;
        }
        match self.apply_in_one_transaction(&orders, &chargebacks).await {
            Ok((order_outcomes, chargeback_outcomes)) => {
                for ((_, _, answer), outcome) in orders.into_iter().zip(order_outcomes) {
                    // A handler that went away during the COMMIT misses an answer that is
                    // true in the database; its client's retry is a duplicate.
                    let _ = answer.send(Some(outcome));
                }
                for ((_, _, answer), outcome) in chargebacks.into_iter().zip(chargeback_outcomes) {
                    let _ = answer.send(Some(outcome));
                }
            }
            Err(reason) => {
                // Nothing of the group is stored: each member still waiting is applied on
                // its own.
                tracing::debug!(%reason, size = orders.len() + chargebacks.len(), "a webhook group was rolled back; its members are applied one by one");
                self.metrics.failed.inc();
                for (_, _, answer) in orders {
                    let _ = answer.send(None);
                }
                for (_, _, answer) in chargebacks {
                    let _ = answer.send(None);
                }
            }
        }
    }

    /// The group in one transaction: order webhooks first (one statement per round), then
    /// chargebacks, which so see the orders of their own group. Commits only when every
    /// member is still waiting for its answer: a request abandoned meanwhile was answered
    /// "rolled back", so the group is rolled back and the others are applied alone.
    async fn apply_in_one_transaction(
        &self,
        orders: &[OrderJob],
        chargebacks: &[ChargebackJob],
    ) -> Result<(Vec<OrderOutcome>, Vec<ChargebackOutcome>), GroupFailure> {
        let mut tx = pm_storage::db::begin(&self.pool).await?;
        let batch: Vec<(&OrderWebhook, Delivery)> = orders
            .iter()
            .map(|(w, d, _)| (w.as_ref(), d.clone()))
            .collect();
        let order_outcomes = webhooks::apply_orders(&mut tx, &batch).await?;
        let mut chargeback_outcomes = Vec::with_capacity(chargebacks.len());
        for (webhook, delivery, _) in chargebacks {
            // An unknown order writes nothing, so it can share the transaction.
            chargeback_outcomes.push(webhooks::apply_chargeback(&mut tx, webhook, delivery).await?);
        }
        let abandoned = orders.iter().filter(|(_, _, a)| a.is_closed()).count()
            + chargebacks.iter().filter(|(_, _, a)| a.is_closed()).count();
        if abandoned > 0 {
            tx.rollback().await.map_err(StorageError::from)?;
            return Err(GroupFailure::Abandoned(abandoned));
        }
        tx.commit().await.map_err(StorageError::from)?;
        Ok((order_outcomes, chargeback_outcomes))
    }
}

type OrderJob = (
    Arc<OrderWebhook>,
    Delivery,
    oneshot::Sender<Option<OrderOutcome>>,
);
type ChargebackJob = (
    Arc<ChargebackWebhook>,
    Delivery,
    oneshot::Sender<Option<ChargebackOutcome>>,
);

/// Why a group was rolled back.
#[derive(Debug, thiserror::Error)]
enum GroupFailure {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0} of its requests were abandoned before the commit")]
    Abandoned(usize),
}

/// The group metrics: how many webhooks wait, how big groups are, and how often a webhook
/// was applied alone after its group failed.
#[derive(Debug, Clone)]
pub(crate) struct GroupMetrics {
    queued: prometheus_client::metrics::gauge::Gauge,
    size: prometheus_client::metrics::histogram::Histogram,
    failed: prometheus_client::metrics::counter::Counter,
    alone: prometheus_client::metrics::counter::Counter,
}

impl GroupMetrics {
    pub(crate) fn register(registry: &mut pm_telemetry::metrics::Registry) -> Self {
        let queued = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "webhook_group_queue",
            "Sync-mode webhooks waiting for a group worker",
            queued.clone(),
        );
        let size = prometheus_client::metrics::histogram::Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0,
        ]);
        registry.register(
            "webhook_group_size",
            "Sync-mode webhooks applied together in one transaction (group commit)",
            size.clone(),
        );
        let failed = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "webhook_groups_failed",
            "Webhook groups whose transaction failed; their members were applied one by one",
            failed.clone(),
        );
        let alone = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "webhooks_applied_alone",
            "Sync-mode webhooks applied in their own transaction after their group failed",
            alone.clone(),
        );
        Self {
            queued,
            size,
            failed,
            alone,
        }
    }
}
