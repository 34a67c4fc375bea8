//! `pmctl verify`: compare a ledger with the database, through the API.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::Table;
use pm_lab::verify::{self, VerifyReport};
use pm_scenario::Ledger;

use crate::args::ApiArgs;

/// Compare a simulator ledger with what the API serves: orders and disputes by expected vs
/// actual status, events expected vs stored, duplicates suppressed, missing, unexpected.
/// Exits with 3 on any mismatch (1 when it cannot compare at all).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The ledger written by `pmctl simulate-provider` (or `pmctl demo`).
    #[arg(long)]
    ledger: PathBuf,
    /// The API to read from (a key with the `read` scope).
    #[command(flatten)]
    api: ApiArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.ledger)
        .with_context(|| format!("cannot read {}", args.ledger.display()))?;
    let ledger =
        Ledger::from_json(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.ledger.display()))?;
    let report = verify::verify(&args.api.access()?, &ledger).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    crate::exit::check(report.ok(), || {
        format!(
            "{} mismatch(es) between the ledger and the database",
            report.mismatches()
        )
    })
}

pub(crate) fn print_report(r: &VerifyReport) {
    let mut statuses = Table::new();
    statuses.set_header(["", "expected", "actual", "count", ""]);
    for (what, rows) in [("orders", &r.orders), ("disputes", &r.disputes)] {
        for row in rows.iter() {
            let mark = if row.expected == row.actual {
                "ok"
            } else {
                "MISMATCH"
            };
            statuses.add_row([
                what,
                row.expected.as_str(),
                row.actual.as_str(),
                &row.count.to_string(),
                mark,
            ]);
        }
    }
    println!("{statuses}");
    let mut events = Table::new();
    events.set_header([
        "events expected",
        "stored",
        "duplicate deliveries",
        "stored twice",
        "missing",
        "unexpected",
        "dispute details wrong",
    ]);
    events.add_row([
        r.events_expected.to_string(),
        r.events_stored.to_string(),
        format!(
            "{} (suppressed: {})",
            r.duplicates_delivered,
            if r.doubled.is_empty() {
                "all"
            } else {
                "NOT ALL"
            }
        ),
        r.doubled.len().to_string(),
        r.missing.len().to_string(),
        r.unexpected.len().to_string(),
        r.dispute_mismatches.len().to_string(),
    ]);
    println!("{events}");
    for (what, ids) in [
        ("stored twice", &r.doubled),
        ("missing", &r.missing),
        ("unexpected", &r.unexpected),
        ("dispute", &r.dispute_mismatches),
    ] {
        for id in ids.iter().take(10) {
            println!("{what}: {id}");
        }
    }
    if r.ok() {
        println!("verify: OK — nothing lost, nothing doubled");
    } else {
        println!("verify: {} MISMATCH(ES)", r.mismatches());
    }
}
