//! `pmctl loadtest`: drives scenario webhooks at fixed arrival rates (open model) against
//! ingest or the API, and writes the results to `bench-results/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pm_lab::loadtest::check::CheckConfig;
use pm_lab::loadtest::engine::EngineConfig;
use pm_lab::loadtest::knee::{self, SloCriteria};
use pm_lab::loadtest::lag::LagConfig;
use pm_lab::loadtest::report::{
    self, Baseline, BrokerFacts, Knee, RunReport, ScenarioInfo, Settings, StepReport,
};
use pm_lab::loadtest::sweep::{self, SweepConfig, VerifyConfig};
use pm_lab::loadtest::traffic::{TrafficOptions, TrafficSource};
use pm_lab::machine::MachineFacts;
use pm_lab::statements::StatementProfiler;
use pm_scenario::Scenario;

use crate::args::{duration, ApiArgs, WebhookSecretArgs};

pub(crate) mod summary;

/// Played when the default scenario file is not there (e.g. outside the repository).
const QUICKSTART: &str = include_str!("../../../../scenarios/quickstart.toml");
pub(crate) const DEFAULT_SCENARIO: &str = "scenarios/steady-10k.toml";

/// Drive a scenario's signed webhooks at fixed arrival rates (an open model: request i is
/// sent at i/rate whatever the server does, and latency is measured from that intended
/// time, so queueing cannot hide) and report sent, accepted, rejected by status, dropped,
/// achieved rate and p50/p90/p99/p99.9/max per rate. With --rates, a sweep finds the knee:
/// the highest rate whose p99 stays within --slo-p99. With --verify, each step is checked
/// against the database through the API (nothing lost, nothing doubled) and the end-to-end
/// lag is sampled. Results: bench-results/loadtest-<UTC time>.json (with the full
/// histograms), a Markdown report and an SVG chart. Merchant actions (evidence, submit)
/// are not performed.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Scenario file the traffic comes from (scenarios/README.md). Its deliveries are sent
    /// in its order at the load test's rate; more plans with new seeds and ids are
    /// generated when a step needs more. When the default file is missing, the built-in
    /// quickstart scenario is used.
    #[arg(long, env = "PM_LOADTEST_SCENARIO", default_value = DEFAULT_SCENARIO)]
    scenario: PathBuf,
    /// Replace the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Leave out the scenario's bad deliveries (malformed, badly signed, stale, invalid);
    /// by default they are sent as the scenario says.
    #[arg(long)]
    drop_faults: bool,
    /// Where webhooks go: ingest (port 3001) or the API directly (port 3000).
    #[arg(
        long,
        env = "PM_LOADTEST_TARGET",
        default_value = "http://127.0.0.1:3001"
    )]
    target: String,
    /// The API, read by --verify and for the lag measurement (scope `read`).
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    secrets: WebhookSecretArgs,
    /// Offered rate of a single step, requests per second.
    #[arg(long, default_value_t = 1000.0, conflicts_with = "rates")]
    rate: f64,
    /// A sweep: one step per offered rate, e.g. `2000,5000,10000`; the report names the
    /// knee.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// Measured duration of each step.
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// Warm-up before each step's measured period: sent at the same rate, not measured.
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// Workers, each with one HTTP/1.1 keep-alive connection and one request at a time.
    #[arg(long, env = "PM_LOADTEST_CONNECTIONS", default_value_t = 64)]
    connections: usize,
    /// The latency objective: a step passes when its p99 is at most this (and it achieved
    /// ≥ 95 % of the offered rate with ≤ 1 % dropped and ≤ 1 % failed or 5xx).
    #[arg(long, default_value = "50ms", value_parser = duration)]
    slo_p99: Duration,
    /// After each step, wait until everything accepted was processed and compare the
    /// database with what was sent (through --api-url), and sample the end-to-end lag.
    /// Like `pmctl verify` it reads every order, dispute and event through the API, which
    /// takes a while on a large database: a fresh database per run keeps it quick.
    #[arg(long)]
    verify: bool,
    /// Most accepted order webhooks per step whose lag (acceptance → visible in the API)
    /// is measured with --verify, by polling the API (at most 10 % of the offered rate in
    /// polls, so fewer at low rates); 0 turns the measurement off.
    #[arg(long, default_value_t = 1000)]
    lag_samples: usize,
    /// How long --verify waits for processing (kafka mode) before it reports what is
    /// still missing.
    #[arg(long, default_value = "3m", value_parser = duration)]
    verify_timeout: Duration,
    /// Folder of the result files.
    #[arg(long, env = "PM_BENCH_RESULTS", default_value = "bench-results")]
    out: PathBuf,
    /// An earlier result file (loadtest-*.json) to print the differences with.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Baseline file of this machine (`pmctl bench baseline`) to compare achieved rates
    /// with; by default the newest baseline-*.json in --out, if any.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The services' database: the report records its version and the settings that change
    /// commit costs beside the machine's facts, and, when the server loads
    /// `pg_stat_statements`, where it spent its time in each step (the statistics are reset
    /// before each step; the extension is created if missing, which needs the privilege).
    /// Nothing else is written to it; the password is never recorded. Without it the report
    /// has no database facts.
    #[arg(long, env = "PM_DATABASE_URL")]
    database_url: Option<String>,
    /// The Kafka cluster the services use in kafka mode: the report records it, how many
    /// brokers it has and, for a broker on this machine, its Apache Kafka release. Read
    /// from the services' own variable, so a shell set up for them needs nothing more.
    #[arg(long = "kafka-brokers", env = "PM_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Timeout of one request (it then counts as failed, with its time recorded).
    #[arg(long, default_value = "10s", value_parser = duration)]
    request_timeout: Duration,
    /// A request started later than this after its intended time counts as late (it is
    /// still sent and its latency includes the wait).
    #[arg(long, default_value = "5ms", value_parser = duration)]
    late_after: Duration,
    /// A request that could not start within this after its intended time is dropped
    /// (not sent): the server is hopelessly behind.
    #[arg(long, default_value = "10s", value_parser = duration)]
    give_up_after: Duration,
    /// Pause between the steps of a sweep.
    #[arg(long, default_value = "2s", value_parser = duration)]
    cooldown: Duration,
}

