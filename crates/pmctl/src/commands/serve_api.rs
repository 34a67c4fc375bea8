//! `pmctl serve-api`: the core service.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use pm_api::{ApiConfig, ApiMetrics, AppState};
use pm_domain::signature::{Verifier, DEFAULT_TOLERANCE_SECS};
use pm_http::intake::{IntakeConfig, DEFAULT_MAX_BODY_BYTES};
use pm_provider::{ProviderClient, ProviderConfig};
use pm_telemetry::metrics::{Registry, SharedRegistry};
use secrecy::{ExposeSecret, SecretString};

use crate::args::{duration, secret, DatabaseArgs};

/// How webhooks are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Webhooks are applied in the request that delivers them.
    Sync,
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
    /// How long to wait for in-flight requests on shutdown.
    #[arg(long, env = "PM_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration)]
    shutdown_timeout: Duration,
}

/// Webhook signature and body settings (shared with serve-ingest).
#[derive(Debug, clap::Args)]
pub(crate) struct WebhookArgs {
    /// Accepted webhook signing secret; repeat the flag (or comma-separate the variable)
    /// during a rotation: a signature from any of them passes.
    #[arg(
        long = "webhook-secret",
        env = "PM_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    secrets: Vec<SecretString>,
    /// Accept webhooks without checking signatures. For local experiments only: anyone
    /// who can reach the port can then forge provider events.
    #[arg(long, env = "PM_INSECURE_SKIP_SIGNATURE")]
    insecure_skip_signature: bool,
    /// Largest accepted webhook body, in bytes.
    #[arg(long, env = "PM_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Allowed difference between the signature timestamp and now, in seconds.
    #[arg(long, env = "PM_SIGNATURE_TOLERANCE_SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
    signature_tolerance_secs: i64,
}

impl WebhookArgs {
    pub(crate) fn intake(&self) -> anyhow::Result<IntakeConfig> {
        let secrets: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        let verifier = match (secrets.is_empty(), self.insecure_skip_signature) {
            (false, _) => Some(Verifier::new(secrets, self.signature_tolerance_secs)),
            (true, true) => {
                tracing::warn!(
                    "WEBHOOK SIGNATURES ARE NOT CHECKED (--insecure-skip-signature): anyone who can reach \
                     this port can forge provider events"
                );
                None
            }
            (true, false) => anyhow::bail!(
                "no webhook secret configured: pass --webhook-secret (or PM_WEBHOOK_SECRETS), or \
                 --insecure-skip-signature for a local experiment"
            ),
        };
        Ok(IntakeConfig {
            verifier,
            max_body_bytes: self.max_body_bytes,
        })
    }
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
            .filter(|t| !t.expose_secret().is_empty()),
        capture_stale_after: args.capture_stale_after,
    };
    let mut registry = Registry::with_prefix("pm");
    let metrics = ApiMetrics::register(&mut registry);
    let state = AppState::new(
        pool.clone(),
        config,
        args.provider.client()?,
        metrics,
        SharedRegistry::new(registry),
        Vec::new(),
    );
    let app = pm_api::router(state);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, mode = ?args.mode, "serve-api listening");
    let drained = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { drained.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(args.shutdown_timeout, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
    }
    pool.close().await;
    tracing::info!("serve-api stopped");
    Ok(())
}
