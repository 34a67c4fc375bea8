//! `pmctl project-analytics`: the analytics projection, a consumer of `domain-events`.
//!
//! It runs pm-kafka's at-least-once consumer (the one serve-api's Kafka mode runs: per
//! partition in order, offsets stored only after the handler returned, transient failures
//! retried with backoff without limit) with a handler that applies each event through
//! [`analytics::apply`] — inbox row and read models in one transaction — so the effect is
//! once-only however often the topic delivers an event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pm_domain::domain_event::IncomingEvent;
use pm_kafka::consumer::{
    self, ConsumerHealth, ConsumerSettings, Handler, Outcome, Received, Transient,
};
use pm_kafka::group::Forgotten;
use pm_kafka::{KafkaConfig, Producer, Topics};
use pm_storage::analytics::{self, Applied};
use pm_storage::PgPool;
use pm_telemetry::metrics::{Registry, SharedRegistry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::args::{duration, DatabaseArgs, KafkaArgs};

/// Project the domain events of Kafka's `domain-events` into the analytics read models (the
/// database schema `analytics`: orders created per day, captures per day and currency,
/// dispute outcomes per reason and the time to a decision), which `pmctl analytics` and
/// `GET /analytics/*` show. Each event takes effect once: its id is recorded in
/// `analytics.inbox` in the transaction that updates the read models, so redeliveries and
/// replays change nothing, and offsets are committed only after that transaction. Events of
/// an unknown type or schema version are recorded as skipped; a message that is not an event
/// goes to `domain-events.dlq`. Stops on SIGINT/SIGTERM after the batch in hand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The consumer group (prefixed with --kafka-topic-prefix, like every group). Projections
    /// of their own (another database) need groups of their own.
    #[arg(long, env = "PM_ANALYTICS_GROUP", default_value = "pm-analytics")]
    group: String,
    /// Start over: forget the group's committed offsets and read the topic from its start.
    /// Events already counted are found in the inbox and change nothing; events an older
    /// build skipped (unknown then) are projected if this build knows them. Needs the group
    /// without running members (a crashed one is waited for until its session expires).
    #[arg(long)]
    from_beginning: bool,
    /// Most messages of one partition handled per batch (each event still commits alone).
    #[arg(
        long = "kafka-batch-size",
        env = "PM_KAFKA_BATCH_SIZE",
        default_value_t = 100
    )]
    batch_size: usize,
    /// How long the group waits for a silent member (crashed, partitioned away) before
    /// handing its partitions to the others.
    #[arg(long = "kafka-session-timeout", env = "PM_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = duration)]
    session_timeout: Duration,
    /// Serve `GET /metrics` (Prometheus), `GET /health/live` and `GET /health/ready` on this
    /// address, e.g. `127.0.0.1:9464`; open to whoever reaches it, so keep it inside your
    /// network.
    #[arg(long, env = "PM_ANALYTICS_LISTEN")]
    listen: Option<SocketAddr>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&args.batch_size),
        "--kafka-batch-size must be between 1 and 10000"
    );
    let shutdown = crate::signals::on_shutdown();
    let pool = args.db.pool("pmctl-project-analytics")?;
    let status = pm_storage::migrate::status(&pool)
        .await
        .context("cannot read the database's migrations")?;
    let pending = status.iter().filter(|m| !m.applied).count();
    anyhow::ensure!(
        pending == 0,
        "{pending} migration(s) pending: run `pmctl migrate` first (the read models live in its `analytics` schema)"
    );
    let config = args.kafka.config("pmctl-project-analytics")?;
    let topics = args.kafka.topics();
    pm_kafka::topics::ensure_topics(&config, &topics, &args.kafka.topic_settings())
        .await
        .with_context(|| format!("cannot create the Kafka topics on {}", config.brokers))?;
    let group = format!("{}{}", args.kafka.topic_prefix, args.group);
    if args.from_beginning {
        start_over(&config, &group, args.session_timeout, &shutdown).await?;
    }

    let mut root = pm_telemetry::metrics::service_registry(crate::BUILD);
    let registry = root.sub_registry_with_prefix("pm");
    let consumer_metrics = pm_kafka::metrics::ConsumerMetrics::register(registry);
    let handler = Arc::new(Projection {
        pool: pool.clone(),
        events: ProjectionMetrics::register(registry),
    });
    pm_storage::metrics::register(registry, std::slice::from_ref(&pool));
    let health = ConsumerHealth::new(&topics.domain_events, Duration::from_secs(60));
    let ops = match args.listen {
        Some(addr) => {
            let health = health.clone();
            let ready = move || health.check();
            Some(crate::ops::serve(addr, SharedRegistry::new(root), ready, &shutdown).await?)
        }
        None => None,
    };

    // Dead letters must be stored before offsets move past them: a generous timeout, retried.
    let dlq = Producer::new(&config, Duration::from_secs(30))?;
    let mut settings = ConsumerSettings::new(topics.domain_events.clone(), group);
    settings.batch_size = args.batch_size;
    settings.session_timeout = args.session_timeout;
    tracing::info!(
        topic = %topics.domain_events, group = %settings.group,
        dlq = %Topics::dlq(&topics.domain_events), "analytics projection starting"
    );
    let result = consumer::run(
        &config,
        settings,
        handler,
        dlq.clone(),
        consumer_metrics,
        health,
        shutdown.clone(),
    )
    .await;
    // The consumer has committed what it applied; only now may the DLQ producer close.
    let flushed = tokio::task::spawn_blocking(move || dlq.flush(Duration::from_secs(10))).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("the DLQ producer did not flush in time");
    }
    shutdown.cancel();
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    pool.close().await;
    result.context("the domain events consumer failed")?;
    tracing::info!("analytics projection stopped");
    Ok(())
}

