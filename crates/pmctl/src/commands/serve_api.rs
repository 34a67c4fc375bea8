//! `pmctl serve-api`: the core service.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use pm_api::{ApiConfig, ApiMetrics, AppState};
use pm_provider::{ProviderClient, ProviderConfig};
use pm_telemetry::metrics::{Registry, SharedRegistry};
use secrecy::{ExposeSecret, SecretString};

use crate::args::{duration, secret, DatabaseArgs, KafkaArgs, WebhookArgs};

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
    /// How webhooks are processed.
    #[arg(long, env = "PM_MODE", value_enum, default_value = "sync")]
    mode: Mode,
    #[command(flatten)]
    webhooks: WebhookArgs,
    /// Service token that ingest's HTTP sink must send to /internal/* (Bearer). Without
    /// it the internal routes refuse every call.
    #[arg(long, env = "PM_INTERNAL_TOKEN", hide_env_values = true, value_parser = secret)]
    internal_token: Option<SecretString>,
    #[command(flatten)]
    provider: ProviderArgs,
    /// A pending capture whose provider call started longer ago than this may be taken
    /// over by a retry with the same idempotency key.
    #[arg(long, env = "PM_CAPTURE_STALE_AFTER", default_value = "30s", value_parser = duration)]
    capture_stale_after: Duration,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Kafka mode: most messages of one partition applied in one database transaction.
    #[arg(long, env = "PM_KAFKA_BATCH_SIZE", default_value_t = 100)]
    kafka_batch_size: usize,
    /// Kafka mode: attempts for a retryable message (e.g. a chargeback before its order)
    /// before it goes to the DLQ.
    #[arg(long, env = "PM_KAFKA_RETRY_ATTEMPTS", default_value_t = 5)]
    kafka_retry_attempts: u32,
    /// Kafka mode: first backoff between those attempts (doubling, with jitter).
    #[arg(long, env = "PM_KAFKA_RETRY_BACKOFF", default_value = "200ms", value_parser = duration)]
    kafka_retry_backoff: Duration,
    /// How long to wait for in-flight requests on shutdown.
    #[arg(long, env = "PM_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration)]
    shutdown_timeout: Duration,
}

/// Where and how the provider API is called.
#[derive(Debug, clap::Args)]
pub(crate) struct ProviderArgs {
    /// Base URL of the payment provider's API (capture, representments).
    #[arg(long, env = "PM_PROVIDER_URL", default_value = "http://127.0.0.1:3002")]
    provider_url: String,
    /// Timeout of one provider request.
    #[arg(long, env = "PM_PROVIDER_TIMEOUT", default_value = "5s", value_parser = duration)]
    provider_timeout: Duration,
    /// Attempts per provider call (retries happen only on 5xx, timeouts and connection errors).
    #[arg(long, env = "PM_PROVIDER_ATTEMPTS", default_value_t = 3)]
    provider_attempts: u32,
}

impl ProviderArgs {
    fn client(&self) -> anyhow::Result<ProviderClient> {
        let config = ProviderConfig {
            base_url: self.provider_url.clone(),
            request_timeout: self.provider_timeout,
            max_attempts: self.provider_attempts,
            ..ProviderConfig::default()
        };
        ProviderClient::new(config).context("invalid provider settings")
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::on_signal();
    let pool = args.db.pool("pmctl-serve-api")?;
    match pm_storage::migrate::status(&pool).await {
        Ok(status) if status.iter().any(|m| !m.applied) => {
            tracing::warn!("the database schema is not current: run `pmctl migrate`")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable yet; /health/ready reports it until it is")
        }
    }
    let config = ApiConfig {
        intake: args.webhooks.intake()?,
        internal_token: args
            .internal_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty()),
        capture_stale_after: args.capture_stale_after,
    };
    let mut registry = Registry::with_prefix("pm");
    let metrics = ApiMetrics::register(&mut registry);
    let kafka = match args.mode {
        Mode::Sync => None,
        Mode::Kafka => {
            Some(start_consumers(&args, &pool, &metrics, &mut registry, &shutdown).await?)
        }
    };
    let readiness = kafka.iter().map(|k| ("kafka", k.readiness())).collect();
    let state = AppState::new(
        pool.clone(),
        config,
        args.provider.client()?,
        metrics,
        SharedRegistry::new(registry),
        readiness,
    );
    let app = pm_api::router(state);

    let detail = format!("{:?} mode", args.mode).to_lowercase();
    crate::server::serve(
        "serve-api",
        &detail,
        args.listen,
        app,
        &shutdown,
        args.shutdown_timeout,
    )
    .await?;
    if let Some(kafka) = kafka {
        kafka.stop().await;
    }
    pool.close().await;
    tracing::info!("serve-api stopped");
    Ok(())
}

/// The Kafka consumers of kafka mode and the producer of their dead letters.
struct KafkaConsumers {
    tasks: Vec<tokio::task::JoinHandle<Result<(), pm_kafka::KafkaError>>>,
    dlq: pm_kafka::Producer,
}

async fn start_consumers(
    args: &Args,
    pool: &pm_storage::PgPool,
    metrics: &ApiMetrics,
    registry: &mut Registry,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<KafkaConsumers> {
    use pm_domain::webhook::WebhookKind;
    use pm_kafka::consumer::{self, ConsumerSettings};
    use pm_kafka::topics::{self, DISPUTES_GROUP, ORDERS_GROUP};

    let config = args.kafka.config("pmctl-serve-api")?;
    let names = args.kafka.topics();
    topics::ensure_topics(&config, &names.all(), args.kafka.topic_partitions)
        .await
        .with_context(|| format!("cannot create the Kafka topics on {}", config.brokers))?;
    // Dead letters must be stored before offsets move on; a generous timeout, retried.
    let dlq = pm_kafka::Producer::new(&config, Duration::from_secs(30))?;
    let consumer_metrics = pm_kafka::metrics::ConsumerMetrics::register(registry);
    let prefix = &args.kafka.topic_prefix;
    let mut tasks = Vec::new();
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
        let handler = std::sync::Arc::new(pm_api::consumer::WebhookHandler::new(
            pool.clone(),
            kind,
            metrics.clone(),
        ));
        let (config, dlq, m, stop) = (
            config.clone(),
            dlq.clone(),
            consumer_metrics.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            consumer::run(&config, settings, handler, dlq, m, stop).await
        }));
    }
    Ok(KafkaConsumers { tasks, dlq })
}

impl KafkaConsumers {
    fn readiness(&self) -> pm_api::Readiness {
        let producer = self.dlq.clone();
        std::sync::Arc::new(move || {
            let producer = producer.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || producer.reachable(Duration::from_secs(2)))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("brokers unreachable: {e}"))
            })
        })
    }

    /// Waits for the consumers to finish their batches and commit, then flushes the DLQ
    /// producer (closing it only now: the original system closed its DLQ writers at
    /// start-up and lost every dead letter).
    async fn stop(self) {
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "consumer failed"),
                Err(e) => tracing::error!(error = %e, "consumer task failed"),
            }
        }
        let dlq = self.dlq;
        let flushed = tokio::task::spawn_blocking(move || dlq.flush(Duration::from_secs(10))).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("the DLQ producer did not flush in time");
        }
    }
}
