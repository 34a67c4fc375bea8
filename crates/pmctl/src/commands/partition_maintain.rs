//! `pmctl partition-maintain`: pg_partman maintenance and dedupe pruning, with a report.

use std::time::Duration;

use comfy_table::Table;
use pm_domain::time;
use pm_storage::partitions::{
    self, ClusterOutcome, MaintainOptions, MaintenanceReport, OutboxRelay,
};

use crate::args::{duration, DatabaseArgs};

/// Premake future partitions of the event tables, drop partitions past the retention,
/// prune the webhook dedupe table, and report. Schedule it (cron, systemd timer,
/// Kubernetes CronJob) at least daily: no pg_partman background worker is assumed.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Drop event partitions entirely older than this (e.g. `90d`). Applies to this run
    /// only; without it nothing is dropped.
    #[arg(long, env = "PM_PARTITION_RETENTION", value_parser = duration)]
    retention: Option<Duration>,
    /// Forget processed webhook ids older than this; at least 35d, since providers retry for
    /// up to 30 days and a forgotten id would let a late retry apply twice.
    #[arg(long, env = "PM_DEDUPE_KEEP", default_value = "35d", value_parser = duration)]
    dedupe_keep: Duration,
    /// Also rewrite every partition whose day is over, and that is not clustered yet, in
    /// `(kind, created_at)` order (`CLUSTER`), one at a time: reports that read one kind over
    /// a few days then touch a few contiguous pages instead of one page per row. Each
    /// partition is locked while it is rewritten (reads of that day wait; today's writes do
    /// not); with `--dry-run`, lists what would be clustered.
    #[arg(long, env = "PM_CLUSTER_CLOSED")]
    cluster_closed: bool,
    /// How long `--cluster-closed` waits for a partition's lock (a long report may hold it)
    /// before leaving that partition to the next run.
    #[arg(long, default_value = "5s", value_parser = duration, requires = "cluster_closed")]
    cluster_lock_timeout: Duration,
    /// Drop outbox partitions older than this once every domain event in them was published
    /// (a partition with an unpublished event is kept, and a warning logged).
    #[arg(long, env = "PM_OUTBOX_RETENTION", default_value = "7d", value_parser = duration)]
    outbox_retention: Duration,
    /// Which relay publishes the outbox: `polling` (`pmctl outbox-relay`, which marks what it
    /// published) or `debezium` (which marks nothing: old partitions are dropped by age,
    /// unless a logical replication slot of the database is inactive).
    #[arg(
        long,
        env = "PM_OUTBOX_PUBLISHED_BY",
        value_enum,
        default_value = "polling"
    )]
    outbox_published_by: RelayArg,
    /// Forget events the analytics projection's inbox recorded longer ago than this. Keep it
    /// longer than the `domain-events` topic's retention: an event replayed from the topic
    /// after its inbox row is gone would be counted again.
    #[arg(long, env = "PM_ANALYTICS_INBOX_KEEP", default_value = "35d", value_parser = duration)]
    analytics_inbox_keep: Duration,
    /// Report what exists; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RelayArg {
    Polling,
    Debezium,
}

impl From<RelayArg> for OutboxRelay {
    fn from(r: RelayArg) -> OutboxRelay {
        match r {
            RelayArg::Polling => OutboxRelay::Polling,
            RelayArg::Debezium => OutboxRelay::Debezium,
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-partition-maintain")?;
    let opts = MaintainOptions {
        retention: args.retention,
        dedupe_keep: args.dedupe_keep,
        dry_run: args.dry_run,
        cluster_closed: args.cluster_closed.then_some(args.cluster_lock_timeout),
        outbox_retention: args.outbox_retention,
        outbox_relay: args.outbox_published_by.into(),
        analytics_inbox_keep: args.analytics_inbox_keep,
    };
    let report = partitions::maintain(&pool, &opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, args.dry_run);
    }
    for t in report.tables.iter().filter(|t| t.default_rows > 0) {
        tracing::warn!(
            table = %t.table,
            rows = t.default_rows,
            "rows in the default partition: a partition was missing when they arrived; move them with pg_partman's partition_data_proc"
        );
    }
    Ok(())
}

fn print_report(report: &MaintenanceReport, dry_run: bool) {
    let mut table = Table::new();
    table.set_header([
        "table",
        "partitions",
        "oldest",
        "covered until",
        "rows in default",
        "created",
        "dropped",
    ]);
    let day =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_owned(), |t| time::format(&t));
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join("\n")
        }
    };
    let event_tables = report
        .tables
        .iter()
        .any(|t| partitions::PARTITIONED_TABLES.contains(&t.table.as_str()));
    if !event_tables {
        println!("the event tables are unpartitioned (`pmctl migrate --layout`): only the outbox has partitions to maintain");
    }
    for t in &report.tables {
        table.add_row([
            t.table.clone(),
            t.partitions.to_string(),
            day(t.oldest),
            day(t.newest_until),
            t.default_rows.to_string(),
            list(&t.created),
            list(&t.dropped),
        ]);
    }
    if !report.tables.is_empty() {
        println!("{table}");
    }
    if !report.clustered.is_empty() {
        let mut clustered = Table::new();
        clustered.set_header([
            "clustered on (kind, created_at)",
            "day",
            "rows",
            "pages",
            "took",
        ]);
        for c in &report.clustered {
            let (rows, pages, took) = match &c.outcome {
                ClusterOutcome::Clustered {
                    rows,
                    pages,
                    millis,
                } => (rows.to_string(), pages.to_string(), format!("{millis} ms")),
                ClusterOutcome::Busy => ("-".into(), "-".into(), "busy: next run".into()),
                ClusterOutcome::Pending => ("-".into(), "-".into(), "would cluster".into()),
            };
            clustered.add_row([c.partition.clone(), day(c.from), rows, pages, took]);
        }
        println!("{clustered}");
    }
    println!(
        "pg_partman {}; webhook dedupe: {} pruned, {} kept; analytics inbox: {} pruned{}",
        report.pg_partman_version,
        report.dedupe_pruned,
        report.dedupe_rows,
        report.inbox_pruned,
        if dry_run {
            " (--dry-run: nothing was changed)"
        } else {
            ""
        }
    );
}