/// The scenario text and where it came from (`None`: built in).
pub(crate) fn scenario_text(path: &Path) -> anyhow::Result<(String, Option<String>)> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, Some(path.display().to_string()))),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_SCENARIO) =>
        {
            eprintln!("{DEFAULT_SCENARIO} not found: using the built-in quickstart scenario");
            Ok((QUICKSTART.to_owned(), None))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Args {
    fn rates(&self) -> Vec<f64> {
        if self.rates.is_empty() {
            vec![self.rate]
        } else {
            self.rates.clone()
        }
    }

    fn sweep_config(&self, secret: Vec<u8>) -> anyhow::Result<SweepConfig> {
        let api = self.api.access()?;
        let verify = self.verify.then(|| VerifyConfig {
            check: CheckConfig {
                timeout: self.verify_timeout,
                ..CheckConfig::new(api.clone())
            },
            lag_samples: self.lag_samples,
            lag: LagConfig::new(api),
        });
        Ok(SweepConfig {
            engine: EngineConfig {
                target: self.target.clone(),
                secret,
                connections: self.connections,
                request_timeout: self.request_timeout,
                late_after: self.late_after,
                give_up_after: self.give_up_after,
            },
            rates: self.rates(),
            warmup: self.warmup,
            duration: self.duration,
            criteria: SloCriteria::new(self.slo_p99),
            verify,
            cooldown: self.cooldown,
            progress: true,
            statements: None,
        })
    }

    fn settings(&self) -> Settings {
        Settings {
            connections: self.connections,
            warmup_ms: millis(self.warmup),
            duration_ms: millis(self.duration),
            slo_p99_ms: self.slo_p99.as_secs_f64() * 1000.0,
            request_timeout_ms: millis(self.request_timeout),
            late_after_ms: millis(self.late_after),
            give_up_after_ms: millis(self.give_up_after),
            verify: self.verify,
            lag_samples: if self.verify { self.lag_samples } else { 0 },
        }
    }

    fn baseline(&self) -> anyhow::Result<Option<Baseline>> {
        match &self.baseline {
            Some(path) => Ok(Some(Baseline::read(path)?)),
            None => Ok(
                report::find_baseline(&self.out).and_then(|p| match Baseline::read(&p) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        eprintln!("ignoring baseline: {e}");
                        None
                    }
                }),
            ),
        }
    }
}

/// What the run learns from the database it was given.
pub(crate) struct DatabaseSide {
    pub(crate) facts: MachineFacts,
    pub(crate) statements: Option<StatementProfiler>,
    /// Why `statements` is `None` although a database was given.
    pub(crate) statements_unavailable: Option<String>,
}

/// This host's facts, and the database's and its statement statistics when a URL is given.
pub(crate) async fn database_side(database_url: Option<&str>) -> anyhow::Result<DatabaseSide> {
    let command_line = crate::secrets::redacted_command_line().join(" ");
    let mut side = DatabaseSide {
        facts: MachineFacts::host(&command_line, crate::BUILD.revision),
        statements: None,
        statements_unavailable: None,
    };
    if let Some(url) = database_url {
        let pool = pm_storage::connect(
            url,
            &pm_storage::PoolOptions {
                max_connections: 1,
                ..pm_storage::PoolOptions::default()
            },
        )?;
        side.facts
            .add_database(&pool)
            .await
            .context("reading the database's version and settings for the report")?;
        match StatementProfiler::connect(pool).await {
            Ok(profiler) => side.statements = Some(profiler),
            Err(e) => {
                eprintln!("statement statistics left out of the report: {e}");
                side.statements_unavailable = Some(e.to_string());
            }
        }
    }
    Ok(side)
}

