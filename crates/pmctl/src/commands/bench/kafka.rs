//! `pmctl bench kafka`: how fast `serve-api --mode kafka` applies a backlog, by partition
//! count and batch size.
//!
//! For each combination: a fresh durable embedded PostgreSQL (so every run starts from the
//! same empty tables), fresh topics, a backlog of order webhooks produced the way ingest
//! produces them (envelopes keyed by user id), then a real `serve-api --mode kafka`
//! process. The apply rate is read from the consumer group's committed offsets — they move
//! only after the database transaction committed, so they count what is applied, and
//! reading them puts no load on the database. It is measured from the first commit to the
//! last (start-up excluded). The CPU each process group used over that window (from
//! `/proc`) says what saturates.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::{OrderWebhook, WebhookKind};
use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_kafka::group::GroupProgress;
use pm_kafka::local::KafkaTarget;
use pm_kafka::{headers, KafkaConfig, Producer, Topics};
use pm_lab::machine::{CoreShare, CpuSample};
use serde::Serialize;

use super::{command_line, progress_bar};

/// Measure the Kafka consumer's apply rate on a backlog, varying the partition count and
/// the batch size; writes bench-results/kafka-<time>.json and .md.
#[derive(Debug, clap::Args)]
pub(super) struct KafkaBenchArgs {
    /// An existing Kafka cluster; without it, a single-node Apache Kafka started here.
    #[arg(long = "kafka-brokers", env = "PM_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Webhooks in each backlog (order `created` and `success`, two per order).
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Distinct users (message keys).
    #[arg(long, default_value_t = 1_000)]
    users: u128,
    /// Partition counts to try.
    #[arg(long, value_delimiter = ',', default_value = "3,6")]
    partitions: Vec<i32>,
    /// Consumer batch sizes (messages per transaction) to try.
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    batch_sizes: Vec<usize>,
    /// Directory of the result files.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

/// One combination's result.
#[derive(Debug, Serialize)]
struct Run {
    partitions: i32,
    batch_size: usize,
    messages: usize,
    /// Messages per second applied, first commit to last.
    apply_rate: f64,
    /// The backlog was too small to see a first commit before the last: the rate is over
    /// the whole run, start-up included (use a bigger --messages).
    rate_includes_startup: bool,
    /// From starting serve-api to the last commit (start-up included), seconds.
    total_seconds: f64,
    /// Cores used over the measured window, by process group.
    cores: CoreUse,
}

#[derive(Debug, Default, Serialize)]
struct CoreUse {
    serve_api: f64,
    postgres: f64,
    kafka: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    started_at: chrono::DateTime<chrono::Utc>,
    command_line: String,
    /// The source revision of the binary (`-dirty` from an uncommitted tree).
    revision: String,
    kafka: String,
    cores: usize,
    runs: Vec<Run>,
}

pub(super) async fn run(args: KafkaBenchArgs) -> anyhow::Result<()> {
    let started_at = chrono::Utc::now();
    let kafka = KafkaTarget::given_or_started(args.brokers.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let brokers = kafka.brokers().to_owned();
    let mut runs = Vec::new();
    for &partitions in &args.partitions {
        for &batch_size in &args.batch_sizes {
            let run = one_run(&args, &brokers, partitions, batch_size).await?;
            eprintln!(
                "{partitions} partitions, batch {batch_size}: {:.0} messages/s applied \
                 (serve-api {:.2} cores, PostgreSQL {:.2}, Kafka {:.2})",
                run.apply_rate, run.cores.serve_api, run.cores.postgres, run.cores.kafka
            );
            runs.push(run);
        }
    }
    let report = Report {
        started_at,
        command_line: command_line(),
        revision: crate::BUILD.revision.to_owned(),
        kafka: kafka.describe(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        runs,
    };
    std::fs::create_dir_all(&args.out)?;
    let slug = pm_lab::report::timestamp_slug(started_at);
    let json = args.out.join(format!("kafka-{slug}.json"));
    let md = args.out.join(format!("kafka-{slug}.md"));
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(&md, markdown(&report))?;
    println!("{}", markdown(&report));
    println!("written: {} and {}", json.display(), md.display());
    kafka.release().await;
    Ok(())
}

async fn one_run(
    args: &KafkaBenchArgs,
    brokers: &str,
    partitions: i32,
    batch_size: usize,
) -> anyhow::Result<Run> {
    let db = EmbeddedCluster::start(EmbeddedOptions {
        durable: true,
        ..EmbeddedOptions::default()
    })
    .await
    .context("cannot start the embedded PostgreSQL")?;
    let url = db.admin_url();
    let pool = pm_storage::connect(&url, &Default::default())?;
    pm_storage::migrate::run(&pool).await?;
    pool.close().await;

    let prefix = format!(
        "bench-{partitions}p-{batch_size}b-{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let config = KafkaConfig::new(brokers, "pmctl-bench-kafka");
    let topics = Topics::with_prefix(&prefix);
    let mut settings = pm_kafka::topics::TopicSettings::with_partitions(partitions);
    settings.replication_factor = Some(1);
    pm_kafka::topics::ensure_topics(&config, &topics, &settings).await?;
    produce_backlog(&config, &topics.orders, args.messages, args.users).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe().context("cannot find the pmctl executable")?;
    let mut api = tokio::process::Command::new(exe)
        .args(["serve-api", "--mode", "kafka", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("PM_DATABASE_URL", &url)
        .env("PM_KAFKA_BROKERS", brokers)
        .env("PM_KAFKA_TOPIC_PREFIX", &prefix)
        .env("PM_KAFKA_BATCH_SIZE", batch_size.to_string())
        .env("PM_WEBHOOK_SECRETS", "whsec_bench")
        .env("PM_LOG", "warn,librdkafka=off")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start serve-api")?;
    let started = Instant::now();
    let group = format!("{prefix}{}", pm_kafka::topics::ORDERS_GROUP);
    let progress = {
        let (config, topic) = (config.clone(), topics.orders.clone());
        std::sync::Arc::new(
            tokio::task::spawn_blocking(move || GroupProgress::new(&config, &group, &topic))
                .await??,
        )
    };
    let bar = progress_bar();
    bar.set_length(args.messages as u64);
    bar.set_message(format!("{partitions} partitions, batch {batch_size}"));
    let mut first: Option<(Instant, u64, CpuSample)> = None;
    let deadline = started + Duration::from_secs(600);
    let done = loop {
        let applied = committed(&progress).await?;
        bar.set_position(applied);
        if first.is_none() && applied > 0 {
            first = Some((Instant::now(), applied, CpuSample::take(api.id())));
        }
        if applied >= args.messages as u64 {
            break (Instant::now(), CpuSample::take(api.id()));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backlog was not applied in 10 minutes ({applied} of {})",
            args.messages
        );
        if let Some(status) = api.try_wait()? {
            anyhow::bail!("serve-api exited early ({status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let _ = api.start_kill();
    let _ = api.wait().await;
    drop(db);

    let (t1, applied_at_t1, cpu1) = first.context("nothing was applied")?;
    let (t2, cpu2) = done;
    let total_seconds = t2.duration_since(started).as_secs_f64();
    let window = t2.duration_since(t1).as_secs_f64();
    let after_first = args.messages as u64 - applied_at_t1;
    // A backlog applied between two polls has no window: fall back to the whole run.
    let (apply_rate, includes_startup) = if after_first > 0 && window > 0.0 {
        (after_first as f64 / window, false)
    } else {
        (args.messages as f64 / total_seconds.max(0.001), true)
    };
    Ok(Run {
        partitions,
        batch_size,
        messages: args.messages,
        apply_rate,
        rate_includes_startup: includes_startup,
        total_seconds,
        cores: cpu2.since(&cpu1, window).into(),
    })
}

/// Produces `n` order webhooks (a `created` and a `success` per order) as ingest would.
async fn produce_backlog(
    config: &KafkaConfig,
    topic: &str,
    n: usize,
    users: u128,
) -> anyhow::Result<()> {
    let producer = Producer::new(config, Duration::from_secs(60))?;
    let bar = progress_bar();
    bar.set_length(n as u64);
    bar.set_message("producing the backlog");
    let now = pm_domain::time::now();
    let messages: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let order = i / 2;
            let user = uuid::Uuid::from_u128(1 + order as u128 % users.max(1));
            let status = if i % 2 == 0 { "created" } else { "success" };
            let json = format!(
                r#"{{"provider_event_id":"bench-{i}","order_id":"bench-o{order}","user_id":"{user}","status":"{status}","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:0{}Z"}}"#,
                i % 2
            );
            let w = OrderWebhook::parse(json.as_bytes())
                .map_err(|e| anyhow::anyhow!("a generated webhook is invalid: {e}"))?;
            let envelope = WebhookEnvelope::new(WebhookKind::Order, &w, now)?;
            Ok((user.to_string(), serde_json::to_vec(&envelope)?))
        })
        .collect::<anyhow::Result<_>>()?;
    for chunk in messages.chunks(2_000) {
        let sends = chunk.iter().map(|(key, value)| {
            let h = headers::build([(headers::EVENT_TYPE, WebhookKind::Order.as_str())]);
            producer.send(topic, key.as_bytes(), value, h)
        });
        for sent in futures::future::join_all(sends).await {
            sent.context("producing the backlog")?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Messages of the orders topic that the group has committed.
async fn committed(progress: &std::sync::Arc<GroupProgress>) -> anyhow::Result<u64> {
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        progress
            .committed()
            .map_err(|e| anyhow::anyhow!("cannot read the committed offsets: {e}"))
    })
    .await?
}

impl From<CoreShare> for CoreUse {
    fn from(c: CoreShare) -> CoreUse {
        CoreUse {
            serve_api: c.service,
            postgres: c.postgres,
            kafka: c.kafka,
        }
    }
}

fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# Kafka consumer apply rate on a backlog\n\n{} · {} cores · revision {} · `{}`\n\n\
         | partitions | batch size | messages | applied/s | total s | serve-api cores | PostgreSQL cores | Kafka cores |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.kafka, r.cores, r.revision, r.command_line
    );
    for run in &r.runs {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} |\n",
            run.partitions,
            run.batch_size,
            run.messages,
            run.apply_rate,
            run.total_seconds,
            run.cores.serve_api,
            run.cores.postgres,
            run.cores.kafka
        ));
    }
    out
}
