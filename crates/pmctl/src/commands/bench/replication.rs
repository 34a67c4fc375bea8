//! `pmctl bench replication`: streaming standbys under a steady write load — how stale
//! their reads are — and the read walks with reads routed to none, one and two of them
//! (see `pm_lab::replication`).
//!
//! It starts its own durable PostgreSQL (fsync on: the sync-mode knee depends on it) with
//! two streaming hot standbys, writes the history the walks read into the primary (as
//! `bench layouts` does, in a database `pm_bench_partitioned`), and runs real `pmctl
//! serve-api` processes: one on the primary alone while a load-test step of a scenario's
//! webhooks runs at `--rate` and a heartbeat measures each standby's staleness, then one
//! per replica count for the walks, given the standbys with `--database-replica-url`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_lab::layouts as lab_layouts;
use pm_lab::machine::{CpuSample, MachineFacts};
use pm_lab::replication::{
    self, LoadPhase, Postmasters, ProcessCores, ReadPhase, ReplicationReport, StalenessProbe,
    Standby,
};
use pm_lab::report;
use pm_lab::walks;
use pm_storage::layout::Layout;
use pm_storage::PgPool;

use super::bench_pool;
use super::layouts::{self, ReaderArgs, WriteArgs, WritePlan};
use crate::args::duration;
use crate::commands::child::{port_or_free, random_token, spawn, Service};

/// Streaming standbys of the primary.
const STANDBYS: usize = 2;
/// How often the WAL not yet replayed is sampled.
const BYTES_EVERY_MS: f64 = 100.0;
/// How long the standbys get to replay everything before a phase.
const CATCH_UP: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub(super) struct ReplicationArgs {
    /// Offered webhook rate of the steady load the staleness is measured under. The
    /// default is about the sync-mode knee measured on a two-core machine (see
    /// docs/benchmarks.md); on another machine, take the knee `pmctl loadtest` finds there.
    #[arg(long, default_value_t = 3000.0)]
    rate: f64,
    /// The load (one step at --rate; the staleness is measured over its --duration).
    #[command(flatten)]
    load: WriteArgs,
    /// A heartbeat on the primary every this long: the staleness is measured per heartbeat.
    #[arg(long, default_value = "10ms", value_parser = duration)]
    heartbeat_every: Duration,
    /// Each standby is asked for the newest heartbeat every this long: the measurement's
    /// resolution.
    #[arg(long, default_value = "5ms", value_parser = duration)]
    poll_every: Duration,
    /// Days of history the walks read (written before the load, in time order).
    #[arg(long, default_value_t = 10)]
    history_days: u32,
    /// Rows of history in each of order_events and dispute_events, spread evenly over the
    /// days.
    #[arg(long, default_value_t = 100_000)]
    history_rows: u64,
    /// The window the readers walk: the last this many days of the history.
    #[arg(long, default_value_t = 1)]
    window_days: u32,
    /// The readers, walking with 0, 1 and 2 replicas in turn.
    #[command(flatten)]
    readers: ReaderArgs,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

impl ReplicationArgs {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rate > 0.0, "--rate: above 0");
        anyhow::ensure!(
            self.load.duration >= Duration::from_secs(1),
            "--duration: at least 1s"
        );
        anyhow::ensure!(
            !self.heartbeat_every.is_zero() && !self.poll_every.is_zero(),
            "--heartbeat-every and --poll-every: above 0"
        );
        anyhow::ensure!(
            (1..=self.history_days).contains(&self.window_days),
            "--window-days: between 1 and --history-days ({})",
            self.history_days
        );
        self.readers.check()
    }

    fn write_plan(&self) -> WritePlan<'_> {
        WritePlan {
            bench: "bench replication",
            load: &self.load,
            rates: vec![self.rate],
            out: &self.out,
        }
    }

    fn probe(&self) -> StalenessProbe {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        StalenessProbe {
            seconds: self.load.duration.as_secs_f64(),
            heartbeat_ms: ms(self.heartbeat_every),
            poll_ms: ms(self.poll_every),
            bytes_ms: BYTES_EVERY_MS,
        }
    }
}

/// The servers, and what the measurement needs of them.
struct Servers {
    /// The benchmark database on the primary, and on each standby.
    url: String,
    standby_urls: Vec<String>,
    /// Pools of the staleness probe.
    probe: PgPool,
    probe_standbys: Vec<Standby>,
    postmasters: Postmasters,
}

/// `url` on another port of the same host (a standby of the server it names).
fn on_port(url: &str, port: u16) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).context("invalid database URL")?;
    parsed
        .set_port(Some(port))
        .map_err(|()| anyhow::anyhow!("cannot set the port of {url}"))?;
    Ok(parsed.to_string())
}

/// The postmaster's pid, from the first line of `postmaster.pid` in the data directory.
fn postmaster_pid(cluster: &EmbeddedCluster) -> Option<u32> {
    std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn probe_pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    Ok(pm_storage::connect(
        url,
        &pm_storage::PoolOptions {
            max_connections: connections,
            application_name: "pmctl-bench-replication".to_owned(),
            ..Default::default()
        },
    )?)
}

