//! pg_partman maintenance of the event tables, and pruning of the deduplication table.
//!
//! No pg_partman background worker is assumed (most installations do not configure one,
//! and the original system never scheduled maintenance at all): `pmctl partition-maintain`
//! runs this from cron, a systemd timer or a Kubernetes CronJob.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::StorageError;

/// The partitioned tables this project owns.
pub const PARTITIONED_TABLES: [&str; 2] = ["public.order_events", "public.dispute_events"];

/// Providers retry webhooks for up to 30 days; deduplication must remember longer.
pub const MIN_DEDUPE_KEEP: Duration = Duration::from_secs(35 * 24 * 3600);

/// One partition and the time range it holds (`None` for the default partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The state of one partitioned table, and what a maintenance run changed in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub table: String,
    /// Range partitions (the default partition is not counted).
    pub partitions: usize,
    pub oldest: Option<DateTime<Utc>>,
    /// The end of the newest partition: rows up to here have a partition waiting.
    pub newest_until: Option<DateTime<Utc>>,
    /// Rows in the default partition. Should be 0: rows there mean a partition was missing
    /// when they arrived, and pg_partman cannot create a partition overlapping them.
    pub default_rows: i64,
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// What a maintenance run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    pub pg_partman_version: String,
    pub tables: Vec<TableReport>,
    /// Rows removed from the deduplication table.
    pub dedupe_pruned: u64,
    /// Rows left in it.
    pub dedupe_rows: i64,
}

/// Maintenance settings.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Drop partitions whose whole range is older than this (applied to this run only).
    pub retention: Option<Duration>,
    /// Forget processed webhook ids older than this; at least [`MIN_DEDUPE_KEEP`].
    pub dedupe_keep: Duration,
    /// Report only; change nothing.
    pub dry_run: bool,
}

/// Why maintenance refused to run.
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(
        "the deduplication table must keep at least 35 days (providers retry for up to 30 days)"
    )]
    DedupeKeepTooShort,
    #[error("pg_partman is not installed in this database; run `pmctl migrate` first")]
    NotMigrated,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for MaintainError {
    fn from(e: sqlx::Error) -> Self {
        MaintainError::Storage(e.into())
    }
}

async fn partman(conn: &mut PgConnection) -> Result<(String, String), MaintainError> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, e.extversion FROM pg_extension e
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    found.ok_or(MaintainError::NotMigrated)
}

/// Lists the partitions of `table`, oldest first, the default partition last.
pub async fn partitions(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<Partition>, StorageError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let mut parts: Vec<Partition> = rows
        .into_iter()
        .map(|(name, bound)| {
            let (from, to) = parse_bound(&bound).unzip();
            Partition { name, from, to }
        })
        .collect();
    parts.sort_by_key(|p| (p.from.is_none(), p.from));
    Ok(parts)
}

