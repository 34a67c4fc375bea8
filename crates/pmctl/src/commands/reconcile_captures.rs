//! `pmctl reconcile-captures`: settle captures whose provider answer was lost.

use comfy_table::Table;
use pm_api::captures::{self, ReconcileReport};

use crate::args::{CaptureArgs, DatabaseArgs, ProviderArgs};

/// Ask the provider's capture lookup about every capture whose outcome is unknown (its
/// answer was lost to a timeout, a reset or a 5xx, or its process died), and store what
/// it says. `serve-api` does the same every --capture-reconcile-interval; this runs one
/// pass now, for an operator or a cron job. Exits 1 when the provider could not be asked
/// about some capture (they stay open; run it again later).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    provider: ProviderArgs,
    #[command(flatten)]
    captures: CaptureArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-reconcile-captures")?;
    let provider = args.provider.client()?;
    let settings = args.captures.settings();
    let mut total = ReconcileReport::default();
    // Rounds of at most `batch` captures, until a round settles nothing new.
    loop {
        let round = captures::reconcile(&pool, &provider, settings, pm_domain::time::now()).await?;
        let settled = round.captured + round.not_captured;
        let full = i64::from(round.examined) >= settings.batch;
        total.examined += round.examined;
        total.captured += round.captured;
        total.not_captured += round.not_captured;
        total.left_open += round.left_open;
        total.errors.extend(round.errors);
        if !full || settled == 0 {
            break;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&total)?);
    } else {
        let mut table = Table::new();
        table.set_header([
            "open captures examined",
            "captured",
            "not captured",
            "left open",
            "provider errors",
        ]);
        table.add_row([
            total.examined.to_string(),
            total.captured.to_string(),
            total.not_captured.to_string(),
            total.left_open.to_string(),
            total.errors.len().to_string(),
        ]);
        println!("{table}");
        for e in &total.errors {
            println!("  {e}");
        }
    }
    if !total.errors.is_empty() {
        anyhow::bail!(
            "{} capture(s) stay open: the provider could not be asked; run again later",
            total.errors.len()
        );
    }
    Ok(())
}
