//! `pmctl bench`: the partitioning experiment and the machine's baselines, written to
//! `bench-results/` as JSON, Markdown and SVG, and printed as a table.
//!
//! Without a configured database both start a private embedded PostgreSQL. It runs with
//! PostgreSQL's default settings, `shared_buffers` = 128MB included (the embedded cluster
//! takes no server settings), so the 5M-row tables (~1 GiB each) do not fit in PostgreSQL's
//! cache and are read through the kernel's page cache — which is why pages touched, not
//! time, is the figure to compare. For `partitioning` the cluster is non-durable (fsync off:
//! it only makes the load faster; reads are unaffected); for `baseline` it is durable, since
//! a commit rate without fsync would not be a commit rate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_lab::baseline::{self, BaselineOptions};
use pm_lab::partitioning::{self, PartitioningOptions};
use pm_lab::report;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::ConnectOptions;

use crate::args::{duration, DatabaseArgs};

mod kafka;
mod layouts;
mod outbox;
mod replication;

/// Benchmarks whose results go to `bench-results/`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// The original partitioning experiment, extended: `dispute_events` unpartitioned without
    /// the (kind, created_at) index, with it, in daily pg_partman partitions, and in daily
    /// partitions clustered by kind as `partition-maintain --cluster-closed` leaves them; the
    /// original 5-day query and others, measured with EXPLAIN (ANALYZE, BUFFERS). Creates and
    /// drops the schemas bench_plain, bench_indexed, bench_partitioned, bench_clustered and
    /// bench_data.
    Partitioning(PartitioningArgs),
    /// The machine's limits: a bare HTTP server that only verifies and parses webhooks
    /// (ramped until it no longer keeps up), and PostgreSQL's single-row commit rate.
    Baseline(BaselineArgs),
    /// The Kafka consumer's apply rate on a backlog, by partition count and batch size,
    /// with the cores each process used (a local single-node Apache Kafka unless
    /// --kafka-brokers is given).
    Kafka(kafka::KafkaBenchArgs),
    /// The services on partitioned and on unpartitioned event tables, side by side: the
    /// same generated history in both (`migrate --layout`), a real `serve-api` on each,
    /// optionally a write sweep of a scenario's webhooks (--rates: the knee per layout),
    /// and the original project's read benchmark — Goose users paging through
    /// `GET /disputes/events` over the last 1 and 30 days (a closed model: each waits for
    /// its page). Every complete walk is checked to see every row of its window once.
    Layouts(layouts::LayoutsArgs),
    /// The outbox's two relays side by side — `pmctl outbox-relay` and Debezium — on the
    /// same writes: the rate each drains a backlog at, and the commit-to-consumer lag under
    /// a steady write rate; and the write path's cost of the outbox row (webhooks applied
    /// with the outbox on and off). Starts its own PostgreSQL (wal_level=logical), a local
    /// single-node Apache Kafka unless --kafka-brokers is given, and Debezium.
    Outbox(outbox::OutboxBenchArgs),
    /// Streaming replicas: how stale each of two standbys' reads are while the primary
    /// takes a steady webhook load near the sync-mode knee (a heartbeat written on the
    /// primary, polled on each standby: p50/p99/max), and the read walks of `bench layouts`
    /// through a `serve-api` given 0, 1 and 2 of them as `--database-replica-url`, with the
    /// CPU of each process. Starts its own durable PostgreSQL with two streaming standbys.
    Replication(replication::ReplicationArgs),
}

#[derive(Debug, clap::Args)]
struct PartitioningArgs {
    /// Where to run; without it, a private embedded PostgreSQL (thrown away afterwards).
    #[command(flatten)]
    db: DatabaseArgs,
    /// Rows of dispute_events.
    #[arg(long, default_value_t = 5_000_000)]
    rows: u64,
    /// Days the rows are spread over (one partition each); at least 5.
    #[arg(long, default_value_t = 31)]
    days: u32,
    /// Disputes the rows belong to; rows ÷ disputes must be between 3 and 12.
    #[arg(long, default_value_t = 500_000)]
    disputes: u64,
    /// Measured runs of each query on each layout (after one first run, reported apart).
    #[arg(long, default_value_t = 7)]
    runs: u32,
    /// Rows per page of the pagination query.
    #[arg(long, default_value_t = 1_000)]
    page_size: u32,
    /// Keep the benchmark's schemas afterwards, to explore the plans by hand (pointless
    /// with the embedded database, which is thrown away).
    #[arg(long)]
    keep: bool,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct BaselineArgs {
    /// The database whose commit rate is measured; without it, a private embedded
    /// PostgreSQL (durable: fsync on).
    #[command(flatten)]
    db: DatabaseArgs,
    /// Length of the final HTTP run at the rate found, and of the commit-rate run.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Concurrent HTTP connections and PostgreSQL sessions.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Length of each step of the HTTP ramp.
    #[arg(long, default_value = "3s", value_parser = duration)]
    step_duration: Duration,
    /// A ramp step whose p99 latency exceeds this is not sustained.
    #[arg(long, default_value = "50ms", value_parser = duration)]
    p99_limit: Duration,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Partitioning(a) => run_partitioning(a).await,
        BenchCommand::Baseline(a) => run_baseline(a).await,
        BenchCommand::Kafka(a) => kafka::run(a).await,
        BenchCommand::Layouts(a) => layouts::run(a).await,
        BenchCommand::Outbox(a) => outbox::run(a).await,
        BenchCommand::Replication(a) => replication::run(a).await,
    }
}

