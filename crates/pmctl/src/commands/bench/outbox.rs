//! `pmctl bench outbox`: the outbox's two relays side by side — how fast each drains a
//! backlog and how long an event takes from its transaction to a consumer under a steady
//! write rate — and what writing the outbox row costs the write path.
//!
//! Relays: for each, a fresh durable embedded PostgreSQL with `wal_level = logical` (both
//! relays run on the same server settings), fresh topics, and a reader tailing
//! `domain-events` from its beginning that notes when each event id first arrives. The
//! polling relay is a real `pmctl outbox-relay` process; Debezium is `scripts/debezium.sh`'s
//! Kafka Connect worker. First a backlog is written with the relay stopped (Debezium's slot
//! exists, the worker is killed), then the relay starts: the drain rate is counted from the
//! first event read to the last. Then order webhooks are applied at a steady rate, one
//! transaction each, and each event's lag is its arrival at the reader minus its
//! `occurred_at` (taken just before its transaction; same clock). The CPU each process group
//! used over the steady window says what saturates.
//!
//! Write path: the same order webhooks applied by concurrent writers, one transaction each,
//! in a fresh database with the outbox on and with it off (the session setting
//! `pm.bench_without_outbox`, see `pm_storage::outbox`), alternating, so drift on a shared
//! machine hits both: webhooks per second, latency and WAL per webhook.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use pm_domain::webhook::OrderWebhook;
use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_kafka::debezium::{DebeziumOptions, LocalDebezium};
use pm_kafka::local::KafkaTarget;
use pm_kafka::{KafkaConfig, Topics};
use pm_lab::loadtest::latency::{self, LatencySummary};
use pm_lab::machine::{CoreShare, CpuSample};
use pm_storage::webhooks::{apply_order_tx, Delivery};
use pm_storage::PgPool;
use serde::Serialize;

use super::{command_line, progress_bar};
use crate::args::duration;

/// Compare the outbox relays (drain rate, commit-to-consumer lag) and the outbox's cost on
/// the write path; writes bench-results/outbox-<time>.json and .md.
#[derive(Debug, clap::Args)]
pub(super) struct OutboxBenchArgs {
    /// An existing Kafka cluster; without it, a single-node Apache Kafka started here.
    #[arg(long = "kafka-brokers", env = "PM_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// The relays to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "polling,debezium"
    )]
    relays: Vec<Relay>,
    /// Events in the backlog each relay drains (order webhooks `created` then `success`:
    /// one event each).
    #[arg(long, default_value_t = 20_000)]
    backlog: usize,
    /// Events per second written while the lag is measured (one order webhook, one
    /// transaction, one event each).
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// How long the steady rate is kept.
    #[arg(long, default_value = "20s", value_parser = duration)]
    duration: Duration,
    /// The polling relay's batch (`--outbox-batch`).
    #[arg(long, default_value_t = 500)]
    relay_batch: i64,
    /// Webhooks each write-path run applies; 0 skips the write-path comparison.
    #[arg(long, default_value_t = 20_000)]
    writes: usize,
    /// Concurrent writers (sessions) of the write-path comparison.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Runs of each write-path variant, alternating (without, with, without, with…).
    #[arg(long, default_value_t = 2)]
    write_rounds: usize,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Relay {
    /// `pmctl outbox-relay`: polls the outbox, marks what it published.
    Polling,
    /// Debezium's PostgreSQL connector: reads the WAL.
    Debezium,
}

impl Relay {
    fn name(self) -> &'static str {
        match self {
            Relay::Polling => "polling (pmctl outbox-relay)",
            Relay::Debezium => "Debezium",
        }
    }
}

#[derive(Debug, Serialize)]
struct RelayRun {
    relay: Relay,
    backlog: usize,
    /// Events per second, from the first event of the backlog read to the last.
    drain_rate: f64,
    /// From starting the relay to the last backlog event read, seconds (start-up included).
    drain_seconds: f64,
    /// The steady rate offered and achieved (events written per second).
    offered_rate: u32,
    achieved_rate: f64,
    /// Commit-to-consumer lag of the steady events.
    lag: LatencySummary,
    /// Steady events never read within 60 s of the end (should be 0).
    missing: usize,
    /// Cores used over the steady window: `service` is the relay process.
    cores: CoreShare,
}

