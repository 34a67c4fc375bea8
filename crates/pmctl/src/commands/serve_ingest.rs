//! `pmctl serve-ingest`: the public webhook gateway.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use pm_ingest::{HttpSinkConfig, IngestMetrics, IngestState, Sink};
use pm_kafka::Producer;
use pm_telemetry::metrics::SharedRegistry;

use crate::args::{duration, ApiTlsArgs, InternalTokenArgs, KafkaArgs, ServerArgs, WebhookArgs};

/// Where accepted webhooks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SinkKind {
    /// Produce to the Kafka topics; the API consumes them (serve-api in kafka mode).
    Kafka,
    /// Forward to the API's /internal/updates/* routes.
    Http,
}

/// Serve the public webhook gateway: verify signatures, validate webhooks and hand them
/// on to Kafka or to the API, answering 202 only once they were durably taken (503 with
/// Retry-After otherwise, so the provider delivers again). Uses no database.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, env = "PM_INGEST_LISTEN", default_value = "0.0.0.0:3001")]
    listen: SocketAddr,
    #[command(flatten)]
    server: ServerArgs,
    /// Where accepted webhooks go.
    #[arg(long, env = "PM_INGEST_SINK", value_enum, default_value = "kafka")]
    sink: SinkKind,
    /// Base URL of the API that the http sink forwards to.
    #[arg(long, env = "PM_API_URL", default_value = "http://127.0.0.1:3000")]
    api_url: String,
    #[command(flatten)]
    api_tls: ApiTlsArgs,
    #[command(flatten)]
    internal_token: InternalTokenArgs,
    /// Timeout of one forward to the API (http sink).
    #[arg(long, env = "PM_INGEST_API_TIMEOUT", default_value = "2s", value_parser = duration)]
    api_timeout: Duration,
    /// Attempts per webhook forwarded to the API, retried only on 5xx, timeouts and
    /// connection errors (http sink).
    #[arg(long, env = "PM_INGEST_API_ATTEMPTS", default_value_t = 4)]
    api_attempts: u32,
    #[command(flatten)]
    webhooks: WebhookArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// How long a produce may take in total before the webhook is answered 503 (kafka sink).
    #[arg(long, env = "PM_KAFKA_DELIVERY_TIMEOUT", default_value = "5s", value_parser = duration)]
    kafka_delivery_timeout: Duration,
}

/// The sink, and the producer to flush on exit (kafka sink).
async fn sink(args: &Args) -> anyhow::Result<(Sink, Option<Producer>)> {
    match args.sink {
        SinkKind::Kafka => {
            let config = args.kafka.config("pmctl-serve-ingest")?;
            let topics = args.kafka.topics();
            pm_kafka::topics::ensure_topics(&config, &topics, &args.kafka.topic_settings())
                .await
                // The cause says whether no broker answered or one refused us.
                .with_context(|| format!("cannot create the Kafka topics at {}", config.brokers))?;
            let producer = Producer::new(&config, args.kafka_delivery_timeout)
                .context("cannot create the Kafka producer")?;
            tracing::info!(brokers = %config.brokers, orders = %topics.orders, disputes = %topics.disputes, "kafka sink");
            Ok((Sink::kafka(producer.clone(), topics), Some(producer)))
        }
        SinkKind::Http => {
            let token = args.internal_token.token()?.context("the http sink needs the API's service token: pass --internal-token or set PM_INTERNAL_TOKEN")?;
            let config = HttpSinkConfig {
                request_timeout: args.api_timeout,
                max_attempts: args.api_attempts,
                tls: args.api_tls.client_tls(),
                ..HttpSinkConfig::new(args.api_url.clone(), token)
            };
            let sink = Sink::http(config).context("invalid http sink settings")?;
            tracing::info!(api_url = %args.api_url, "http sink");
            Ok((sink, None))
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = crate::signals::on_shutdown();
    let intake = args.webhooks.intake()?;
    let tls = args.server.tls(None)?;
    let (sink, producer) = sink(&args).await?;
    let sink_name = sink.name();
    let mut registry = pm_telemetry::metrics::service_registry(crate::BUILD);
    let pm = registry.sub_registry_with_prefix("pm");
    let metrics = IngestMetrics::register(pm);
    pm_telemetry::traces::register_metrics(pm);
    let state = IngestState::new(
        intake.config.clone(),
        sink,
        metrics,
        SharedRegistry::new(registry),
    );
    let app = pm_ingest::router(state, &args.server.limits());
    crate::server::reload_on_hangup(&shutdown, tls.clone(), intake.reloader());

    let detail = format!("{sink_name} sink");
    crate::server::serve(
        "serve-ingest",
        &detail,
        args.listen,
        app,
        tls,
        &shutdown,
        &args.server,
    )
    .await?;
    if let Some(producer) = producer {
        // Every acknowledged webhook was already stored; this only waits for anything a
        // request abandoned at the timeout may still have queued.
        let timeout = args.kafka_delivery_timeout;
        match tokio::task::spawn_blocking(move || producer.flush(timeout)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the Kafka producer did not flush"),
            Err(e) => tracing::warn!(error = %e, "the Kafka producer flush failed"),
        }
    }
    tracing::info!("serve-ingest stopped");
    Ok(())
}