/// `--from-beginning`: forgets the group's offsets. A member that crashed stays in the group
/// until its session expires, so a group with members is waited for that long.
async fn start_over(
    config: &KafkaConfig,
    group: &str,
    session_timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + session_timeout * 2 + Duration::from_secs(5);
    let mut told = false;
    loop {
        let forgotten = pm_kafka::group::forget(config, group)
            .await
            .with_context(|| format!("cannot reset the consumer group {group}"))?;
        match forgotten {
            Forgotten::Deleted | Forgotten::Unknown => {
                tracing::info!(%group, "reading domain-events from its start (--from-beginning)");
                return Ok(());
            }
            Forgotten::HasMembers if Instant::now() < deadline => {
                if !told {
                    tracing::warn!(%group, "the group still has members; waiting for them to leave or time out");
                    told = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => anyhow::bail!("stopped before the group could be reset"),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Forgotten::HasMembers => anyhow::bail!(
                "--from-beginning: the consumer group {group} has running members; stop every \
                 `pmctl project-analytics` of the group first"
            ),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `pm_analytics_events_total{outcome}`: what became of each message.
#[derive(Clone, Debug)]
struct ProjectionMetrics(Family<OutcomeLabels, Counter>);

impl ProjectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let family = Family::default();
        registry.register(
            "analytics_events",
            "Domain events by what the analytics projection did with them: projected, \
             duplicate (seen before), skipped (unknown type or version), malformed (not an \
             event: dead-lettered), refused (the database refused a value: dead-lettered)",
            family.clone(),
        );
        ProjectionMetrics(family)
    }

    fn count(&self, outcome: &'static str) {
        self.0.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

/// Applies the domain events of one partition's batch, each in its own transaction.
#[derive(Debug)]
struct Projection {
    pool: PgPool,
    events: ProjectionMetrics,
}

impl Projection {
    async fn one(&self, m: &Received) -> Result<Outcome, Transient> {
        let event = match IncomingEvent::parse(m.payload.as_deref().unwrap_or_default()) {
            Ok(event) => event,
            Err(e) => {
                // Dead-lettered (and logged) by the consumer: the partition moves on.
                self.events.count("malformed");
                return Ok(Outcome::Reject(e.to_string()));
            }
        };
        match analytics::apply(&self.pool, &event).await {
            Ok(applied) => {
                if applied == Applied::Skipped {
                    tracing::warn!(
                        event_id = %event.event_id(), event_type = event.event_type_name(),
                        schema_version = event.schema_version(),
                        "a domain event this build does not project; recorded as skipped"
                    );
                }
                self.events.count(applied.as_str());
                Ok(Outcome::Done)
            }
            Err(e) if e.is_caused_by_input() => {
                self.events.count("refused");
                Ok(Outcome::Reject(format!("the database refused it: {e}")))
            }
            Err(e) => Err(Transient::new(e.cause(), e.to_string())),
        }
    }
}

impl Handler for Projection {
    /// On a transient failure the batch is retried whole; the events before it committed
    /// already, and their inbox rows make the retry skip them.
    async fn handle(&self, batch: &[Received]) -> Result<Vec<Outcome>, Transient> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            outcomes.push(self.one(m).instrument(m.process_span()).await?);
        }
        Ok(outcomes)
    }
}
