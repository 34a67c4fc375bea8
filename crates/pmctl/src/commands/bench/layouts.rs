//! `pmctl bench layouts`: the services on partitioned and on unpartitioned event tables,
//! side by side (see `pm_lab::layouts`).
//!
//! For each layout: a fresh database `pm_bench_<layout>` on the server (migrated, switched
//! with `migrate --layout`, pg_partman's partitions made for the history), the same
//! generated history, a real `pmctl serve-api` process on it, then — when rates are given —
//! a load-test sweep of a scenario's webhooks straight to the API (each sweep's full report
//! is written too), and the read walks of the original project: users paging through
//! `GET /disputes/events` over the last 1 and 30 days.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use pm_embedded_pg::EmbeddedCluster;
use pm_lab::layouts::{self, History, LayoutRun, LayoutsReport, StepBrief, WalkSettings, Writes};
use pm_lab::loadtest::engine::EngineConfig;
use pm_lab::loadtest::knee::SloCriteria;
use pm_lab::loadtest::report::{ScenarioInfo, Settings};
use pm_lab::loadtest::sweep::SweepConfig;
use pm_lab::loadtest::traffic::{TrafficOptions, TrafficSource};
use pm_lab::machine::{CpuSample, MachineFacts};
use pm_lab::report;
use pm_lab::walks::{self, WalkConfig};
use pm_scenario::Scenario;
use pm_storage::layout::Layout;
use pm_storage::PgPool;

use super::{bench_pool, command_line, progress_bar};
use crate::args::{duration, DatabaseArgs};
use crate::commands::child::{port_or_free, random_token, spawn};
use crate::commands::loadtest::{self, DatabaseSide, Sweep};

#[derive(Debug, clap::Args)]
pub(super) struct LayoutsArgs {
    /// The server to create the databases `pm_bench_partitioned` and
    /// `pm_bench_unpartitioned` on (dropped first if they exist; the role needs CREATEDB);
    /// without it, a private embedded PostgreSQL (durable: fsync on), thrown away after.
    #[command(flatten)]
    db: DatabaseArgs,
    /// Days of history before the run, in both layouts (one partition a day when
    /// partitioned); at least the longest window.
    #[arg(long, default_value_t = 30)]
    history_days: u32,
    /// Rows of history in each of order_events and dispute_events, spread evenly over
    /// the days in time order. With the default page size a 30-day walk is 300 pages —
    /// about the original's (~8.6 s at ~23 ms a page).
    #[arg(long, default_value_t = 300_000)]
    history_rows: u64,
    /// Windows (days before the run) the readers walk, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,30")]
    windows: Vec<u32>,
    #[command(flatten)]
    readers: ReaderArgs,
    /// Offered webhook rates of a write sweep against each layout, e.g. `1000,2000,3000`;
    /// without them, reads only.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    #[command(flatten)]
    load: WriteArgs,
    /// Keep the two databases afterwards (to look at them; pointless with the embedded
    /// server).
    #[arg(long)]
    keep: bool,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl LayoutsArgs {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.windows.is_empty(), "--windows: at least one window");
        if let Some(w) = self
            .windows
            .iter()
            .find(|w| **w == 0 || **w > self.history_days)
        {
            anyhow::bail!(
                "--windows: {w} is not between 1 and --history-days ({})",
                self.history_days
            );
        }
        self.readers.check()
    }

    fn write_plan(&self) -> WritePlan<'_> {
        WritePlan {
            bench: "bench layouts",
            load: &self.load,
            rates: self.rates.clone(),
            out: &self.out,
        }
    }
}

/// The readers of a benchmark's walks through its `serve-api` (see `pm_lab::walks`).
#[derive(Debug, clap::Args)]
pub(super) struct ReaderArgs {
    /// Concurrent readers (Goose users, each waiting for a page before the next).
    #[arg(long, default_value_t = 8)]
    pub(super) users: usize,
    /// How long the readers walk in each measurement.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(super) walk_duration: Duration,
    /// Events per page (`limit`, 1 to 1000).
    #[arg(long, default_value_t = 1000)]
    pub(super) page_size: u32,
}

