//! `pmctl simulate-provider`: the fake payment provider (its API, and optionally a
//! scenario played as webhooks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use pm_scenario::{Plan, Scenario};
use pm_sim::emitter::{self, EmitReport, EmitterConfig};
use pm_sim::provider::{CaptureFault, ProviderBehaviour, ProviderSim};

use crate::args::{duration, ApiArgs, WebhookSecretArgs};

/// Serve the provider API the merchant calls (capture, representments) and, with
/// --scenario, play the scenario's webhooks against ingest or the API, retrying like a
/// real provider, then write the ledger for `pmctl verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address of the provider API.
    #[arg(long, env = "PM_PROVIDER_LISTEN", default_value = "0.0.0.0:3002")]
    listen: SocketAddr,
    #[command(flatten)]
    behaviour: BehaviourArgs,
    #[command(flatten)]
    emit: EmitArgs,
    /// Stop once the scenario was played (default: keep serving the provider API until Ctrl+C).
    #[arg(long)]
    exit_when_done: bool,
}

/// How the simulated provider API behaves.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BehaviourArgs {
    /// Smallest added latency of a provider answer.
    #[arg(long, default_value = "0ms", value_parser = duration)]
    latency_min: Duration,
    /// Largest added latency (uniform between min and max).
    #[arg(long, default_value = "0ms", value_parser = duration)]
    latency_max: Duration,
    /// Share of provider calls answered 503.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Share of captures declined.
    #[arg(long, default_value_t = 0.0)]
    decline_rate: f64,
    /// Share of representments answered 422 (file not ready).
    #[arg(long, default_value_t = 0.0)]
    not_ready_rate: f64,
    /// How a capture's answer is lost after the money was captured, for
    /// --capture-fault-rate of the captures: the merchant must settle the unknown outcome.
    #[arg(long, value_enum, default_value = "none")]
    capture_fault: CaptureFaultArg,
    /// Share of captures (new or repeated keys) hit by --capture-fault.
    #[arg(long, default_value_t = 0.0)]
    capture_fault_rate: f64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CaptureFaultArg {
    /// Answers arrive.
    None,
    /// Capture, then never answer (the merchant's request times out).
    ChargeThenTimeout,
    /// Capture, then answer 500.
    ChargeThenError,
}

impl BehaviourArgs {
    pub(crate) fn behaviour(&self) -> ProviderBehaviour {
        ProviderBehaviour {
            latency: (self.latency_min, self.latency_max.max(self.latency_min)),
            failure_rate: self.failure_rate,
            decline_rate: self.decline_rate,
            not_ready_rate: self.not_ready_rate,
            capture_fault: match self.capture_fault {
                CaptureFaultArg::None => CaptureFault::None,
                CaptureFaultArg::ChargeThenTimeout => CaptureFault::ChargeThenTimeout,
                CaptureFaultArg::ChargeThenError => CaptureFault::ChargeThenError,
            },
            capture_fault_rate: self.capture_fault_rate,
        }
    }
}

/// Which scenario to play, where, and how.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EmitArgs {
    /// Scenario file (TOML, see scenarios/README.md) to play as webhooks.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Replace the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where webhooks go: ingest (port 3001) or the API (port 3000).
    #[arg(long, env = "PM_SIM_TARGET", default_value = "http://127.0.0.1:3001")]
    target: String,
    /// The API, for the merchant's actions (evidence, submit: scopes `read` and `operate`).
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    secrets: WebhookSecretArgs,
    /// Where to write the ledger (what was sent and the final state it must produce).
    #[arg(long, default_value = "ledger.json")]
    ledger: PathBuf,
    /// Play the schedule this many times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Most webhook requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

impl EmitArgs {
    pub(crate) fn config(&self) -> anyhow::Result<EmitterConfig> {
        let secret = self.secrets.signing_secret()?;
        Ok(EmitterConfig {
            target: self.target.clone(),
            api: self.api.access()?,
            secret,
            concurrency: self.concurrency.max(1),
            speed: self.speed,
            ..EmitterConfig::default()
        })
    }
}

/// Loads and generates a scenario.
pub(crate) fn load(text: &str, seed: Option<u64>) -> anyhow::Result<Plan> {
    let scenario =
        Scenario::from_toml(text).map_err(|e| anyhow::anyhow!("invalid scenario: {e}"))?;
    let scenario = match seed {
        Some(s) => scenario.with_seed(s),
        None => scenario,
    };
    Ok(scenario.generate())
}

/// Plays a plan with a progress bar.
pub(crate) async fn play(plan: &Plan, config: &EmitterConfig) -> anyhow::Result<EmitReport> {
    let bar = ProgressBar::new(plan.deliveries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("webhooks [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = emitter::emit(plan, config, |done, _| bar.set_position(done)).await?;
    bar.finish_and_clear();
    Ok(report)
}

/// The emitter's summary table.
pub(crate) fn summary(report: &EmitReport) -> Table {
    let mut t = Table::new();
    t.set_header([
        "webhooks",
        "final answers",
        "retries",
        "not as expected",
        "merchant actions",
        "failed actions",
        "seconds",
    ]);
    let answers = report
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join("\n");
    t.add_row([
        report.deliveries.to_string(),
        answers,
        report.retries.to_string(),
        report.unexpected.len().to_string(),
        report.actions_done.to_string(),
        report.actions_failed.len().to_string(),
        format!("{:.1}", report.elapsed_ms as f64 / 1000.0),
    ]);
    t
}

/// Serves the provider API on `listen`; returns the bound address.
pub(crate) async fn serve_provider(
    listen: SocketAddr,
    sim: &ProviderSim,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    // The same request span as our services': a call that carries `traceparent` continues
    // its trace here, so a capture is one trace down to the (simulated) provider. Its
    // request metrics go to a registry nobody scrapes.
    let http_metrics =
        pm_http::telemetry::HttpMetrics::register(&mut pm_telemetry::metrics::Registry::default());
    let router = sim.router().layer(axum::middleware::from_fn_with_state(
        http_metrics,
        pm_http::telemetry::track,
    ));
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "provider API stopped");
        }
    });
    Ok(address)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = crate::signals::on_shutdown();
    let sim = ProviderSim::new(args.behaviour.behaviour());
    let address = serve_provider(args.listen, &sim, shutdown.clone()).await?;
    tracing::info!(%address, "provider API listening");
    if let Some(path) = &args.emit.scenario {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let plan = load(&text, args.emit.seed)?;
        let config = args.emit.config()?;
        std::fs::write(&args.emit.ledger, plan.ledger.to_json())
            .with_context(|| format!("cannot write {}", args.emit.ledger.display()))?;
        let report = play(&plan, &config).await?;
        println!("{}", summary(&report));
        println!(
            "ledger written to {}; check it with `pmctl verify --ledger {}`",
            args.emit.ledger.display(),
            args.emit.ledger.display()
        );
        for o in report.unexpected.iter().take(10) {
            println!(
                "delivery {} ended with {:?} after {} attempts",
                o.delivery, o.status, o.attempts
            );
        }
        for a in report.actions_failed.iter().take(10) {
            println!("action failed: {a}");
        }
        if args.exit_when_done {
            return crate::exit::check(report.ok(), || {
                "the provider did not get the expected answers".to_owned()
            });
        }
    }
    shutdown.cancelled().await;
    Ok(())
}
