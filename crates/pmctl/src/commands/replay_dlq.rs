//! `pmctl replay-dlq`: inspect and replay dead-lettered webhooks.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use pm_kafka::dlq::ErrorClass;
use pm_kafka::replay::{self, DeadLetter, Filter, ReplayOptions, ReplaySummary};
use pm_kafka::Topics;

use crate::args::{time_or_age, KafkaArgs};

/// Inspect (`list`) and replay (`replay`) the dead-letter topics.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List dead letters (nothing is consumed).
    List(ListArgs),
    /// Republish dead letters to their original topic (or --to), once each: the replay
    /// has its own consumer group on the DLQ and resumes where an interrupted run stopped.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Which DLQ: `orders`, `disputes`, or a topic name; repeatable. Default: both.
    #[arg(long = "dlq")]
    dlq: Vec<String>,
    /// Only dead letters that first failed at or after this time (RFC 3339, or an age like `2h`).
    #[arg(long, value_parser = time_or_age)]
    since: Option<DateTime<Utc>>,
    /// Only dead letters that first failed before this time (RFC 3339, or an age like `30m`).
    #[arg(long, value_parser = time_or_age)]
    until: Option<DateTime<Utc>>,
    /// Only this error class.
    #[arg(long, value_parser = ["retryable", "permanent"])]
    error_class: Option<String>,
    /// Only dead letters whose error message contains this text.
    #[arg(long)]
    error_contains: Option<String>,
    /// Only messages with this key (the user id).
    #[arg(long)]
    key: Option<String>,
    /// Only this webhook type.
    #[arg(long = "type", value_parser = ["order", "chargeback"])]
    event_type: Option<String>,
    /// Act on at most this many dead letters.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    common: Common,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// Show what would be replayed; publish and commit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Messages per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Publish to this topic instead of each message's original topic.
    #[arg(long)]
    to: Option<String>,
    /// Skip messages already replayed this many times (a loop is visible in the
    /// `pm-replay-count` header).
    #[arg(long, default_value_t = replay::DEFAULT_MAX_REPLAYS)]
    max_replays: u32,
    /// Rescan the DLQ from its start instead of resuming after the last replay.
    #[arg(long)]
    from_beginning: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn filter(&self) -> Filter {
        Filter {
            since: self.since,
            until: self.until,
            error_class: self.error_class.as_deref().and_then(ErrorClass::parse),
            error_contains: self.error_contains.clone(),
            key: self.key.clone(),
            event_type: self.event_type.clone(),
            at: None,
        }
    }

    fn dlq_topics(&self) -> Vec<String> {
        let topics = self.kafka.topics();
        let chosen = if self.dlq.is_empty() {
            vec!["orders".to_owned(), "disputes".to_owned()]
        } else {
            self.dlq.clone()
        };
        chosen
            .into_iter()
            .map(|d| match d.as_str() {
                "orders" => Topics::dlq(&topics.orders),
                "disputes" => Topics::dlq(&topics.disputes),
                other => other.to_owned(),
            })
            .collect()
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::List(a) => list(a).await,
        Action::Replay(a) => replay_all(a).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let config = args.common.kafka.config("pmctl-replay-dlq")?;
    let filter = args.common.filter();
    let limit = args.common.limit.unwrap_or(usize::MAX);
    let mut all = Vec::new();
    for topic in args.common.dlq_topics() {
        let (config, filter, t) = (config.clone(), filter.clone(), topic.clone());
        let found = tokio::task::spawn_blocking(move || replay::list(&config, &t, &filter, limit))
            .await?
            .with_context(|| format!("cannot read {topic}"))?;
        all.extend(found.into_iter().map(|d| (topic.clone(), d)));
    }
    all.truncate(limit);
    if args.json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|(topic, d)| serde_json::json!({"dlq_topic": topic, "dead_letter": d}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header([
        "dlq",
        "offset",
        "key",
        "type",
        "class",
        "attempts",
        "replays",
        "first failed",
        "error",
    ]);
    for (topic, d) in &all {
        table.add_row(row(topic, d));
    }
    println!("{table}");
    println!("{} dead letter(s)", all.len());
    Ok(())
}

fn row(topic: &str, d: &DeadLetter) -> Vec<String> {
    let info = d.info.as_ref();
    vec![
        topic.to_owned(),
        format!("{}:{}", d.dlq_partition, d.dlq_offset),
        d.key.clone(),
        d.event_type.clone().unwrap_or_default(),
        info.map_or("?".to_owned(), |i| i.class.as_str().to_owned()),
        info.map_or("?".to_owned(), |i| i.attempts.to_string()),
        d.replay_count.to_string(),
        info.map_or("?".to_owned(), |i| {
            pm_domain::time::format(&i.first_failed_at)
        }),
        info.map_or("(no dead-letter headers)".to_owned(), |i| {
            i.error.chars().take(80).collect()
        }),
    ]
}

async fn replay_all(args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.common.kafka.config("pmctl-replay-dlq")?;
    let producer = pm_kafka::Producer::new(&config, Duration::from_secs(30))?;
    let cancel = crate::signals::on_shutdown();
    let opts = ReplayOptions {
        to: args.to.clone(),
        dry_run: args.dry_run,
        limit: args.common.limit,
        rate: args.rate,
        max_replays: args.max_replays,
        from_beginning: args.from_beginning,
        detached: false,
    };
    let mut table = Table::new();
    table.set_header(["dlq", "replayed", "skipped", "over max replays", "failed"]);
    let mut summaries = Vec::new();
    for topic in args.common.dlq_topics() {
        let bar = ProgressBar::new(0).with_message(topic.clone());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}) {prefix}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (config, filter, opts, producer, cancel, t, b) = (
            config.clone(),
            args.common.filter(),
            opts.clone(),
            producer.clone(),
            cancel.clone(),
            topic.clone(),
            bar.clone(),
        );
        let summary = tokio::task::spawn_blocking(move || {
            replay::replay(
                &config,
                &t,
                &filter,
                &opts,
                &producer,
                &cancel,
                |s: &ReplaySummary, total| {
                    b.set_length(total);
                    b.set_position((s.replayed + s.skipped + s.failed) as u64);
                    b.set_prefix(format!("replayed {}", s.replayed));
                },
            )
        })
        .await?
        .with_context(|| format!("replaying {topic}"))?;
        bar.finish_and_clear();
        table.add_row([
            topic.clone(),
            summary.replayed.to_string(),
            summary.skipped.to_string(),
            summary.over_max_replays.to_string(),
            summary.failed.to_string(),
        ]);
        summaries.push((topic, summary));
    }
    let failed: usize = summaries.iter().map(|(_, s)| s.failed).sum();
    if args.json {
        let items: Vec<serde_json::Value> = summaries
            .iter()
            .map(|(t, s)| serde_json::json!({"dlq_topic": t, "summary": s}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        if args.dry_run {
            let mut would = Table::new();
            would.set_header([
                "dlq",
                "offset",
                "key",
                "type",
                "class",
                "attempts",
                "replays",
                "first failed",
                "error",
            ]);
            for (t, s) in &summaries {
                for d in &s.messages {
                    would.add_row(row(t, d));
                }
            }
            println!("would replay:\n{would}");
        }
        println!("{table}");
        if args.dry_run {
            println!("--dry-run: nothing was published or committed");
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} message(s) could not be republished; run the replay again"
    );
    Ok(())
}