impl ReaderArgs {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users > 0, "--users: at least one reader");
        anyhow::ensure!(
            (1..=1000).contains(&self.page_size),
            "--page-size: between 1 and 1000 (the API's limit)"
        );
        anyhow::ensure!(
            self.walk_duration >= Duration::from_secs(1),
            "--walk-duration: at least 1s"
        );
        Ok(())
    }

    /// The walks against `api_url` with `api_key`, over windows ending at `until`.
    pub(super) fn config(&self, api_url: &str, api_key: &str, until: DateTime<Utc>) -> WalkConfig {
        WalkConfig {
            api_url: api_url.to_owned(),
            api_key: api_key.to_owned(),
            users: self.users,
            duration: self.walk_duration,
            page_size: self.page_size,
            until,
        }
    }

    /// The settings for the report, with the windows walked.
    pub(super) fn settings(&self, windows_days: Vec<u32>) -> WalkSettings {
        WalkSettings {
            users: self.users,
            seconds: self.walk_duration.as_secs(),
            page_size: self.page_size,
            windows_days,
        }
    }
}

/// How a benchmark's webhook load is sent: a scenario's webhooks straight to its own
/// `serve-api` at fixed rates, one load-test step per rate.
#[derive(Debug, clap::Args)]
pub(super) struct WriteArgs {
    /// Scenario the webhooks come from (as for `pmctl loadtest`).
    #[arg(long, default_value = loadtest::DEFAULT_SCENARIO)]
    scenario: PathBuf,
    /// Measured duration of each step of the write load.
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub(super) duration: Duration,
    /// Warm-up before each step.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub(super) warmup: Duration,
    /// Webhook generator connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// A step passes when its p99 is at most this.
    #[arg(long, default_value = "50ms", value_parser = duration)]
    slo_p99: Duration,
}

/// A write load at `rates` (the load test's engine; its full report is written into `out`
/// beside the benchmark's).
pub(super) struct WritePlan<'a> {
    /// The command, for the load-test report's note on statement statistics.
    pub(super) bench: &'static str,
    pub(super) load: &'a WriteArgs,
    pub(super) rates: Vec<f64>,
    pub(super) out: &'a std::path::Path,
}

impl WritePlan<'_> {
    fn settings(&self) -> Settings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let load = self.load;
        Settings {
            connections: load.connections,
            warmup_ms: ms(load.warmup),
            duration_ms: ms(load.duration),
            slo_p99_ms: load.slo_p99.as_secs_f64() * 1000.0,
            request_timeout_ms: 10_000,
            late_after_ms: 5,
            give_up_after_ms: 10_000,
            verify: false,
            lag_samples: 0,
        }
    }
}

/// The server's admin URL, and the embedded cluster when there is one (kept alive).
async fn server(db: &DatabaseArgs) -> anyhow::Result<(String, Option<EmbeddedCluster>)> {
    if let Ok(url) = db.url() {
        return Ok((url, None));
    }
    let cluster = super::embedded(true).await?;
    Ok((cluster.admin_url(), Some(cluster)))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).context("invalid database URL")?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

async fn recreate(admin: &PgPool, name: &str) -> anyhow::Result<()> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await
        .with_context(|| format!("cannot drop {name}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin)
        .await
        .with_context(|| format!("cannot create {name} (the role needs CREATEDB)"))?;
    Ok(())
}

/// A database of `layout` holding the history; returns its URL and how long the history
/// took to write.
pub(super) async fn prepare(
    admin: &PgPool,
    admin_url: &str,
    layout: Layout,
    history: &History,
) -> anyhow::Result<(String, PgPool, f64)> {
    let name = format!("pm_bench_{layout}");
    recreate(admin, &name).await?;
    let url = with_database(admin_url, &name)?;
    let pool = bench_pool(&url)?;
    pm_storage::migrate::run(&pool).await?;
    pm_storage::layout::ensure(&pool, layout).await?;
    pm_storage::partitions::cover(&pool, history.since()).await?;
    let bar = progress_bar();
    bar.set_message(format!("history, {layout}"));
    let (seeded, seconds) =
        layouts::timed(layouts::seed_history(&pool, history, &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        }))
        .await;
    bar.finish_and_clear();
    seeded?;
    Ok((url, pool, seconds))
}