/// Reads `FOR VALUES FROM ('2026-11-18 00:00:00+00') TO ('2026-11-19 00:00:00+00')`
/// (the session runs in UTC, so PostgreSQL prints the bounds in UTC).
fn parse_bound(bound: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut quoted = bound.split('\'').skip(1).step_by(2);
    let parse = |s: &str| {
        DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some((parse(quoted.next()?)?, parse(quoted.next()?)?))
}

async fn table_report(
    conn: &mut PgConnection,
    table: &str,
    before: &[Partition],
) -> Result<TableReport, StorageError> {
    let after = partitions(conn, table).await?;
    let ranged: Vec<&Partition> = after.iter().filter(|p| p.from.is_some()).collect();
    let default_rows = match after.iter().find(|p| p.from.is_none()) {
        Some(d) => {
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote_ident(&d.name)))
                .fetch_one(&mut *conn)
                .await?
        }
        None => 0,
    };
    let names = |ps: &[Partition]| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let (b, a) = (names(before), names(&after));
    Ok(TableReport {
        table: table.to_owned(),
        partitions: ranged.len(),
        oldest: ranged.first().and_then(|p| p.from),
        newest_until: ranged.last().and_then(|p| p.to),
        default_rows,
        created: a.iter().filter(|n| !b.contains(n)).cloned().collect(),
        dropped: b.iter().filter(|n| !a.contains(n)).cloned().collect(),
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs pg_partman maintenance for our tables (premake future partitions, apply the
/// retention when given), prunes the deduplication table, and reports the result.
pub async fn maintain(
    pool: &PgPool,
    opts: &MaintainOptions,
) -> Result<MaintenanceReport, MaintainError> {
    if opts.dedupe_keep < MIN_DEDUPE_KEEP {
        return Err(MaintainError::DedupeKeepTooShort);
    }
    let mut conn = crate::db::acquire(pool).await?;
    let (schema, version) = partman(&mut conn).await?;
    let mut tables = Vec::new();
    for table in PARTITIONED_TABLES {
        let before = partitions(&mut conn, table).await?;
        if !opts.dry_run {
            run_table_maintenance(&mut conn, &schema, table, opts.retention).await?;
        }
        tables.push(table_report(&mut conn, table, &before).await?);
    }
    let cutoff =
        Utc::now() - chrono::Duration::from_std(opts.dedupe_keep).unwrap_or(chrono::Duration::MAX);
    let dedupe_pruned = if opts.dry_run {
        0
    } else {
        prune_dedupe(&mut conn, cutoff).await?
    };
    let dedupe_rows = sqlx::query_scalar("SELECT count(*) FROM processed_webhooks")
        .fetch_one(&mut *conn)
        .await?;
    Ok(MaintenanceReport {
        pg_partman_version: version,
        tables,
        dedupe_pruned,
        dedupe_rows,
    })
}

/// One table's maintenance in one transaction. The retention is set for this run only and
/// the table's configured retention restored afterwards, so that a run without
/// `--retention` never drops anything.
async fn run_table_maintenance(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    retention: Option<Duration>,
) -> Result<(), MaintainError> {
    let schema = quote_ident(schema);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let previous: Option<(Option<String>, bool)> = sqlx::query_as(&format!(
        "SELECT retention, retention_keep_table FROM {schema}.part_config WHERE parent_table = $1"
    ))
    .bind(table)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((prev_retention, prev_keep)) = previous else {
        return Err(MaintainError::NotMigrated);
    };
    if let Some(r) = retention {
        sqlx::query(&format!(
            "UPDATE {schema}.part_config SET retention = $2, retention_keep_table = false WHERE parent_table = $1"
        ))
        .bind(table)
        .bind(format!("{} seconds", r.as_secs()))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!(
        "SELECT {schema}.run_maintenance(p_parent_table := $1, p_analyze := false)"
    ))
    .bind(table)
    .execute(&mut *tx)
    .await?;
    if retention.is_some() {
        sqlx::query(&format!(
            "UPDATE {schema}.part_config SET retention = $2, retention_keep_table = $3 WHERE parent_table = $1"
        ))
        .bind(table)
        .bind(prev_retention)
        .bind(prev_keep)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes processed webhook ids older than `cutoff`, in batches so no single
/// transaction grows large.
async fn prune_dedupe(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
    let mut total = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM processed_webhooks WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM processed_webhooks WHERE processed_at < $1 LIMIT 10000))",
        )
        .bind(cutoff)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        total += n;
        if n < 10_000 {
            return Ok(total);
        }
    }
}

/// The state of every partitioned table now (its `created` and `dropped` are empty): what
/// the services export as metrics, so an alert fires while there is still time to run
/// maintenance, before rows start landing in a default partition.
pub async fn status(pool: &PgPool) -> Result<Vec<TableReport>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let mut reports = Vec::with_capacity(PARTITIONED_TABLES.len());
    for table in PARTITIONED_TABLES {
        let current = partitions(&mut conn, table).await?;
        reports.push(table_report(&mut conn, table, &current).await?);
    }
    Ok(reports)
}

/// The partition of `table` that holds the row with `created_at` = `at` (for tests and
/// diagnostics): the name PostgreSQL routes such a row to.
pub async fn partition_for(
    pool: &PgPool,
    table: &str,
    at: DateTime<Utc>,
) -> Result<Option<String>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    Ok(partitions(&mut conn, table)
        .await?
        .into_iter()
        .find(|p| match (p.from, p.to) {
            (Some(f), Some(t)) => f <= at && at < t,
            _ => false,
        })
        .map(|p| p.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_in_utc() {
        let (f, t) =
            parse_bound("FOR VALUES FROM ('2026-11-18 00:00:00+00') TO ('2026-11-19 00:00:00+00')")
                .expect("parses");
        assert_eq!(f.to_rfc3339(), "2026-11-18T00:00:00+00:00");
        assert_eq!((t - f).num_hours(), 24);
        assert_eq!(parse_bound("DEFAULT"), None);
        let (f, _) = parse_bound(
            "FOR VALUES FROM ('2026-08-17 14:17:26.40931+00') TO ('2026-08-18 14:17:26.40931+00')",
        )
        .expect("fractional seconds parse");
        assert_eq!(f.timestamp_subsec_micros(), 409_310);
    }
}
