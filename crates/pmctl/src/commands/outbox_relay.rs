//! `pmctl outbox-relay`: publish the outbox's domain events to Kafka.

use std::time::Duration;

use anyhow::Context;
use pm_kafka::Producer;

use crate::args::{duration, DatabaseArgs, KafkaArgs};
use crate::relay::{self, RelaySettings};

/// Publish the domain events the outbox holds to the `domain-events` topic (key: the
/// order or dispute id), each aggregate's in sequence order, and mark them published once
/// the broker acknowledged them. Several relays may run at once (they take different
/// aggregates); stop one at any time — what it had not marked is sent again by the next.
/// `serve-api --outbox-relay` runs the same inside the API.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    relay: RelayArgs,
    /// Serve `GET /metrics` (Prometheus: `pm_outbox_*`, the pool's), `GET /health/live` and
    /// `GET /health/ready` (503 while rounds fail) on this address, e.g. `127.0.0.1:9465`;
    /// open to whoever reaches it, so keep it inside your network.
    #[arg(long, env = "PM_OUTBOX_RELAY_LISTEN")]
    listen: Option<std::net::SocketAddr>,
}

/// The relay's own settings (shared with serve-api).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RelayArgs {
    /// Most events claimed and published in one round (one transaction).
    #[arg(long = "outbox-batch", env = "PM_OUTBOX_BATCH", default_value_t = 500)]
    batch: i64,
    /// How long the relay waits after a round that found nothing (the lag it adds to an
    /// event written into an idle outbox).
    #[arg(long = "outbox-poll-interval", env = "PM_OUTBOX_POLL_INTERVAL", default_value = "100ms", value_parser = duration)]
    poll_interval: Duration,
}

impl RelayArgs {
    /// What a relay publishes with, the `domain-events` topic made if missing.
    pub(crate) async fn prepare(
        &self,
        kafka: &KafkaArgs,
        client_id: &str,
    ) -> anyhow::Result<(Producer, RelaySettings)> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.batch),
            "--outbox-batch must be between 1 and 10000"
        );
        let config = kafka.config(client_id)?;
        let topics = kafka.topics();
        pm_kafka::topics::ensure_topics(&config, &topics, &kafka.topic_settings())
            .await
            .with_context(|| format!("cannot create the Kafka topics on {}", config.brokers))?;
        let producer = Producer::new(&config, Duration::from_secs(30))?;
        let settings = RelaySettings {
            topic: topics.domain_events,
            batch: self.batch,
            idle: self.poll_interval,
        };
        Ok((producer, settings))
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-outbox-relay")?;
    let (producer, settings) = args
        .relay
        .prepare(&args.kafka, "pmctl-outbox-relay")
        .await?;
    let cancel = crate::signals::on_shutdown();
    let mut root = pm_telemetry::metrics::service_registry(crate::BUILD);
    let registry = root.sub_registry_with_prefix("pm");
    let metrics = relay::RelayMetrics::register(registry);
    pm_storage::metrics::register(registry, std::slice::from_ref(&pool));
    let health = relay::RelayHealth::default();
    let ops = match args.listen {
        Some(addr) => {
            let health = health.clone();
            let ready = move || health.check();
            let registry = pm_telemetry::metrics::SharedRegistry::new(root);
            Some(crate::ops::serve(addr, registry, ready, &cancel).await?)
        }
        None => None,
    };
    relay::run(pool.clone(), producer, settings, metrics, health, cancel).await;
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    pool.close().await;
    Ok(())
}