/// The configured database, or a fresh database `bench` in an embedded cluster (returned so
/// it lives as long as the benchmark).
async fn database(
    db: &DatabaseArgs,
    durable: bool,
) -> anyhow::Result<(String, Option<EmbeddedCluster>)> {
    if let Ok(url) = db.url() {
        return Ok((url, None));
    }
    let cluster = embedded(durable).await?;
    let admin = pm_storage::connect(&cluster.admin_url(), &Default::default())?;
    sqlx::query("CREATE DATABASE bench")
        .execute(&admin)
        .await
        .context("cannot create the benchmark database")?;
    admin.close().await;
    Ok((cluster.url_for("bench"), Some(cluster)))
}

/// A private PostgreSQL for a benchmark without a configured database (thrown away with it).
async fn embedded(durable: bool) -> anyhow::Result<EmbeddedCluster> {
    eprintln!(
        "no database configured: starting a private PostgreSQL ({}; default settings, shared_buffers 128MB)",
        if durable { "durable" } else { "non-durable" }
    );
    EmbeddedCluster::start(EmbeddedOptions {
        durable,
        ..EmbeddedOptions::default()
    })
    .await
    .context("cannot start the embedded PostgreSQL (or set PM_DATABASE_URL)")
}

/// A small pool without sqlx's slow-statement warnings: in a benchmark every load statement
/// is slow on purpose, and the progress bar says what is happening.
fn bench_pool(url: &str) -> anyhow::Result<pm_storage::PgPool> {
    let options: PgConnectOptions = url.parse().context("invalid database URL")?;
    let options = options
        .application_name("pmctl-bench")
        .options([("timezone", "UTC")])
        .disable_statement_logging();
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy_with(options))
}

fn command_line() -> String {
    crate::secrets::redacted_command_line().join(" ")
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{msg:34} [{bar:40.cyan/blue}] {human_pos}/{human_len} ({elapsed_precise})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

async fn run_partitioning(args: PartitioningArgs) -> anyhow::Result<()> {
    let (url, cluster) = database(&args.db, false).await?;
    let pool = bench_pool(&url)?;
    let opts = PartitioningOptions {
        rows: args.rows,
        days: args.days,
        disputes: args.disputes,
        runs: args.runs,
        page_size: args.page_size,
        keep: args.keep,
        command_line: command_line(),
        revision: crate::BUILD.revision.to_owned(),
    };
    let bar = progress_bar();
    let result = partitioning::run(&pool, &opts, &|p| {
        bar.set_message(p.stage.describe());
        bar.set_length(p.total);
        bar.set_position(p.done);
    })
    .await;
    bar.finish_and_clear();
    pool.close().await;
    if let Some(cluster) = cluster {
        // The data (several GiB) goes with it; a failure to stop is not the benchmark's.
        if let Err(error) = cluster.stop().await {
            tracing::warn!(%error, "the embedded PostgreSQL did not stop cleanly");
        }
    }
    let report = result?;
    let written = report::write_partitioning(&args.out, &report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report::partitioning_table(&report));
        println!(
            "load {:.0} s, queries {:.0} s; {}",
            report.setup.load_seconds,
            report.setup.query_seconds,
            report.machine.summary()
        );
        for t in &report.targets {
            println!(
                "target {}: ≥ {:.1}×, measured {:.1}× — {}",
                t.name,
                t.required,
                t.measured,
                if t.met { "met" } else { "MISSED" }
            );
        }
    }
    eprintln!(
        "wrote {}, {}, {}",
        written.json.display(),
        written.markdown.display(),
        written.svg.display()
    );
    Ok(())
}

async fn run_baseline(args: BaselineArgs) -> anyhow::Result<()> {
    let (url, cluster) = database(&args.db, true).await?;
    let opts = BaselineOptions {
        duration: args.duration,
        connections: args.connections,
        step_duration: args.step_duration,
        p99_limit: args.p99_limit,
        command_line: command_line(),
        revision: crate::BUILD.revision.to_owned(),
        ..BaselineOptions::default()
    };
    let quiet = args.json;
    let result = baseline::run(Some(&url), &opts, &|line| {
        if !quiet {
            eprintln!("{line}");
        }
    })
    .await;
    if let Some(cluster) = cluster {
        if let Err(error) = cluster.stop().await {
            tracing::warn!(%error, "the embedded PostgreSQL did not stop cleanly");
        }
    }
    let report = result?;
    let written = report::write_baseline(&args.out, &report)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report::baseline_table(&report));
        println!(
            "bare HTTP server: {:.0} requests/s sustained; PostgreSQL: {} commits/s; {}",
            report.http.max_sustainable_rps,
            report
                .postgres
                .as_ref()
                .map_or("–".to_owned(), |p| format!("{:.0}", p.commits_per_sec)),
            report.machine.summary()
        );
    }
    eprintln!(
        "wrote {}, {}, {}",
        written.json.display(),
        written.markdown.display(),
        written.svg.display()
    );
    Ok(())
}