#[derive(Debug, Serialize)]
struct WriteRun {
    outbox: bool,
    webhooks: usize,
    writers: usize,
    rate: f64,
    latency: LatencySummary,
    wal_bytes_per_webhook: f64,
    cores: CoreShare,
}

#[derive(Debug, Serialize)]
struct Report {
    started_at: DateTime<Utc>,
    command_line: String,
    revision: String,
    kafka: String,
    debezium: String,
    cores: usize,
    relays: Vec<RelayRun>,
    write_path: Vec<WriteRun>,
}

pub(super) async fn run(args: OutboxBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0, "--rate must be at least 1");
    anyhow::ensure!(args.backlog >= 2, "--backlog must be at least 2");
    let started_at = Utc::now();
    let mut write_path = Vec::new();
    for round in 0..args.write_rounds {
        if args.writes == 0 {
            break;
        }
        for outbox in [false, true] {
            let run = write_run(&args, outbox).await?;
            eprintln!(
                "write path, round {}, outbox {}: {:.0} webhooks/s, p99 {}, {:.0} B WAL/webhook",
                round + 1,
                if outbox { "on" } else { "off" },
                run.rate,
                latency::ms(run.latency.p99_us),
                run.wal_bytes_per_webhook
            );
            write_path.push(run);
        }
    }
    let kafka = KafkaTarget::given_or_started(args.brokers.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut relays = Vec::new();
    for &relay in &args.relays {
        let run = relay_run(&args, kafka.brokers(), relay).await;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                kafka.release().await;
                return Err(e.context(format!("the {} run failed", relay.name())));
            }
        };
        eprintln!(
            "{}: drains {:.0} events/s; at {}/s lag p50 {} p99 {} max {}",
            relay.name(),
            run.drain_rate,
            args.rate,
            latency::ms(run.lag.p50_us),
            latency::ms(run.lag.p99_us),
            latency::ms(run.lag.max_us)
        );
        relays.push(run);
    }
    let report = Report {
        started_at,
        command_line: command_line(),
        revision: crate::BUILD.revision.to_owned(),
        kafka: kafka.describe(),
        debezium: format!(
            "Debezium {} on Kafka Connect {} (standalone)",
            pm_kafka::debezium::debezium_version(),
            pm_kafka::local::kafka_version()
        ),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        relays,
        write_path,
    };
    kafka.release().await;
    std::fs::create_dir_all(&args.out)?;
    let slug = pm_lab::report::timestamp_slug(started_at);
    let json = args.out.join(format!("outbox-{slug}.json"));
    let md = args.out.join(format!("outbox-{slug}.md"));
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(&md, markdown(&report))?;
    println!("{}", markdown(&report));
    println!("written: {} and {}", json.display(), md.display());
    Ok(())
}

/// A fresh durable cluster with the schema; with `logical` Debezium can read it.
async fn database(logical: bool) -> anyhow::Result<EmbeddedCluster> {
    let db = EmbeddedCluster::start(EmbeddedOptions {
        durable: true,
        logical_replication: logical,
        ..EmbeddedOptions::default()
    })
    .await
    .context("cannot start the embedded PostgreSQL")?;
    let pool = pm_storage::connect(&db.admin_url(), &Default::default())?;
    pm_storage::migrate::run(&pool).await?;
    pool.close().await;
    Ok(db)
}

fn pool(url: &str, connections: usize) -> anyhow::Result<PgPool> {
    Ok(pm_storage::connect(
        url,
        &pm_storage::PoolOptions {
            max_connections: u32::try_from(connections).unwrap_or(u32::MAX),
            ..Default::default()
        },
    )?)
}