/// What the report says about the Kafka cluster at `brokers`.
async fn broker_facts(brokers: &str) -> BrokerFacts {
    let config = pm_kafka::KafkaConfig::new(brokers, "pmctl-loadtest");
    let broker_count = pm_kafka::topics::broker_count(&config).await.ok();
    let release = brokers
        .split(',')
        .find_map(pm_kafka::probe::local_broker_release);
    BrokerFacts {
        brokers: brokers.to_owned(),
        broker_count,
        release,
    }
}

/// Fails early, with what to start, when the target does not answer at all.
async fn preflight(target: &str) -> anyhow::Result<()> {
    let url = format!("{}/health/live", target.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    http.get(&url).send().await.with_context(|| {
        format!("cannot reach the target at {target}: start `pmctl serve-ingest` (or `serve-api`) or pass --target")
    })?;
    Ok(())
}

/// A sweep ready to run, and what its report records about it.
pub(crate) struct Sweep {
    pub(crate) run_id: String,
    pub(crate) config: SweepConfig,
    pub(crate) source: TrafficSource,
    pub(crate) scenario: ScenarioInfo,
    pub(crate) settings: Settings,
    pub(crate) target: String,
    pub(crate) api_url: Option<String>,
    pub(crate) database: DatabaseSide,
    pub(crate) baseline: Option<Baseline>,
    /// Called as each step finishes.
    pub(crate) on_step: fn(&StepReport),
    pub(crate) kafka: Option<BrokerFacts>,
}

/// Runs the sweep (printing each step) and assembles its report: shared by `loadtest` and
/// `bench layouts`.
pub(crate) async fn sweep_report(sweep: Sweep) -> anyhow::Result<RunReport> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let config = SweepConfig {
        statements: sweep.database.statements,
        ..sweep.config
    };
    let steps = sweep::sweep(&config, sweep.source, sweep.on_step).await?;
    let knee = knee::knee(&steps).map(|s| Knee {
        offered_rate: s.offered_rate,
        achieved_rate: s.achieved_rate,
        p99_us: s.latency.p99_us,
    });
    Ok(RunReport {
        format: report::REPORT_FORMAT,
        tool: "pmctl loadtest".to_owned(),
        run_id: sweep.run_id,
        started_at,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command_line: crate::secrets::redacted_command_line(),
        git_revision: Some(crate::BUILD.revision.to_owned()),
        machine: sweep.database.facts,
        scenario: sweep.scenario,
        target: sweep.target,
        api_url: sweep.api_url,
        settings: sweep.settings,
        steps,
        knee,
        baseline: sweep.baseline,
        statements_unavailable: sweep.database.statements_unavailable,
        kafka: sweep.kafka,
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let secret = args.secrets.signing_secret()?;
    let (text, file) = scenario_text(&args.scenario)?;
    let scenario =
        Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("invalid scenario: {e}"))?;
    let scenario = match args.seed {
        Some(seed) => scenario.with_seed(seed),
        None => scenario,
    };
    let old = args
        .compare
        .as_deref()
        .map(report::read_report)
        .transpose()?;
    let baseline = args.baseline()?;
    preflight(&args.target).await?;
    if args.verify {
        preflight(&args.api.api_url).await?;
    }

    let database = database_side(args.database_url.as_deref()).await?;

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let info = ScenarioInfo {
        name: scenario.name().to_owned(),
        seed: scenario.seed(),
        file,
        keep_faults: !args.drop_faults,
        sha256: Some(ScenarioInfo::hash(&text)),
    };
    let source = TrafficSource::new(
        scenario,
        TrafficOptions {
            keep_faults: !args.drop_faults,
            run_id: run_id.clone(),
        },
    )?;
    let run = sweep_report(Sweep {
        run_id,
        config: args.sweep_config(secret)?,
        source,
        scenario: info,
        settings: args.settings(),
        target: args.target.clone(),
        api_url: args.verify.then(|| args.api.api_url.clone()),
        database,
        baseline,
        on_step: summary::print_step,
        kafka: match &args.kafka_brokers {
            Some(brokers) => Some(broker_facts(brokers).await),
            None => None,
        },
    })
    .await?;
    let written = report::write_reports(&args.out, &run)?;
    summary::print_run(&run, old.as_ref(), &written);
    let failed: Vec<String> = run
        .steps
        .iter()
        .filter(|s| s.verify.as_ref().is_some_and(|v| !v.ok))
        .map(|s| format!("{:.0}/s", s.offered_rate))
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "verification failed at {}: see {}",
        failed.join(", "),
        written.markdown.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_falls_back_to_the_built_in_one() {
        // Tests run in the crate's folder, where scenarios/ does not exist.
        let (text, file) = scenario_text(Path::new(DEFAULT_SCENARIO)).unwrap();
        if file.is_none() {
            assert_eq!(text, QUICKSTART);
        }
        assert!(scenario_text(Path::new("no/such/file.toml")).is_err());
    }
}
