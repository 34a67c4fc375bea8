//! `pmctl demo`: the one-command tour. A database (a private throw-away cluster unless one
//! is configured), migrations, the API and ingest as child processes, the provider
//! simulator in this process, the quickstart scenario played through ingest, `verify`,
//! and a report of what ran where and what happened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::Table;
use pm_lab::verify::{self, VerifyReport};
use pm_sim::provider::{Accepted, ProviderSim};
use secrecy::ExposeSecret;

use super::child::{port_or_free, random_token, spawn};
use super::simulate_provider::{self, BehaviourArgs};
use crate::args::secret;

/// The scenario played when none is given.
const QUICKSTART: &str = include_str!("../../../../scenarios/quickstart.toml");

/// Run the whole system on this machine and show it working: a database (a private
/// PostgreSQL cluster unless --database-url/PM_DATABASE_URL is set), the API, ingest and
/// the provider simulator; plays the quickstart scenario, verifies that nothing was lost or
/// doubled, and prints a report with URLs to try next.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Use this database instead of a private throw-away cluster (it is migrated). TLS as
    /// for every subcommand: `?sslmode=verify-full&sslrootcert=<CA file>`.
    #[arg(long = "database-url", env = "PM_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    database_url: Option<secrecy::SecretString>,
    /// Run the pipeline through Kafka (serve-api --mode kafka, ingest --sink kafka) instead
    /// of HTTP: at these brokers, or, with no value, on a single-node Apache Kafka that the
    /// demo starts on loopback and removes at the end (needs Java 17 and Maven; the jars
    /// come from Maven Central once).
    #[arg(long, value_name = "BROKERS", num_args = 0..=1, default_missing_value = "")]
    kafka: Option<String>,
    /// Play this scenario file instead of the built-in quickstart.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Leave everything running after the report, until Ctrl+C.
    #[arg(long)]
    keep_running: bool,
    /// Ports of the API, ingest and the provider simulator (a free port is used instead of
    /// one that is taken).
    #[arg(long, default_value_t = 3000)]
    api_port: u16,
    #[arg(long, default_value_t = 3001)]
    ingest_port: u16,
    #[arg(long, default_value_t = 3002)]
    provider_port: u16,
    #[command(flatten)]
    behaviour: BehaviourArgs,
}