/// The order webhook number `i` of a run: orders `o{i/2}`, `created` then `success`.
fn webhook(tag: &str, i: usize) -> anyhow::Result<OrderWebhook> {
    let (order, success) = (i / 2, i % 2 == 1);
    let json = format!(
        r#"{{"provider_event_id":"{tag}-{i}","order_id":"{tag}-o{order}","user_id":"{}","status":"{}","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:0{}Z"}}"#,
        uuid::Uuid::from_u128(1 + order as u128 % 1_000),
        if success { "success" } else { "created" },
        u8::from(success)
    );
    OrderWebhook::parse(json.as_bytes())
        .map_err(|e| anyhow::anyhow!("a generated webhook is invalid: {e}"))
}

async fn write_run(args: &OutboxBenchArgs, outbox: bool) -> anyhow::Result<WriteRun> {
    let db = database(false).await?;
    let url = if outbox {
        db.admin_url()
    } else {
        format!(
            "{}?options=-c%20{}%3Don",
            db.admin_url(),
            pm_storage::outbox::BENCH_WITHOUT_OUTBOX
        )
    };
    let writers = args.writers.max(1);
    let pool = pool(&url, writers)?;
    let wal = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&pool)
            .await
    };
    let wal_before = wal(pool.clone()).await?;
    // Each writer takes whole orders (created, then success), so no two sessions touch one.
    let orders = args.writes.div_ceil(2);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_before = CpuSample::take(None);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (pool, next) = (pool.clone(), next.clone());
            tokio::spawn(async move {
                let mut h = latency::new_histogram()?;
                loop {
                    let order = next.fetch_add(1, Ordering::Relaxed);
                    if order >= orders {
                        return anyhow::Ok(h);
                    }
                    for i in [2 * order, 2 * order + 1] {
                        let w = webhook("w", i)?;
                        let t = Instant::now();
                        apply_order_tx(&pool, &w, &Delivery::now()).await?;
                        latency::record(&mut h, t.elapsed());
                    }
                }
            })
        })
        .collect();
    let mut histogram = latency::new_histogram()?;
    for task in tasks {
        histogram.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cores = CpuSample::take(None).since(&cpu_before, elapsed);
    let wal_after = wal(pool.clone()).await?;
    let wal_bytes: f64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8")
            .bind(&wal_after)
            .bind(&wal_before)
            .fetch_one(&pool)
            .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        (events > 0) == outbox,
        "the outbox holds {events} events with the outbox {}",
        if outbox { "on" } else { "off" }
    );
    pool.close().await;
    drop(db);
    let webhooks = orders * 2;
    Ok(WriteRun {
        outbox,
        webhooks,
        writers,
        rate: webhooks as f64 / elapsed,
        latency: LatencySummary::of(&histogram)?,
        wal_bytes_per_webhook: wal_bytes / webhooks as f64,
        cores,
    })
}

/// When each event id was first read, and when it occurred.
type Arrivals = Arc<Mutex<HashMap<String, (DateTime<Utc>, Option<DateTime<Utc>>)>>>;

/// Tails `topic` on a thread of its own until `stop`, noting first arrivals.
fn tail(
    config: KafkaConfig,
    topic: String,
    stop: Arc<AtomicBool>,
    arrivals: Arrivals,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let tail = pm_kafka::tail::Tail::from_beginning(&config, &topic)?;
        while !stop.load(Ordering::Relaxed) {
            let Some(message) = tail.next(Duration::from_millis(100)) else {
                continue;
            };
            let now = Utc::now();
            let message = message?;
            let value: serde_json::Value =
                serde_json::from_slice(pm_kafka::tail::payload(&message))
                    .context("a domain event that is not JSON")?;
            let id = value["event_id"]
                .as_str()
                .context("a domain event without event_id")?
                .to_owned();
            let occurred = value["occurred_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            let mut arrivals = arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            arrivals.entry(id).or_insert((now, occurred));
        }
        Ok(())
    })
}

/// The relay under test, running.
enum Running {
    Polling(tokio::process::Child),
    Debezium(LocalDebezium),
}

impl Running {
    fn pid(&self) -> Option<u32> {
        match self {
            Running::Polling(child) => child.id(),
            Running::Debezium(d) => d.pid(),
        }
    }
}

