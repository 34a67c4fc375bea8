//! `pmctl analytics`: the analytics read models as tables (or the API's JSON).

use std::time::Duration;

use chrono::NaiveDate;
use comfy_table::Table;
use pm_storage::analytics::{self, Days};

use crate::args::DatabaseArgs;

/// Show the analytics read models that `pmctl project-analytics` builds from the domain
/// events: orders created per UTC day, captures per day and currency (declines counted
/// too), dispute outcomes per reason with their win rate, and the time from a dispute's
/// opening to its decision (mean, p50, p90). The same numbers as `GET /analytics/orders`,
/// `/analytics/captures` and `/analytics/disputes`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// First UTC day shown (inclusive), e.g. `2026-01-31`.
    #[arg(long, value_parser = day)]
    from: Option<NaiveDate>,
    /// The UTC day after the last one shown (exclusive).
    #[arg(long, value_parser = day)]
    to: Option<NaiveDate>,
    /// Print JSON — `orders`, `captures` and `disputes` as the API answers them, and
    /// `inbox` (events projected and skipped) — instead of tables.
    #[arg(long)]
    json: bool,
}

fn day(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("expected a day such as 2026-01-31 (got {s:?})"))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if from >= to {
            return Err(crate::exit::Usage("--from must be earlier than --to".to_owned()).into());
        }
    }
    let days = Days {
        from: args.from,
        to: args.to,
    };
    let pool = args.db.pool("pmctl-analytics")?;
    let orders = analytics::order_days(&pool, days).await?;
    let captures = analytics::capture_days(&pool, days).await?;
    let outcomes = analytics::dispute_outcomes(&pool, days).await?;
    let times = analytics::decision_times(&pool, days).await?;
    let inbox = analytics::inbox_counts(&pool).await?;
    pool.close().await;
    if args.json {
        let doc = serde_json::json!({
            "orders": pm_api::dto::order_volume(orders),
            "captures": pm_api::dto::capture_volume(captures),
            "disputes": pm_api::dto::dispute_analytics(outcomes, times),
            "inbox": {"projected": inbox.projected, "skipped": inbox.skipped},
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }

    let mut table = Table::new();
    table.set_header(["day", "orders created"]);
    for d in &orders {
        table.add_row([d.day.to_string(), d.orders_created.to_string()]);
    }
    println!("Orders created per day\n{table}\n");

    let mut table = Table::new();
    table.set_header([
        "day", "currency", "captured", "amount", "declined", "amount",
    ]);
    for d in &captures {
        table.add_row([
            d.day.to_string(),
            d.currency.code().to_owned(),
            d.captured.to_string(),
            d.currency.format_minor_units(d.captured_minor),
            d.failed.to_string(),
            d.currency.format_minor_units(d.failed_minor),
        ]);
    }
    println!("Captures per day\n{table}\n");

    let mut table = Table::new();
    table.set_header(["reason", "won", "lost", "win rate"]);
    for o in &outcomes {
        table.add_row([
            o.reason.clone(),
            o.won.to_string(),
            o.lost.to_string(),
            format!("{:.1} %", o.win_rate() * 100.0),
        ]);
    }
    println!("Dispute outcomes\n{table}\n");

    let mut table = Table::new();
    table.set_header(["decided", "mean", "p50", "p90"]);
    table.add_row([
        times.count.to_string(),
        seconds(times.mean_seconds),
        seconds(times.p50_seconds),
        seconds(times.p90_seconds),
    ]);
    println!("Time from opening to decision\n{table}\n");
    println!(
        "inbox: {} event(s) projected, {} skipped (unknown type or version)",
        inbox.projected, inbox.skipped
    );
    Ok(())
}

/// A duration in seconds as people read it (`1h 30m`), to the second.
fn seconds(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => {
            humantime::format_duration(Duration::from_secs(s.round() as u64)).to_string()
        }
        Some(s) => format!("{s} s"),
        None => "-".to_owned(),
    }
}