/// `otlp_endpoint`: where this process (and so the services it starts) export their spans.
pub(crate) async fn run(args: Args, otlp_endpoint: Option<&str>) -> anyhow::Result<()> {
    let started = Instant::now();
    let workdir = tempfile_dir()?;
    let shutdown = tokio_util::sync::CancellationToken::new();

    // 1. The database.
    let mut cluster = None;
    let (database_url, database_label) = match &args.database_url {
        Some(url) => {
            crate::secrets::remember(url.expose_secret());
            (
                url.expose_secret().to_owned(),
                "configured (PM_DATABASE_URL)".to_owned(),
            )
        }
        None => {
            println!("starting a private PostgreSQL cluster…");
            let c =
                pm_embedded_pg::EmbeddedCluster::start(pm_embedded_pg::EmbeddedOptions::default())
                    .await
                    .context("cannot start the embedded PostgreSQL (or set PM_DATABASE_URL)")?;
            let admin = pm_storage::connect(&c.admin_url(), &Default::default())?;
            sqlx::query("CREATE DATABASE payments")
                .execute(&admin)
                .await
                .context("cannot create the demo database")?;
            admin.close().await;
            let label = format!(
                "embedded PostgreSQL {} on port {} (throw-away, {})",
                c.major_version(),
                c.port(),
                c.data_dir().display()
            );
            let url = c.url_for("payments");
            cluster = Some(c);
            (url, label)
        }
    };
    let pool = pm_storage::connect(&database_url, &Default::default())?;
    let applied = pm_storage::migrate::run(&pool)
        .await
        .context("migrating the database")?;
    // The demo's operator: a key with every scope, for the simulator's merchant actions,
    // verify, and the commands printed at the end.
    let key_name = format!("demo-{}", &random_token()[..8]);
    let (_, demo_key) = pm_storage::api_keys::create(
        &pool,
        &key_name,
        &pm_domain::api_key::Scope::ALL,
        None,
        &pm_storage::audit::Actor::new("cli:demo", None),
        pm_domain::time::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the demo's API key: {e}"))?;
    pool.close().await;

    // 2. The provider simulator (this process) and the services (child processes).
    let sim = ProviderSim::new(args.behaviour.behaviour());
    let provider_port = port_or_free(args.provider_port)?;
    let provider_addr: SocketAddr = ([127, 0, 0, 1], provider_port).into();
    simulate_provider::serve_provider(provider_addr, &sim, shutdown.clone()).await?;
    let provider_url = format!("http://{provider_addr}");
    let secret = format!("whsec_{}", random_token());
    let token = random_token();
    let prefix = format!("demo-{}-", &random_token()[..8]);
    let (api_port, ingest_port) = (
        port_or_free(args.api_port)?,
        port_or_free(args.ingest_port)?,
    );
    let api_url = format!("http://127.0.0.1:{api_port}");
    let mut env: Vec<(&str, &str)> = vec![
        ("PM_DATABASE_URL", &database_url),
        ("PM_WEBHOOK_SECRETS", &secret),
        ("PM_INTERNAL_TOKEN", &token),
        ("PM_PROVIDER_URL", &provider_url),
        ("PM_API_URL", &api_url),
        ("PM_LOG", "info,sqlx=warn,librdkafka=warn"),
    ];
    // The services inherit the OTEL_* variables; a collector named by flag is passed on.
    if let Some(endpoint) = otlp_endpoint {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
    }
    // `--kafka` alone: a cluster of the demo's own, removed when the demo ends.
    let kafka = match args.kafka.clone() {
        Some(given) => Some(
            pm_kafka::local::KafkaTarget::given_or_started(Some(given))
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let brokers = kafka.as_ref().map(|k| k.brokers().to_owned());
    if let Some(brokers) = &brokers {
        env.extend([
            ("PM_KAFKA_BROKERS", brokers.as_str()),
            ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ]);
    }
    let (mode, sink) = if args.kafka.is_some() {
        ("kafka", "kafka")
    } else {
        ("sync", "http")
    };
    let mut api = spawn(
        "api",
        &["serve-api", "--mode", mode],
        &env,
        &workdir,
        api_port,
    )
    .await?;
    let mut ingest = spawn(
        "ingest",
        &["serve-ingest", "--sink", sink],
        &env,
        &workdir,
        ingest_port,
    )
    .await?;
    api.ready().await?;
    ingest.ready().await?;

    // 3. Play the scenario through ingest.
    let (scenario_text, scenario_name) = match &args.scenario {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (QUICKSTART.to_owned(), "quickstart (built in)".to_owned()),
    };
    let plan = simulate_provider::load(&scenario_text, None)?;
    let ledger_path = workdir.join("ledger.json");
    std::fs::write(&ledger_path, plan.ledger.to_json())?;
    let api_access =
        pm_api_types::client::ApiAccess::new(&api.url).with_key(demo_key.clone().into())?;
    let emitter = pm_sim::emitter::EmitterConfig {
        target: ingest.url.clone(),
        api: api_access.clone(),
        secret: secret.as_bytes().to_vec(),
        ..Default::default()
    };
    println!(
        "playing {scenario_name}: {} webhooks, {} merchant actions…",
        plan.deliveries.len(),
        plan.actions.len()
    );
    let emitted = simulate_provider::play(&plan, &emitter).await?;

    // 4. Verify (in kafka mode the consumers may still be catching up).
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let r = verify::verify(&api_access, &plan.ledger).await?;
        if r.ok() || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let dlq = match &brokers {
        Some(brokers) => Some(dlq_size(brokers, &prefix).await),
        None => None,
    };

    // 5. The report.
    println!();
    let mut services = Table::new();
    services.set_header(["what", "where"]);
    services.add_row(["database", &database_label]);
    services.add_row([
        "API",
        &format!("{} ({mode} mode; log {})", api.url, api.log.display()),
    ]);
    services.add_row([
        "ingest",
        &format!("{} ({sink} sink; log {})", ingest.url, ingest.log.display()),
    ]);
    services.add_row(["provider simulator", &provider_url]);
    if let Some(k) = &kafka {
        services.add_row([
            "Kafka",
            &format!("{} (topics {prefix}webhooks.*)", k.describe()),
        ]);
    }
    services.add_row(["ledger", &ledger_path.display().to_string()]);
    services.add_row([
        "metrics",
        &format!(
            "{}/metrics (with the API key below) and {}/metrics",
            api.url, ingest.url
        ),
    ]);
    services.add_row(["traces", &traces_hint(otlp_endpoint)]);
    println!("{services}");
    println!("migrations applied: {}", applied.len());
    println!("{}", simulate_provider::summary(&emitted));
    super::verify::print_report(&report);
    let accepted = sim.accepted();
    let representments = accepted
        .iter()
        .filter(|a| matches!(a, Accepted::Representment { .. }))
        .count();
    println!(
        "provider accepted {representments} representment(s); {} duplicate deliveries suppressed; DLQ: {}",
        report.duplicates_delivered,
        dlq.map_or("not used (HTTP pipeline)".to_owned(), |n| format!("{n} message(s)")),
    );
    println!("finished in {:.1} s", started.elapsed().as_secs_f64());
    println!();
    print_next_steps(&api.url, &ingest.url, &secret, &key_name, &demo_key);

    let ok = report.ok() && emitted.ok();
    if args.keep_running {
        println!("\nrunning until Ctrl+C (or SIGTERM) …");
        // SIGTERM too: a supervisor (or a script) stops the demo that way, and its services
        // and cluster must stop with it rather than be left behind.
        crate::signals::on_shutdown().cancelled().await;
    }
    shutdown.cancel();
    ingest.stop().await;
    api.stop().await;
    if let Some(c) = cluster {
        let _ = c.stop().await;
    }
    // After the services: stopping the brokers first would leave them waiting on Kafka.
    if let Some(k) = kafka {
        k.release().await;
    }
    crate::exit::check(ok, || {
        format!(
            "the demo run did not verify: {}",
            describe(&report, &emitted)
        )
    })
}

/// Where the run's spans went, or how to get them.
fn traces_hint(otlp_endpoint: Option<&str>) -> String {
    match otlp_endpoint {
        Some(endpoint) => format!(
            "exported to {endpoint}: look up service pmctl-serve-ingest; each webhook is one \
             trace from ingest into the API and its statements, and the services' log lines \
             carry its trace_id"
        ),
        None => "off; start a collector (e.g. Jaeger on :4318, see docs/tracing.md) and run \
                 `pmctl --otlp-endpoint http://127.0.0.1:4318 demo`"
            .to_owned(),
    }
}

fn describe(report: &VerifyReport, emitted: &pm_sim::emitter::EmitReport) -> String {
    format!(
        "{} mismatch(es), {} unexpected answer(s), {} failed action(s)",
        report.mismatches(),
        emitted.unexpected.len(),
        emitted.actions_failed.len()
    )
}

async fn dlq_size(brokers: &str, prefix: &str) -> usize {
    let config = pm_kafka::KafkaConfig::new(brokers, "pmctl-demo");
    let topics = pm_kafka::Topics::with_prefix(prefix);
    tokio::task::spawn_blocking(move || {
        [topics.orders, topics.disputes]
            .iter()
            .map(|t| {
                pm_kafka::replay::list(
                    &config,
                    &pm_kafka::Topics::dlq(t),
                    &Default::default(),
                    100_000,
                )
                .map_or(0, |l| l.len())
            })
            .sum()
    })
    .await
    .unwrap_or(0)
}

fn print_next_steps(api: &str, ingest: &str, secret: &str, key_name: &str, key: &str) {
    println!("Try next (with --keep-running). The demo's API key ({key_name}, every scope):");
    println!("  export PM_API_KEY={key}");
    let auth = "-H \"Authorization: Bearer $PM_API_KEY\"";
    println!("  curl -s {auth} '{api}/orders?status=success&limit=5'");
    println!("  curl -s {auth} '{api}/disputes?status=won&limit=5'");
    println!("  curl -s {auth} '{api}/orders/events?kind=webhook_received&sort=desc&limit=5'");
    println!("  curl -s {auth} {api}/metrics | grep pm_webhooks_processed");
    println!("  curl -s {auth} {api}/openapi.json | head -c 300");
    println!("  # the admin UI: open {api}/admin and log in with that key");
    println!("  # a signed webhook through ingest:");
    println!("  pmctl send order --status success --target {ingest} --webhook-secret {secret}");
}

/// A directory of this run's own for logs and the ledger.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pmctl-demo-{}", &random_token()[..8]));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