impl Servers {
    fn new(
        primary: &EmbeddedCluster,
        standbys: &[EmbeddedCluster],
        url: String,
    ) -> anyhow::Result<Self> {
        let standby_urls = standbys
            .iter()
            .map(|s| on_port(&url, s.port()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let probe_standbys = standby_urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                Ok(Standby {
                    name: format!("standby {}", i + 1),
                    pool: probe_pool(u, 2)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Servers {
            probe: probe_pool(&url, 4)?,
            url,
            standby_urls,
            probe_standbys,
            postmasters: Postmasters {
                primary: postmaster_pid(primary),
                standbys: standbys.iter().map(postmaster_pid).collect(),
            },
        })
    }

    async fn close(self) {
        self.probe.close().await;
        for s in self.probe_standbys {
            s.pool.close().await;
        }
    }

    /// The cores each process used since `before` (taken with the service's `pid`).
    fn cores_since(&self, before: &(CpuSample, Instant), pid: Option<u32>) -> ProcessCores {
        ProcessCores::between(
            &before.0,
            &CpuSample::take(pid),
            before.1.elapsed().as_secs_f64(),
            &self.postmasters,
        )
    }

    /// Waits until the standbys replayed everything written so far; how long that took.
    async fn caught_up(&self) -> anyhow::Result<f64> {
        Ok(replication::wait_caught_up(&self.probe, &self.probe_standbys, CATCH_UP).await?)
    }

    /// A `serve-api` on the benchmark database, reading from the first `replicas` standbys.
    async fn api(
        &self,
        secret: &str,
        replicas: usize,
        logs: &std::path::Path,
    ) -> anyhow::Result<Service> {
        let replica_urls = self.standby_urls[..replicas].join(",");
        let mut env = vec![
            ("PM_DATABASE_URL", self.url.as_str()),
            ("PM_WEBHOOK_SECRETS", secret),
        ];
        if replicas > 0 {
            env.push(("PM_DATABASE_REPLICA_URL", replica_urls.as_str()));
        }
        spawn("serve-api", &["serve-api"], &env, logs, port_or_free(0)?).await
    }
}

/// Waits until the API has `replicas` replicas in rotation (its `/metrics`).
async fn in_rotation(api: &Service, key: &str, replicas: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http
            .get(format!("{}/metrics", api.url))
            .bearer_auth(key)
            .send()
            .await?
            .text()
            .await?;
        let current = metrics
            .lines()
            .filter(|l| l.starts_with("pm_db_replica_in_rotation{") && l.ends_with(" 1"))
            .count();
        if current == replicas {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "serve-api has {current} of its {replicas} replicas in rotation after 30 s; see {}",
            api.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The steady load with the staleness measured meanwhile, on a serve-api on the primary.
async fn load_phase(
    args: &ReplicationArgs,
    servers: &Servers,
    facts: &MachineFacts,
    logs: &std::path::Path,
) -> anyhow::Result<(LoadPhase, pm_lab::loadtest::report::ScenarioInfo)> {
    replication::install_heartbeat(&servers.probe, &servers.probe_standbys).await?;
    let secret = format!("whsec_{}", random_token());
    let mut api = servers.api(&secret, 0, logs).await?;
    let result = async {
        api.ready().await?;
        let pid = api.pid();
        let probe = args.probe();
        eprintln!(
            "steady load at {}/s for {} s, the standbys' staleness measured meanwhile…",
            args.rate,
            args.load.duration.as_secs()
        );
        let staleness = async {
            // The measurement covers the load's measured part, not its warm-up.
            tokio::time::sleep(args.load.warmup).await;
            let before = (CpuSample::take(pid), Instant::now());
            let standbys =
                replication::measure_staleness(&servers.probe, &servers.probe_standbys, &probe)
                    .await?;
            anyhow::Ok((standbys, servers.cores_since(&before, pid)))
        };
        let plan = args.write_plan();
        let (writes, staleness) =
            tokio::join!(layouts::writes(&plan, &api.url, &secret, facts), staleness);
        let ((writes, scenario), (standbys, cores)) = (writes?, staleness?);
        let catch_up_seconds = servers.caught_up().await?;
        anyhow::Ok((
            LoadPhase {
                writes,
                probe,
                standbys,
                cores,
                catch_up_seconds,
            },
            scenario,
        ))
    }
    .await;
    api.stop().await;
    result
}

/// The read walks with reads routed to `replicas` standbys: the readers' key, and the end
/// of the window, which holds `rows`.
async fn read_phase(
    args: &ReplicationArgs,
    servers: &Servers,
    (key, until): (&str, DateTime<Utc>),
    rows: u64,
    replicas: usize,
    logs: &std::path::Path,
) -> anyhow::Result<ReadPhase> {
    servers.caught_up().await?;
    let secret = format!("whsec_{}", random_token());
    let mut api = servers.api(&secret, replicas, logs).await?;
    let result = async {
        api.ready().await?;
        if replicas > 0 {
            in_rotation(&api, key, replicas).await?;
        }
        eprintln!(
            "read walks with {replicas} replica(s), last {} day(s) ({rows} rows): {} users for {} s…",
            args.window_days,
            args.readers.users,
            args.readers.walk_duration.as_secs()
        );
        let config = args.readers.config(&api.url, key, until);
        let before = (CpuSample::take(api.pid()), Instant::now());
        let result = walks::walk(&config, args.window_days, rows).await?;
        anyhow::Ok(ReadPhase {
            replicas,
            walk: result,
            cores: servers.cores_since(&before, api.pid()),
        })
    }
    .await;
    api.stop().await;
    result
}

/// Everything on the started servers: the database and its history, the load, the walks.
async fn measure(
    args: &ReplicationArgs,
    primary: &EmbeddedCluster,
    standbys: &[EmbeddedCluster],
    logs: &std::path::Path,
) -> anyhow::Result<ReplicationReport> {
    let admin_url = primary.admin_url();
    let admin = bench_pool(&admin_url)?;
    let (started_at, history, facts) =
        layouts::started(&admin, args.history_days, args.history_rows).await?;
    let (url, pool, _) =
        layouts::prepare(&admin, &admin_url, Layout::Partitioned, &history).await?;
    admin.close().await;
    let servers = Servers::new(primary, standbys, url)?;
    let result = async {
        let key = layouts::readers_key(&pool, "bench-replication").await?;
        let rows = lab_layouts::rows_in_window(&pool, history.until, args.window_days).await?;
        servers.caught_up().await?;
        let (load, scenario) = load_phase(args, &servers, &facts, logs).await?;
        let mut reads = Vec::new();
        for replicas in 0..=servers.standby_urls.len() {
            let reader = (key.as_str(), history.until);
            reads.push(read_phase(args, &servers, reader, rows, replicas, logs).await?);
        }
        anyhow::Ok(ReplicationReport {
            format: replication::REPORT_FORMAT,
            started_at,
            finished_at: Utc::now(),
            machine: facts.clone(),
            standbys: servers.standby_urls.len(),
            history,
            walk: args.readers.settings(vec![args.window_days]),
            scenario: Some(scenario),
            services_env: layouts::services_env(),
            load,
            reads,
        })
    }
    .await;
    pool.close().await;
    servers.close().await;
    result
}

pub(super) async fn run(args: ReplicationArgs) -> anyhow::Result<()> {
    args.check()?;
    eprintln!(
        "starting a private durable PostgreSQL with {STANDBYS} streaming standbys (default settings)…"
    );
    let (primary, standbys) = EmbeddedCluster::start_with_standbys(
        EmbeddedOptions {
            durable: true,
            ..EmbeddedOptions::default()
        },
        STANDBYS,
    )
    .await
    .context("cannot start the embedded PostgreSQL with its standbys")?;
    let logs =
        std::env::temp_dir().join(format!("pmctl-bench-replication-{}", &random_token()[..8]));
    std::fs::create_dir_all(&logs)?;
    let result = measure(&args, &primary, &standbys, &logs).await;
    for cluster in standbys.into_iter().chain([primary]) {
        if let Err(error) = cluster.stop().await {
            tracing::warn!(%error, "an embedded PostgreSQL did not stop cleanly");
        }
    }
    let report = result.map_err(|e| e.context(format!("service logs in {}", logs.display())))?;
    let written = report::write_replication(&args.out, &report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
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
        "a standby missed heartbeats, or a read walk failed or saw another number of rows than \
         its window holds: see {}",
        written.markdown.display()
    );
    Ok(())
}

fn print_summary(r: &ReplicationReport) {
    use pm_lab::loadtest::latency::ms;
    if let Some(step) = r.load.writes.steps.first() {
        println!(
            "load: {:.0}/s offered, {:.0}/s achieved, p99 {} ms{}",
            step.offered_rate,
            step.achieved_rate,
            ms(step.p99_us),
            if step.passed {
                ""
            } else {
                " (missed the objective)"
            }
        );
    }
    for s in &r.load.standbys {
        let v = &s.visible_after;
        println!(
            "{}: visible after p50 {} ms, p99 {} ms, max {} ms; {} of {} heartbeats missing",
            s.standby,
            ms(v.p50_us),
            ms(v.p99_us),
            ms(v.max_us),
            s.missing,
            s.heartbeats
        );
    }
    for p in &r.reads {
        println!(
            "reads with {} replica(s): {:.0} pages/s, page p50 {} ms, p99 {} ms, {} walks; cores api {:.2}, primary {:.2}, standbys {}",
            p.replicas,
            p.walk.pages_per_second,
            ms(p.walk.pages.p50_us),
            ms(p.walk.pages.p99_us),
            p.walk.walks.count,
            p.cores.api,
            p.cores.primary,
            p.cores
                .standbys
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