async fn relay_run(
    args: &OutboxBenchArgs,
    brokers: &str,
    relay: Relay,
) -> anyhow::Result<RelayRun> {
    let db = database(true).await?;
    let url = db.admin_url();
    let pool = pool(&url, 16)?;
    let prefix = format!(
        "bench-outbox-{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = KafkaConfig::new(brokers, "pmctl-bench-outbox");
    let topics = Topics::with_prefix(&prefix);
    let mut settings = pm_kafka::topics::TopicSettings::with_partitions(3);
    settings.replication_factor = Some(1);
    pm_kafka::topics::ensure_topics(&config, &topics, &settings).await?;

    // Debezium's slot must exist before the backlog is written; the worker is then killed so
    // that the backlog waits for it, as it waits for the polling relay not yet started.
    let mut debezium = None;
    if relay == Relay::Debezium {
        let options = DebeziumOptions {
            database_url: url.clone(),
            brokers: brokers.to_owned(),
            topic: topics.domain_events.clone(),
            slot: "pm_bench_outbox".to_owned(),
        };
        let d = tokio::task::spawn_blocking(move || {
            let d = LocalDebezium::start(&options)?;
            d.kill()?;
            Ok::<_, String>(d)
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        debezium = Some(d);
    }

    let bar = progress_bar();
    bar.set_length(args.backlog as u64);
    bar.set_message(format!("{}: writing the backlog", relay.name()));
    let next = Arc::new(AtomicUsize::new(0));
    let orders = args.backlog.div_ceil(2);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, next, bar) = (pool.clone(), next.clone(), bar.clone());
            tokio::spawn(async move {
                loop {
                    let order = next.fetch_add(1, Ordering::Relaxed);
                    if order >= orders {
                        return anyhow::Ok(());
                    }
                    for i in [2 * order, 2 * order + 1] {
                        apply_order_tx(&pool, &webhook("b", i)?, &Delivery::now()).await?;
                    }
                    bar.inc(2);
                }
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    bar.finish_and_clear();
    let backlog = orders * 2;

    let arrivals: Arrivals = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tail(
        config.clone(),
        topics.domain_events.clone(),
        stop.clone(),
        arrivals.clone(),
    );
    let started = Instant::now();
    let running = match debezium {
        Some(mut d) => {
            d = tokio::task::spawn_blocking(move || d.resume().map(|()| d))
                .await?
                .map_err(anyhow::Error::msg)?;
            Running::Debezium(d)
        }
        None => {
            let exe = std::env::current_exe().context("cannot find the pmctl executable")?;
            let child = tokio::process::Command::new(exe)
                .args(["outbox-relay", "--outbox-batch"])
                .arg(args.relay_batch.to_string())
                .env("PM_DATABASE_URL", &url)
                .env("PM_KAFKA_BROKERS", brokers)
                .env("PM_KAFKA_TOPIC_PREFIX", &prefix)
                .env("PM_LOG", "warn,librdkafka=off")
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start pmctl outbox-relay")?;
            Running::Polling(child)
        }
    };
    let result = measure(args, &pool, &arrivals, &running, backlog, started, relay).await;
    stop.store(true, Ordering::Relaxed);
    let read = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the topic reader panicked"))?;
    match running {
        Running::Polling(mut child) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        Running::Debezium(d) => {
            tokio::task::spawn_blocking(move || drop(d)).await?;
        }
    }
    pool.close().await;
    drop(db);
    read?;
    result
}

async fn measure(
    args: &OutboxBenchArgs,
    pool: &PgPool,
    arrivals: &Arrivals,
    running: &Running,
    backlog: usize,
    started: Instant,
    relay: Relay,
) -> anyhow::Result<RelayRun> {
    let seen = || {
        arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    };
    let bar = progress_bar();
    bar.set_length(backlog as u64);
    bar.set_message(format!("{}: draining the backlog", relay.name()));
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen() < backlog {
        bar.set_position(seen() as u64);
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backlog was not published in 10 minutes ({} of {backlog})",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let drain_seconds = started.elapsed().as_secs_f64();
    let (first, last) = {
        let a = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let times = a.values().map(|(at, _)| *at);
        (times.clone().min(), times.max())
    };
    let window = match (first, last) {
        (Some(f), Some(l)) => (l - f).to_std().unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };
    let drain_rate = if window > 0.0 {
        (backlog - 1) as f64 / window
    } else {
        backlog as f64 / drain_seconds
    };

    // The steady load: new orders at the rate, each its own transaction and event.
    let bar = progress_bar();
    let total = (f64::from(args.rate) * args.duration.as_secs_f64()).ceil() as usize;
    bar.set_length(total as u64);
    bar.set_message(format!("{}: {} events/s", relay.name(), args.rate));
    let steady_start = Instant::now();
    let cpu_before = CpuSample::take(running.pid());
    let mut written = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while written < total {
        ticker.tick().await;
        let due =
            ((steady_start.elapsed().as_secs_f64() * f64::from(args.rate)) as usize).min(total);
        let batch: Vec<_> = (written..due)
            .map(|n| {
                let pool = pool.clone();
                async move {
                    // Even numbers: each a `created`, so each a new order and one event.
                    let w = webhook("s", 2 * n)?;
                    apply_order_tx(&pool, &w, &Delivery::now()).await?;
                    anyhow::Ok(())
                }
            })
            .collect();
        for r in futures::future::join_all(batch).await {
            r?;
        }
        written = due;
        bar.set_position(written as u64);
    }
    let steady_seconds = steady_start.elapsed().as_secs_f64();
    let cores = CpuSample::take(running.pid()).since(&cpu_before, steady_seconds);
    bar.finish_and_clear();
    let expected = backlog + total;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut histogram = latency::new_histogram()?;
    let steady_ids: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT event_id::text FROM outbox WHERE aggregate_id LIKE 's-%'")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let mut missing = 0;
    {
        let a = arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in &steady_ids {
            match a.get(id) {
                Some((at, Some(occurred))) => {
                    latency::record(
                        &mut histogram,
                        (*at - *occurred).to_std().unwrap_or_default(),
                    );
                }
                _ => missing += 1,
            }
        }
    }
    Ok(RelayRun {
        relay,
        backlog,
        drain_rate,
        drain_seconds,
        offered_rate: args.rate,
        achieved_rate: total as f64 / steady_seconds,
        lag: LatencySummary::of(&histogram)?,
        missing,
        cores,
    })
}

fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# Outbox relays and the outbox's write-path cost\n\n{} · {} · {} cores · revision {} · `{}`\n\n",
        r.kafka, r.debezium, r.cores, r.revision, r.command_line
    );
    if !r.relays.is_empty() {
        out.push_str(
            "## Relays\n\n\
             | relay | backlog | drained/s | steady rate (achieved) | lag p50 | lag p99 | lag max | missing | relay cores | PostgreSQL cores | JVM cores |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for run in &r.relays {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {} ({:.0}) | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
                run.relay.name(),
                run.backlog,
                run.drain_rate,
                run.offered_rate,
                run.achieved_rate,
                latency::ms(run.lag.p50_us),
                latency::ms(run.lag.p99_us),
                latency::ms(run.lag.max_us),
                run.missing,
                run.cores.service,
                run.cores.postgres,
                run.cores.kafka
            ));
        }
        out.push_str(
            "\nLag: from the event's `occurred_at` (just before its transaction) to its first \
             arrival at a reader tailing the topic. Relay cores: the `outbox-relay` process or \
             Debezium's Connect worker; JVM cores: the broker.\n\n",
        );
    }
    if !r.write_path.is_empty() {
        out.push_str(
            "## Write path\n\n\
             | outbox | webhooks | writers | webhooks/s | p50 | p99 | WAL bytes/webhook | bench cores | PostgreSQL cores |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for run in &r.write_path {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.2} | {:.2} |\n",
                if run.outbox { "on" } else { "off" },
                run.webhooks,
                run.writers,
                run.rate,
                latency::ms(run.latency.p50_us),
                latency::ms(run.latency.p99_us),
                run.wal_bytes_per_webhook,
                run.cores.generator,
                run.cores.postgres
            ));
        }
    }
    out
}
