//! The outbox relay: publishes the domain events the outbox holds to Kafka's
//! `domain-events` topic (`pmctl outbox-relay`, or inside `serve-api --outbox-relay`).
//!
//! Each round is one transaction: claim unpublished events ([`outbox::claim`] — several
//! relays take different aggregates, and each aggregate's events in sequence order), send
//! them keyed by aggregate id (so an aggregate's events share a partition and keep their
//! order there), wait for the broker to acknowledge every one, mark them published, commit.
//! A crash or a failed send anywhere before the commit leaves the events unpublished, and a
//! later round sends them again: publication is at least once, and consumers deduplicate on
//! `event_id` (the envelope's, also in the `pm-event-id` header).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pm_kafka::{headers, Producer};
use pm_storage::outbox::{self, Pending};
use pm_storage::PgPool;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// The header carrying the event's id.
pub(crate) const EVENT_ID_HEADER: &str = "pm-event-id";

/// How a relay runs.
#[derive(Debug, Clone)]
pub(crate) struct RelaySettings {
    pub(crate) topic: String,
    /// Most events claimed (and published) in one round.
    pub(crate) batch: i64,
    /// Wait after a round that found nothing.
    pub(crate) idle: Duration,
}

/// What a relay counts.
#[derive(Debug, Clone)]
pub(crate) struct RelayMetrics {
    published: Counter,
    failed_rounds: Counter,
    lag: Histogram,
    backlog: Gauge,
}

impl RelayMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = RelayMetrics {
            published: Counter::default(),
            failed_rounds: Counter::default(),
            lag: Histogram::new(pm_telemetry::metrics::LATENCY_BUCKETS.iter().copied()),
            backlog: Gauge::default(),
        };
        registry.register(
            "outbox_published",
            "Domain events the outbox relay published (acknowledged by the broker)",
            m.published.clone(),
        );
        registry.register(
            "outbox_relay_failed_rounds",
            "Relay rounds that failed (the database or the broker); their events are sent again",
            m.failed_rounds.clone(),
        );
        registry.register(
            "outbox_publish_lag_seconds",
            "Time from an event's write in the outbox to the broker's acknowledgement",
            m.lag.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Domain events waiting for the relay (as of its last idle round)",
            m.backlog.clone(),
        );
        m
    }
}

/// Whether the relay's last round succeeded: what `outbox-relay --listen` answers
/// `/health/ready` with.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayHealth {
    /// The last round's error while rounds fail; `None` once one succeeds.
    failing: Arc<Mutex<Option<String>>>,
}

impl RelayHealth {
    pub(crate) fn check(&self) -> Result<(), String> {
        match &*self.failing.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(e) => Err(format!("the outbox relay's rounds fail: {e}")),
        }
    }

    fn set(&self, failing: Option<String>) {
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = failing;
    }
}

/// Runs rounds until `cancel`; a round in flight finishes first (its events are either
/// marked published or left for the next run).
pub(crate) async fn run(
    pool: PgPool,
    producer: Producer,
    settings: RelaySettings,
    metrics: RelayMetrics,
    health: RelayHealth,
    cancel: CancellationToken,
) {
    let backoff =
        pm_domain::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failures = 0u32;
    tracing::info!(topic = %settings.topic, batch = settings.batch, "outbox relay started");
    while !cancel.is_cancelled() {
        let pause = match round(&pool, &producer, &settings, &metrics).await {
            Ok(0) => {
                failures = 0;
                health.set(None);
                if let Ok((waiting, _)) = outbox::backlog(&pool).await {
                    metrics.backlog.set(waiting);
                }
                settings.idle
            }
            Ok(_) => {
                failures = 0;
                health.set(None);
                continue;
            }
            Err(e) => {
                metrics.failed_rounds.inc();
                health.set(Some(e.to_string()));
                let pause = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis(), "outbox relay round failed; its events are sent again");
                pause
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("outbox relay stopped");
}

/// One round: claim, publish, mark, commit. Returns how many events it published.
async fn round(
    pool: &PgPool,
    producer: &Producer,
    settings: &RelaySettings,
    metrics: &RelayMetrics,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let events = outbox::claim(&mut tx, settings.batch).await?;
    if events.is_empty() {
        return Ok(0);
    }
    // Sent together, acknowledged together: the idempotent producer keeps each partition's
    // order, so an aggregate's events arrive in sequence order.
    let sends = events.iter().map(|e| send(producer, &settings.topic, e));
    let acknowledged = futures::future::join_all(sends).await;
    if let Some(Err(e)) = acknowledged.into_iter().find(Result::is_err) {
        // Nothing is marked: the whole claim is sent again (some events twice).
        return Err(e.into());
    }
    let now = pm_domain::time::now();
    outbox::mark_published(&mut tx, &events, now).await?;
    tx.commit().await?;
    for e in &events {
        let lag = (now - e.created_at).to_std().unwrap_or_default();
        metrics.lag.observe(lag.as_secs_f64());
    }
    metrics.published.inc_by(events.len() as u64);
    Ok(events.len())
}

async fn send(
    producer: &Producer,
    topic: &str,
    e: &Pending,
) -> Result<pm_kafka::producer::Stored, pm_kafka::KafkaError> {
    let event_id = e.event_id.to_string();
    let h = headers::build(
        [
            (EVENT_ID_HEADER, event_id.as_str()),
            (headers::EVENT_TYPE, e.event_type.as_str()),
        ]
        .into_iter()
        .chain(
            e.correlation_id
                .as_deref()
                .map(|c| (headers::CORRELATION_ID, c)),
        ),
    );
    producer
        .send(topic, e.aggregate_id.as_bytes(), e.payload.as_bytes(), h)
        .await
}