/// The write sweep against a benchmark's API; its full report is written beside ours.
pub(super) async fn writes(
    plan: &WritePlan<'_>,
    api_url: &str,
    secret: &str,
    facts: &MachineFacts,
) -> anyhow::Result<(Writes, ScenarioInfo)> {
    let load = plan.load;
    let (text, file) = loadtest::scenario_text(&load.scenario)?;
    let scenario =
        Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("invalid scenario: {e}"))?;
    let info = ScenarioInfo {
        name: scenario.name().to_owned(),
        seed: scenario.seed(),
        file,
        keep_faults: true,
        sha256: Some(ScenarioInfo::hash(&text)),
    };
    let run_id = random_token()[..8].to_owned();
    let source = TrafficSource::new(
        scenario,
        TrafficOptions {
            keep_faults: true,
            run_id: run_id.clone(),
        },
    )?;
    let settings = plan.settings();
    let config = SweepConfig {
        engine: EngineConfig {
            target: api_url.to_owned(),
            secret: secret.as_bytes().to_vec(),
            connections: load.connections,
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            late_after: Duration::from_millis(settings.late_after_ms),
            give_up_after: Duration::from_millis(settings.give_up_after_ms),
        },
        rates: plan.rates.clone(),
        warmup: load.warmup,
        duration: load.duration,
        criteria: SloCriteria::new(load.slo_p99),
        verify: None,
        cooldown: Duration::from_secs(2),
        progress: true,
        statements: None,
    };
    let run = loadtest::sweep_report(Sweep {
        run_id,
        config,
        source,
        scenario: info.clone(),
        settings,
        target: api_url.to_owned(),
        api_url: None,
        database: DatabaseSide {
            facts: facts.clone(),
            statements: None,
            statements_unavailable: Some(format!(
                "not collected by `{}` (run `pmctl loadtest --database-url` against its setup)",
                plan.bench
            )),
        },
        baseline: None,
        // Progress goes to stderr: stdout is the report's (--json).
        on_step: |step| eprintln!("{}", loadtest::summary::step_line(step)),
        kafka: None,
    })
    .await?;
    let written = pm_lab::loadtest::report::write_reports(plan.out, &run)?;
    let file_name = |p: &std::path::Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    Ok((
        Writes {
            report: file_name(&written.markdown),
            knee: run.knee,
            steps: run.steps.iter().map(StepBrief::of).collect(),
        },
        info,
    ))
}

