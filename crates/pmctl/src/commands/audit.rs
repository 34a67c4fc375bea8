//! `pmctl audit`: read the audit trail of operator actions.

use chrono::{DateTime, Utc};
use comfy_table::Table;
use pm_domain::pagination::{PageRequest, Sort};
use pm_storage::audit::{self, AuditFilter};

use crate::args::{time_or_age, DatabaseArgs};

/// Show the audit trail, newest first: who (API key name, `reconciliation`, `cli:…`) did
/// what to which order, dispute or key, when, with which correlation id, and how it ended.
/// The same rows as `GET /audit` (scope admin).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Only this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (repeatable), e.g. `capture_settled`.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// Only this object: `order:<id>`, `dispute:<id>` or `api_key:<name>`.
    #[arg(long, value_parser = object)]
    object: Option<(String, String)>,
    /// Only actions at or after this time (RFC 3339, or an age like `2h`).
    #[arg(long, value_parser = time_or_age)]
    since: Option<DateTime<Utc>>,
    /// Most rows shown.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

fn object(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((t @ ("order" | "dispute" | "api_key"), id)) if !id.is_empty() => {
            Ok((t.to_owned(), id.to_owned()))
        }
        _ => Err("expected order:<id>, dispute:<id> or api_key:<name>".to_owned()),
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-audit")?;
    let filter = AuditFilter {
        actor: args.actor.clone(),
        actions: args.actions.clone(),
        object_type: args.object.as_ref().map(|o| o.0.clone()),
        object_id: args.object.as_ref().map(|o| o.1.clone()),
        time_from: args.since,
        time_to: None,
    };
    let page = PageRequest::new(Some(i64::from(args.limit.clamp(1, 1000))), Sort::Desc, None)?;
    let rows = audit::list(&pool, &filter, &page).await?.items;
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "audit_id": r.audit_id,
                    "created_at": pm_domain::time::format(&r.created_at),
                    "actor": r.actor,
                    "action": r.action,
                    "object_type": r.object_type,
                    "object_id": r.object_id,
                    "outcome": r.outcome,
                    "correlation_id": r.correlation_id,
                    "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.set_header([
        "when",
        "actor",
        "action",
        "object",
        "outcome",
        "correlation id",
    ]);
    for r in &rows {
        table.add_row([
            pm_domain::time::format(&r.created_at),
            r.actor.clone(),
            r.action.clone(),
            format!("{}:{}", r.object_type, r.object_id),
            r.outcome.clone(),
            r.correlation_id.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(())
}
