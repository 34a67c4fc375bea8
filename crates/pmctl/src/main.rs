//! `pmctl`: the one binary of Payment Manager. Each subcommand is a module of
//! [`commands`]; this is the only place that wires the crates together.

use clap::{CommandFactory, Parser, Subcommand};

mod args;
mod commands;
mod exit;
mod ops;
mod relay;
mod secrets;
mod server;
mod signals;

/// The version and the source revision built (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PM_GIT_REVISION"),
    ")"
);

/// What `pm_build_info` reports.
pub(crate) const BUILD: pm_telemetry::metrics::BuildInfo = pm_telemetry::metrics::BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("PM_GIT_REVISION"),
};

/// Payment Manager: a merchant's payment backend and a lab for the techniques around it.
#[derive(Debug, Parser)]
#[command(name = "pmctl", version = VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    log: args::LogArgs,
    #[command(flatten)]
    traces: args::TraceArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the analytics read models: orders per day, captures, dispute outcomes and times.
    Analytics(commands::analytics::Args),
    /// Create, list and revoke the API keys operators and tools authenticate with.
    ApiKeys(commands::api_keys::Args),
    /// Show the audit trail of operator actions (who did what to which object, when).
    Audit(commands::audit::Args),
    /// Benchmarks into bench-results/: the partitioning experiment, the machine's baselines.
    Bench(commands::bench::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::docs::CompletionsArgs),
    /// Database administration: `db bootstrap` creates the least-privilege roles.
    Db(commands::db::Args),
    /// Run everything on this machine and show it working: database, API, ingest, provider
    /// simulator, a scenario, and a verified report.
    Demo(commands::demo::Args),
    /// Drive scenario webhooks at fixed arrival rates (open model) and report latency from the
    /// intended send time, throughput, drops, lag and correctness into bench-results/.
    Loadtest(commands::loadtest::Args),
    /// Print the manual page (roff), or write one per command with --out-dir.
    Man(commands::docs::ManArgs),
    /// Apply the SQL migrations (idempotent; safe in CI and at every deploy).
    Migrate(commands::migrate::Args),
    /// Publish the outbox's domain events to Kafka (`domain-events`), once acknowledged.
    OutboxRelay(commands::outbox_relay::Args),
    /// Run pg_partman maintenance: premake partitions, apply retention, prune webhook dedupe.
    PartitionMaintain(commands::partition_maintain::Args),
    /// Consume `domain-events` into the analytics read models, each event once (inbox).
    ProjectAnalytics(commands::project_analytics::Args),
    /// Send one signed webhook (order or chargeback) and print the answer.
    Send(commands::send::Args),
    /// Serve the core API (webhooks, reads, operator actions, the admin UI) on port 3000.
    ServeApi(Box<commands::serve_api::Args>),
    /// Serve the public webhook gateway on port 3001: verify, validate, hand on to Kafka or the API.
    ServeIngest(commands::serve_ingest::Args),
    /// Settle captures whose provider answer was lost, through the provider's capture lookup.
    ReconcileCaptures(commands::reconcile_captures::Args),
    /// Inspect and replay dead-lettered webhooks (Kafka mode).
    ReplayDlq(commands::replay_dlq::Args),
    /// The fake payment provider: its API on port 3002, and scenario webhooks to play.
    SimulateProvider(commands::simulate_provider::Args),
    /// Compare a simulator ledger with the database: nothing lost, nothing doubled.
    Verify(commands::verify::Args),
}