/// An API key with scope `read` for a benchmark's readers, named `name`.
pub(super) async fn readers_key(pool: &PgPool, name: &str) -> anyhow::Result<String> {
    let (_, key) = pm_storage::api_keys::create(
        pool,
        name,
        &[pm_domain::api_key::Scope::Read],
        None,
        &pm_storage::audit::Actor::new(format!("cli:{name}"), None),
        pm_domain::time::now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the readers' API key: {e}"))?;
    Ok(key)
}

/// Everything for one layout: database, history, API, writes, walks.
async fn one_layout(
    args: &LayoutsArgs,
    admin: &PgPool,
    admin_url: &str,
    layout: Layout,
    history: &History,
    facts: &MachineFacts,
    logs: &std::path::Path,
) -> anyhow::Result<(LayoutRun, Option<ScenarioInfo>)> {
    let (url, pool, seed_seconds) = prepare(admin, admin_url, layout, history).await?;
    let dispute_events_bytes = layouts::dispute_events_bytes(&pool).await?;
    let key = readers_key(&pool, "bench-layouts").await?;
    let secret = format!("whsec_{}", random_token());
    let mut api = spawn(
        "serve-api",
        &["serve-api"],
        &[
            ("PM_DATABASE_URL", url.as_str()),
            ("PM_WEBHOOK_SECRETS", secret.as_str()),
        ],
        logs,
        port_or_free(0)?,
    )
    .await?;
    let result = async {
        api.ready().await?;
        let (writes, scenario) = if args.rates.is_empty() {
            (None, None)
        } else {
            eprintln!("write sweep, {layout}:");
            let (w, s) = writes(&args.write_plan(), &api.url, &secret, facts).await?;
            (Some(w), Some(s))
        };
        let config = args.readers.config(&api.url, &key, history.until);
        let mut results = Vec::new();
        for days in &args.windows {
            let rows = layouts::rows_in_window(&pool, history.until, *days).await?;
            eprintln!(
                "read walks, {layout}, last {days} day(s) ({rows} rows): {} users for {} s…",
                args.readers.users,
                args.readers.walk_duration.as_secs()
            );
            let before = (CpuSample::take(api.pid()), Instant::now());
            let mut result = walks::walk(&config, *days, rows).await?;
            result.cores =
                Some(CpuSample::take(api.pid()).since(&before.0, before.1.elapsed().as_secs_f64()));
            results.push(result);
        }
        anyhow::Ok((
            LayoutRun {
                layout,
                seed_seconds,
                dispute_events_bytes,
                writes,
                walks: results,
            },
            scenario,
        ))
    }
    .await;
    api.stop().await;
    pool.close().await;
    if !args.keep {
        let name = format!("pm_bench_{layout}");
        if let Err(error) = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(admin)
            .await
        {
            tracing::warn!(%error, database = %name, "cannot drop the benchmark database");
        }
    }
    result
}

/// When a benchmark of the services starts: now, the history ending now (whole seconds), and
/// the facts of the machine and of the server `admin` is on, for its report.
pub(super) async fn started(
    admin: &PgPool,
    days: u32,
    rows: u64,
) -> anyhow::Result<(DateTime<Utc>, History, MachineFacts)> {
    let started_at = Utc::now();
    let history = History {
        days,
        rows,
        until: started_at.trunc_subsecs(0),
    };
    let mut facts = MachineFacts::host(&command_line(), crate::BUILD.revision);
    facts
        .add_database(admin)
        .await
        .context("reading the server's version and settings for the report")?;
    Ok((started_at, history, facts))
}

/// The `PM_*` settings the services inherit from this environment (pool sizes, group
/// commit, …), for the report; anything that may hold a secret is left out.
pub(super) fn services_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("PM_")
                && !["SECRET", "URL", "TOKEN", "PASSWORD", "KEY", "FILE"]
                    .iter()
                    .any(|s| k.contains(s))
        })
        .collect()
}

pub(super) async fn run(args: LayoutsArgs) -> anyhow::Result<()> {
    args.check()?;
    let (admin_url, cluster) = server(&args.db).await?;
    let admin = bench_pool(&admin_url)?;
    let (started_at, history, facts) =
        started(&admin, args.history_days, args.history_rows).await?;
    let logs = std::env::temp_dir().join(format!("pmctl-bench-layouts-{}", &random_token()[..8]));
    std::fs::create_dir_all(&logs)?;
    let mut runs = Vec::new();
    let mut scenario = None;
    let mut failure = None;
    for layout in Layout::ALL {
        match one_layout(&args, &admin, &admin_url, layout, &history, &facts, &logs).await {
            Ok((run, s)) => {
                runs.push(run);
                scenario = scenario.or(s);
            }
            Err(e) => {
                failure = Some(e.context(format!("the {layout} layout")));
                break;
            }
        }
    }
    admin.close().await;
    if let Some(cluster) = cluster {
        if let Err(error) = cluster.stop().await {
            tracing::warn!(%error, "the embedded PostgreSQL did not stop cleanly");
        }
    }
    if let Some(e) = failure {
        return Err(e.context(format!("service logs in {}", logs.display())));
    }
    let report = LayoutsReport {
        format: layouts::REPORT_FORMAT,
        started_at,
        finished_at: Utc::now(),
        machine: facts,
        history,
        walk: args.readers.settings(args.windows.clone()),
        scenario,
        services_env: services_env(),
        layouts: runs,
    };
    let written = report::write_layouts(&args.out, &report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report::layouts_table(&report));
    }
    eprintln!(
        "wrote {}, {}, {}",
        written.json.display(),
        written.markdown.display(),
        written.svg.display()
    );
    let _ = std::fs::remove_dir_all(&logs);
    anyhow::ensure!(
        report.ok(),
        "a read walk failed or saw another number of rows than its window holds: see {}",
        written.markdown.display()
    );
    Ok(())
}
