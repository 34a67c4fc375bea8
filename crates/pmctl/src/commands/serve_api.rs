//! `pmctl serve-api`: the core service.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use pm_api::{ApiConfig, ApiMetrics, AppState};
use pm_telemetry::metrics::{Registry, SharedRegistry};

use crate::args::{
    duration, AdminArgs, CaptureArgs, DatabaseArgs, InternalTokenArgs, KafkaArgs, ProviderArgs,
    ServerArgs, WebhookArgs,
};

/// How webhooks are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Webhooks are applied in the request that delivers them.
    Sync,
    /// Webhooks are also consumed from Kafka (`webhooks.orders`, `webhooks.disputes`),
    /// as `pmctl serve-ingest --sink kafka` produces them; failures go to the DLQ topics.
    Kafka,
}

/// Serve the core API: provider webhooks (sync mode), internal updates from ingest, reads
/// with filters and cursor pagination, and operator actions (hold, capture, evidence,
/// submit). Drains in-flight requests on SIGINT/SIGTERM.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "PM_API_LISTEN", default_value = "0.0.0.0:3000")]
    listen: SocketAddr,
    #[command(flatten)]
    server: ServerArgs,
    /// How webhooks are processed.
    #[arg(long, env = "PM_MODE", value_enum, default_value = "sync")]
    mode: Mode,
    #[command(flatten)]
    webhooks: WebhookArgs,
    #[command(flatten)]
    internal_token: InternalTokenArgs,
    #[command(flatten)]
    admin: AdminArgs,
    /// With TLS: CA certificates (PEM) that sign the client certificates `/internal/*`
    /// then requires, on top of the service token (mutual TLS for ingest's forwarding).
    /// Other routes do not ask for one.
    #[arg(long, env = "PM_TLS_CLIENT_CA")]
    tls_client_ca: Option<std::path::PathBuf>,
    #[command(flatten)]
    provider: ProviderArgs,
    #[command(flatten)]
    captures: CaptureArgs,
    /// How often captures whose provider answer was lost are settled through the
    /// provider's capture lookup (`0s` turns it off; `pmctl reconcile-captures` runs one
    /// round by hand).
    #[arg(long, env = "PM_CAPTURE_RECONCILE_INTERVAL", default_value = "30s", value_parser = duration)]
    capture_reconcile_interval: Duration,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Also run the outbox relay (as `pmctl outbox-relay`): publish the domain events to
    /// Kafka's `domain-events`, in either mode (it needs --kafka-brokers). Any number of
    /// instances may run it.
    #[arg(long, env = "PM_OUTBOX_RELAY")]
    outbox_relay: bool,
    #[command(flatten)]
    relay: crate::commands::outbox_relay::RelayArgs,
    /// Kafka mode: most messages of one partition applied in one database transaction.
    #[arg(long, env = "PM_KAFKA_BATCH_SIZE", default_value_t = 100)]
    kafka_batch_size: usize,
    /// Kafka mode: attempts for a retryable message (e.g. a chargeback before its order)
    /// before it goes to the DLQ.
    /// The default (8: at least 22 s in all, jitter adding up to half) outlasts a crashed
    /// member's session timeout, so a chargeback whose order waits on a partition being
    /// handed over is not dead-lettered.
    #[arg(long, env = "PM_KAFKA_RETRY_ATTEMPTS", default_value_t = 8)]
    kafka_retry_attempts: u32,
    /// Kafka mode: first backoff between those attempts (doubling, with jitter).
    #[arg(long, env = "PM_KAFKA_RETRY_BACKOFF", default_value = "200ms", value_parser = duration)]
    kafka_retry_backoff: Duration,
    /// Kafka mode: how long the group waits for a silent member (crashed, partitioned away)
    /// before handing its partitions to the others.
    #[arg(long, env = "PM_KAFKA_SESSION_TIMEOUT", default_value = "10s", value_parser = duration)]
    kafka_session_timeout: Duration,
    /// Kafka mode: a partition whose batch has not finished for this long (a hung
    /// handler, a database that refuses writes) makes /health/ready fail.
    #[arg(long, env = "PM_KAFKA_STALL_TIMEOUT", default_value = "60s", value_parser = duration)]
    kafka_stall_timeout: Duration,
    /// A reverse proxy in front of the API (e.g. `127.0.0.1` for nginx on the same host):
    /// for its connections the client address it reports (`X-Forwarded-For`, `X-Real-IP`)
    /// is the one throttled after repeated bad API keys. Repeat the flag (or comma-separate
    /// the variable) for several; without it every caller is its connection's address.
    #[arg(
        long = "trusted-proxy",
        env = "PM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Allow CPU profiles on demand: `GET /debug/pprof/profile?seconds=10` (scope `admin`)
    /// answers a flame graph of where the service spent its time (see docs/benchmarks.md).
    /// Off by default; sampling costs a little CPU only while a profile is taken.
    #[arg(long, env = "PM_PPROF")]
    pprof: bool,
    /// Sync mode: most webhooks applied together in one transaction (group commit).
    /// Webhooks that arrive while the database is busy wait for the next group instead of
    /// each taking a transaction, a round trip and a WAL flush of its own; a lone webhook is
    /// applied at once. `0` gives every webhook its own transaction.
    #[arg(long, env = "PM_WEBHOOK_GROUP_MAX", default_value_t = pm_api::groups::GroupSettings::default().max_size)]
    webhook_group_max: usize,
    /// Sync mode: webhook groups applied at the same time, each on its own database
    /// connection (taken from `--db-max-connections`).
    #[arg(long, env = "PM_WEBHOOK_GROUP_WORKERS", default_value_t = pm_api::groups::GroupSettings::default().workers)]
    webhook_group_workers: usize,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = crate::signals::on_shutdown();
    let tls = args.server.tls(args.tls_client_ca.as_deref())?;
    let (pool, read_pool) = args.db.service_pools("pmctl-serve-api")?;
    match pm_storage::migrate::status(&pool).await {
        Ok(status) if status.iter().any(|m| !m.applied) => {
            tracing::warn!("the database schema is not current: run `pmctl migrate`")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable yet; /health/ready reports it until it is")
        }
    }
    match pm_storage::roles::excess_privileges(&pool).await {
        Ok(excess) => {
            for why in &excess {
                tracing::warn!(
                    "THE SERVICE'S DATABASE ROLE HAS MORE PRIVILEGES THAN IT NEEDS: {why}. A bug or an \
                     injected statement could then change the schema or the audit trail; run it as the \
                     application role of `pmctl db bootstrap`"
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot check the database role's privileges"),
    }
    let intake = args.webhooks.intake()?;
    let mut config = ApiConfig {
        admin: args.admin.settings(tls.is_some())?,
        intake: intake.config.clone(),
        internal_token: args.internal_token.token()?,
        internal_needs_client_certificate: args.tls_client_ca.is_some(),
        capture_stale_after: args.captures.stale_after,
        auth: pm_api::auth::AuthSettings {
            trusted_proxies: args.trusted_proxies.clone(),
            ..pm_api::auth::AuthSettings::default()
        },
        pprof: args.pprof,
        webhook_groups: pm_api::groups::GroupSettings {
            max_size: args.webhook_group_max,
            workers: args.webhook_group_workers,
        },
    };
    let mut root = pm_telemetry::metrics::service_registry(crate::BUILD);
    let registry = root.sub_registry_with_prefix("pm");
    let metrics = ApiMetrics::register(registry);
    let reads = std::sync::Arc::new(args.db.read_pools("pmctl-serve-api", read_pool)?);
    reads.register(registry);
    let mut pools = reads.pools();
    pools.insert(0, pool.clone());
    pm_storage::metrics::register(registry, &pools);
    pm_telemetry::traces::register_metrics(registry);
    let mut watchers = vec![watch_partitions(
        pool.clone(),
        pm_storage::metrics::PartitionGauges::register(registry),
        shutdown.clone(),
    )];
    let kafka = match args.mode {
        Mode::Sync => None,
        Mode::Kafka => Some(start_consumers(&args, &pool, &metrics, registry, &shutdown).await?),
    };
    watchers.extend(kafka.as_ref().map(|k| k.watch_dlq_depth(&shutdown)));
    config.admin.dead_letters = kafka.as_ref().map(|k| k.dead_letters.clone());
    let readiness = kafka.iter().map(|k| ("kafka", k.readiness())).collect();
    let provider = args
        .provider
        .client()?
        .with_metrics(pm_provider::ProviderMetrics::register(registry));
    args.captures.check_against(&args.provider);
    if !args.capture_reconcile_interval.is_zero() {
        watchers.push(reconcile_periodically(
            pool.clone(),
            provider.clone(),
            args.captures.settings(),
            args.capture_reconcile_interval,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    if args.outbox_relay {
        watchers.push(start_relay(&args, &pool, registry, &shutdown).await?);
    }
    if reads.has_replicas() {
        watchers.push(tokio::spawn(
            reads
                .clone()
                .monitor(Duration::from_secs(1), shutdown.clone().cancelled_owned()),
        ));
    }
    let state = AppState::new(
        pool.clone(),
        reads,
        config,
        provider,
        metrics,
        SharedRegistry::new(root),
        readiness,
    );
    let app = pm_api::router(state, &args.server.limits());
    crate::server::reload_on_hangup(&shutdown, tls.clone(), intake.reloader());

    let detail = format!("{:?} mode", args.mode).to_lowercase();
    crate::server::serve(
        "serve-api",
        &detail,
        args.listen,
        app,
        tls,
        &shutdown,
        &args.server,
    )
    .await?;
    if let Some(kafka) = kafka {
        kafka.stop().await;
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
    for pool in pools {
        pool.close().await;
    }
    tracing::info!("serve-api stopped");
    Ok(())
}

/// Runs `round` after `first` and then every `interval` until shutdown; a round in
/// progress at shutdown is abandoned (each is a read or an idempotent settlement).
fn periodically<F, Fut>(
    first: Duration,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = round() => {}
            }
        }
    })
}

/// Settles captures with lost answers every `interval` until shutdown.
fn reconcile_periodically(
    pool: pm_storage::PgPool,
    provider: pm_provider::ProviderClient,
    settings: pm_api::captures::ReconcileSettings,
    interval: Duration,
    metrics: ApiMetrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    periodically(interval, interval, shutdown, move || {
        let (pool, provider, metrics) = (pool.clone(), provider.clone(), metrics.clone());
        async move {
            match pm_api::captures::reconcile(&pool, &provider, settings, pm_domain::time::now())
                .await
            {
                Ok(report) => metrics.count_reconciled(&report),
                Err(e) => {
                    tracing::warn!(error = %e, "capture reconciliation: database unavailable; next round later")
                }
            }
        }
    })
}

/// How often the partition and DLQ gauges are read: alerts on them look hours or days
/// ahead, so a minute is plenty, and each read is a handful of cheap queries.
const GAUGE_INTERVAL: Duration = Duration::from_secs(60);

/// Keeps `pm_partition_default_rows` and `pm_partition_premade_days` current, from start.
fn watch_partitions(
    pool: pm_storage::PgPool,
    gauges: pm_storage::metrics::PartitionGauges,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    periodically(Duration::ZERO, GAUGE_INTERVAL, shutdown, move || {
        let (pool, gauges) = (pool.clone(), gauges.clone());
        async move {
            if let Err(e) = gauges.refresh(&pool, pm_domain::time::now()).await {
                tracing::debug!(error = %e, "cannot read the partitions' state; next round later");
            }
        }
    })
}

/// The outbox relay inside the API, on the write pool.
async fn start_relay(
    args: &Args,
    pool: &pm_storage::PgPool,
    registry: &mut Registry,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (producer, settings) = args
        .relay
        .prepare(&args.kafka, "pmctl-serve-api-relay")
        .await?;
    let metrics = crate::relay::RelayMetrics::register(registry);
    Ok(tokio::spawn(crate::relay::run(
        pool.clone(),
        producer,
        settings,
        metrics,
        // Its readiness is not the API's: a broker outage must not take the API out of
        // rotation. The embedded relay's failures show in its metrics and logs.
        crate::relay::RelayHealth::default(),
        shutdown.clone(),
    )))
}

/// The Kafka consumers of kafka mode and the producer of their dead letters.
struct KafkaConsumers {
    task: tokio::task::JoinHandle<()>,
    health: Vec<pm_kafka::consumer::ConsumerHealth>,
    dlq: pm_kafka::Producer,
    backlogs: Vec<std::sync::Arc<pm_kafka::replay::Backlog>>,
    metrics: pm_kafka::metrics::ConsumerMetrics,
    /// For the admin UI's dead-letters page and its replay.
    dead_letters: pm_api::DeadLetters,
}

async fn start_consumers(
    args: &Args,
    pool: &pm_storage::PgPool,
    metrics: &ApiMetrics,
    registry: &mut Registry,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<KafkaConsumers> {
    use pm_domain::webhook::WebhookKind;
    use pm_kafka::consumer::{self, ConsumerHealth, ConsumerSettings};
    use pm_kafka::topics::{self, DISPUTES_GROUP, ORDERS_GROUP};

    let config = args.kafka.config("pmctl-serve-api")?;
    let names = args.kafka.topics();
    topics::ensure_topics(&config, &names, &args.kafka.topic_settings())
        .await
        .with_context(|| format!("cannot create the Kafka topics on {}", config.brokers))?;
    // Dead letters must be stored before offsets move on; a generous timeout, retried.
    let dlq = pm_kafka::Producer::new(&config, Duration::from_secs(30))?;
    let consumer_metrics = pm_kafka::metrics::ConsumerMetrics::register(registry);
    let prefix = &args.kafka.topic_prefix;
    let backlogs = [&names.orders, &names.disputes]
        .into_iter()
        .map(|topic| pm_kafka::replay::Backlog::new(&config, &topics::Topics::dlq(topic)))
        .map(|b| b.map(std::sync::Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let dead_letters = pm_api::DeadLetters {
        config: config.clone(),
        producer: dlq.clone(),
        topics: vec![
            ("orders".to_owned(), topics::Topics::dlq(&names.orders)),
            ("disputes".to_owned(), topics::Topics::dlq(&names.disputes)),
        ],
        max_replays: pm_kafka::replay::DEFAULT_MAX_REPLAYS,
    };
    let mut consumers = Vec::new();
    let mut health = Vec::new();
    for (topic, group, kind) in [
        (names.orders.clone(), ORDERS_GROUP, WebhookKind::Order),
        (
            names.disputes.clone(),
            DISPUTES_GROUP,
            WebhookKind::Chargeback,
        ),
    ] {
        let mut settings = ConsumerSettings::new(topic, format!("{prefix}{group}"));
        settings.batch_size = args.kafka_batch_size.max(1);
        settings.retry_attempts = args.kafka_retry_attempts.max(1);
        settings.retry_backoff = args.kafka_retry_backoff;
        settings.session_timeout = args.kafka_session_timeout;
        let handler = std::sync::Arc::new(pm_api::consumer::WebhookHandler::new(
            pool.clone(),
            kind,
            metrics.clone(),
        ));
        let h = ConsumerHealth::new(&settings.topic, args.kafka_stall_timeout);
        health.push(h.clone());
        consumers.push((settings, handler, h));
    }

    let (pool, stop, dlq_producer, waiting, watched) = (
        pool.clone(),
        shutdown.clone(),
        dlq.clone(),
        health.clone(),
        consumer_metrics.clone(),
    );
    let task = tokio::spawn(async move {
        // Applying webhooks to an older schema could fail in ways that look like bad input:
        // the consumers start only once every migration is applied.
        if !schema_current(&pool, &waiting, &stop).await {
            return;
        }
        let runs: Vec<_> = consumers
            .into_iter()
            .map(|(settings, handler, h)| {
                let (config, dlq, m, stop) = (
                    config.clone(),
                    dlq_producer.clone(),
                    consumer_metrics.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    if let Err(e) =
                        consumer::run(&config, settings, handler, dlq, m, h.clone(), stop).await
                    {
                        h.failed(format!("cannot run: {e}"));
                    }
                })
            })
            .collect();
        for run in runs {
            let _ = run.await;
        }
    });
    Ok(KafkaConsumers {
        task,
        health,
        dlq,
        backlogs,
        metrics: watched,
        dead_letters,
    })
}

/// Waits until every migration is applied (re-checking every few seconds); `false` when
/// shut down first.
async fn schema_current(
    pool: &pm_storage::PgPool,
    consumers: &[pm_kafka::consumer::ConsumerHealth],
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    let mut logged = None;
    loop {
        let why = match pm_storage::migrate::status(pool).await {
            Ok(status) => {
                let pending = status.iter().filter(|m| !m.applied).count();
                if pending == 0 {
                    if logged.is_some() {
                        tracing::info!(
                            "the database schema is current; starting the Kafka consumers"
                        );
                    }
                    return true;
                }
                format!(
                    "{pending} migration(s) pending: the Kafka consumers wait until `pmctl migrate` has run"
                )
            }
            Err(e) => format!("cannot read the schema's migrations: {e}"),
        };
        if logged.as_ref() != Some(&why) {
            tracing::error!("{why}");
            logged = Some(why.clone());
        }
        for h in consumers {
            h.waiting(why.clone());
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

impl KafkaConsumers {
    /// Ready when the consumers run (they say why not, e.g. pending migrations), none has
    /// failed or stalled, and the brokers answer.
    fn readiness(&self) -> pm_api::Readiness {
        let producer = self.dlq.clone();
        let health = self.health.clone();
        std::sync::Arc::new(move || {
            let producer = producer.clone();
            let health = health.clone();
            Box::pin(async move {
                for h in &health {
                    h.check()?;
                }
                tokio::task::spawn_blocking(move || producer.reachable(Duration::from_secs(2)))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            })
        })
    }

    /// Keeps `pm_kafka_dlq_depth` current, from start: the dead letters a resumed
    /// `pmctl replay-dlq` would read, per DLQ topic.
    fn watch_dlq_depth(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (backlogs, metrics) = (self.backlogs.clone(), self.metrics.clone());
        periodically(
            Duration::ZERO,
            GAUGE_INTERVAL,
            shutdown.clone(),
            move || {
                let (backlogs, metrics) = (backlogs.clone(), metrics.clone());
                async move {
                    for backlog in backlogs {
                        let b = backlog.clone();
                        match tokio::task::spawn_blocking(move || b.depth()).await {
                            Ok(Ok(depth)) => metrics.set_dlq_depth(backlog.dlq_topic(), depth),
                            Ok(Err(e)) => tracing::debug!(
                                error = %e, topic = backlog.dlq_topic(),
                                "cannot read the DLQ's depth; next round later"
                            ),
                            Err(e) => tracing::warn!(error = %e, "the DLQ depth reader failed"),
                        }
                    }
                }
            },
        )
    }

    /// Waits for the consumers to finish their batches and commit, then flushes the DLQ
    /// producer (closing it only now: the original system closed its DLQ writers at
    /// start-up and lost every dead letter).
    async fn stop(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "consumer task failed");
        }
        let dlq = self.dlq;
        let flushed = tokio::task::spawn_blocking(move || dlq.flush(Duration::from_secs(10))).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("the DLQ producer did not flush in time");
        }
    }
}
