//! `pmctl migrate`: apply the SQL migrations.

use comfy_table::Table;
use pm_storage::layout::{self, Layout};

use crate::args::DatabaseArgs;

/// Apply pending migrations (or, with --dry-run, list them; with --check, also exit with 3
/// when one is pending).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// List the migrations and which are pending, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Like --dry-run, and exit with 3 when a migration is pending (for CI and deploy
    /// scripts: "is this database's schema current?").
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// The event tables' layout: `partitioned` (daily pg_partman partitions, for production)
    /// or `unpartitioned` (one plain table each, with the same indexes: the baseline that
    /// benchmarks compare partitioning with). Chosen when a database is created: switching
    /// needs empty event tables, and there is no way back. Without it, the database keeps
    /// the layout it has (a new one gets `partitioned`).
    #[arg(long, value_enum, conflicts_with_all = ["dry_run", "check"])]
    layout: Option<LayoutArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Partitioned,
    Unpartitioned,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Partitioned => Layout::Partitioned,
            LayoutArg::Unpartitioned => Layout::Unpartitioned,
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-migrate")?;
    let status = pm_storage::migrate::status(&pool).await?;
    let pending = status.iter().filter(|m| !m.applied).count();
    if args.dry_run || args.check {
        let mut table = Table::new();
        table.set_header(["version", "description", "state"]);
        for m in &status {
            table.add_row([
                m.version.to_string(),
                m.description.clone(),
                if m.applied { "applied" } else { "pending" }.to_owned(),
            ]);
        }
        println!("{table}");
        let flag = if args.check { "--check" } else { "--dry-run" };
        println!("{pending} pending migration(s); nothing was changed ({flag})");
        if pending > 0 {
            pm_storage::migrate::require_partman(&pool).await?;
        }
        return crate::exit::check(!args.check || pending == 0, || {
            format!("{pending} migration(s) pending: run `pmctl migrate`")
        });
    }
    let applied = pm_storage::migrate::run(&pool).await?;
    if let Some(wanted) = args.layout.map(Layout::from) {
        if layout::ensure(&pool, wanted).await? {
            println!("event tables switched to the {wanted} layout");
        } else {
            println!("event tables already have the {wanted} layout");
        }
    }
    if let Some(roles) = pm_storage::roles::refresh_grants(&pool).await? {
        if !applied.is_empty() {
            println!(
                "grants refreshed for {} (rows) and {} (reads)",
                roles.app, roles.readonly
            );
        }
    }
    if let Some(owner) = pm_storage::roles::bypassed_owner(&pool).await? {
        eprintln!(
            "warning: migrations ran as a superuser while the schema belongs to {owner} (`pmctl db \
             bootstrap`): new tables are the superuser's and the application role has no rights on \
             them. Run `pmctl migrate` as {owner}, or `pmctl db bootstrap` again now."
        );
    }
    if applied.is_empty() {
        println!(
            "schema is up to date ({} migrations applied earlier)",
            status.len()
        );
    } else {
        for m in &applied {
            println!("applied {} {}", m.version, m.description);
        }
        println!("{} migration(s) applied", applied.len());
    }
    Ok(())
}