impl Command {
    /// The default `service.name` of the spans this subcommand exports.
    fn service_name(&self) -> &'static str {
        match self {
            Command::Analytics(_) => "pmctl-analytics",
            Command::ApiKeys(_) => "pmctl-api-keys",
            Command::Audit(_) => "pmctl-audit",
            Command::Bench(_) => "pmctl-bench",
            Command::Completions(_) => "pmctl-completions",
            Command::Db(_) => "pmctl-db",
            Command::Demo(_) => "pmctl-demo",
            Command::Loadtest(_) => "pmctl-loadtest",
            Command::Man(_) => "pmctl-man",
            Command::Migrate(_) => "pmctl-migrate",
            Command::OutboxRelay(_) => "pmctl-outbox-relay",
            Command::PartitionMaintain(_) => "pmctl-partition-maintain",
            Command::ProjectAnalytics(_) => "pmctl-project-analytics",
            Command::Send(_) => "pmctl-send",
            Command::ServeApi(_) => "pmctl-serve-api",
            Command::ServeIngest(_) => "pmctl-serve-ingest",
            Command::ReconcileCaptures(_) => "pmctl-reconcile-captures",
            Command::ReplayDlq(_) => "pmctl-replay-dlq",
            Command::SimulateProvider(_) => "pmctl-simulate-provider",
            Command::Verify(_) => "pmctl-verify",
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Dropped last, after the runtime stopped: exports the spans still queued (bounded).
    let _traces = match cli.log.init(&cli.traces, cli.command.service_name()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(exit::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Analytics(a) => commands::analytics::run(a).await,
            Command::ApiKeys(a) => commands::api_keys::run(a).await,
            Command::Audit(a) => commands::audit::run(a).await,
            Command::Bench(a) => commands::bench::run(a).await,
            Command::Completions(a) => commands::docs::completions(&a, Cli::command()),
            Command::Db(a) => commands::db::run(a).await,
            Command::Demo(a) => commands::demo::run(a, cli.traces.otlp_endpoint()).await,
            Command::Loadtest(a) => commands::loadtest::run(a).await,
            Command::Man(a) => commands::docs::man(&a, Cli::command()),
            Command::Migrate(a) => commands::migrate::run(a).await,
            Command::OutboxRelay(a) => commands::outbox_relay::run(a).await,
            Command::PartitionMaintain(a) => commands::partition_maintain::run(a).await,
            Command::ProjectAnalytics(a) => commands::project_analytics::run(a).await,
            Command::Send(a) => commands::send::run(a).await,
            Command::ServeApi(a) => commands::serve_api::run(*a).await,
            Command::ServeIngest(a) => commands::serve_ingest::run(a).await,
            Command::ReconcileCaptures(a) => commands::reconcile_captures::run(a).await,
            Command::ReplayDlq(a) => commands::replay_dlq::run(a).await,
            Command::SimulateProvider(a) => commands::simulate_provider::run(a).await,
            Command::Verify(a) => commands::verify::run(a).await,
        }
    });
    // Blocking work still running (a Kafka client closing against an unreachable broker)
    // must not keep the process alive after the command finished.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = &result {
        // Libraries quote what they reject, secrets included: scrubbed like the logs.
        eprintln!("error: {}", pm_telemetry::redact::scrub(&describe(e)));
    }
    exit::code(&result)
}

/// The error and its causes, `: `-separated like anyhow's `{:#}`, but a cause already quoted
/// by the message before it is not repeated: many errors (thiserror's `"…: {0}"` with a
/// `#[from]` source) put their source in their own message *and* report it as their cause,
/// which printed `database error: X: X: X`.
fn describe(e: &anyhow::Error) -> String {
    let mut messages: Vec<String> = Vec::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if messages
            .last()
            .is_some_and(|before| before.contains(&message))
        {
            continue;
        }
        messages.push(message);
    }
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What thiserror's `#[error("database error: {0}")] Database(#[from] io::Error)` makes.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "database error: {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_quoted_by_its_error_is_printed_once() {
        let inner = std::io::Error::other("connection refused");
        let e = anyhow::Error::from(Wrapper(inner)).context("the partitioned layout");
        assert_eq!(
            describe(&e),
            "the partitioned layout: database error: connection refused"
        );
        let plain = anyhow::anyhow!("disk full").context("cannot write the report");
        assert_eq!(describe(&plain), "cannot write the report: disk full");
    }
}
