//! pg_partman maintenance of the event tables, and pruning of the deduplication table.
//!
//! No pg_partman background worker is assumed (most installations do not configure one,
//! and the original system never scheduled maintenance at all): `pmctl partition-maintain`
//! runs this from cron, a systemd timer or a Kubernetes CronJob.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::StorageError;

/// The partitioned tables this project owns.
pub const PARTITIONED_TABLES: [&str; 2] = ["public.order_events", "public.dispute_events"];

/// The transactional outbox ([`crate::outbox`]): always partitioned by day, whatever the
/// event tables' layout; its partitions are dropped once old and fully published.
pub const OUTBOX_TABLE: &str = "public.outbox";

/// Every table maintenance premakes partitions for, and the status reports.
pub const MAINTAINED_TABLES: [&str; 3] =
    [PARTITIONED_TABLES[0], PARTITIONED_TABLES[1], OUTBOX_TABLE];

/// How long published outbox events are kept by default (for a consumer that replays from
/// the database, and for looking into what was sent).
pub const DEFAULT_OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long the analytics projection's inbox remembers an event by default: longer than
/// `domain-events` keeps it (the broker's default is 7 days), so a replay from the topic's
/// start finds every event it can read.
pub const DEFAULT_ANALYTICS_INBOX_KEEP: Duration = Duration::from_secs(35 * 24 * 3600);

/// The index each partitioned table's closed partitions are clustered on (see
/// [`cluster_closed`]): `(kind, created_at)`, the order reports by kind and time read in.
pub const CLUSTER_INDEXES: [(&str, &str); 2] = [
    ("public.order_events", "public.order_events_kind_idx"),
    ("public.dispute_events", "public.dispute_events_kind_idx"),
];

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

/// One closed partition and what clustering did (or, in a dry run, would do) to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusteredPartition {
    pub table: String,
    pub partition: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub outcome: ClusterOutcome,
}

/// What happened to a closed partition that was not clustered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ClusterOutcome {
    /// Rewritten in `(kind, created_at)` order; `rows` and `pages` as `ANALYZE` counted them
    /// afterwards, `millis` how long the `CLUSTER` took (its wait for the lock included).
    Clustered { rows: i64, pages: i64, millis: u64 },
    /// Its lock was not granted within the lock timeout (a long reader held it); the next
    /// run tries again.
    Busy,
    /// A dry run: it would have been clustered.
    Pending,
}

/// What a maintenance run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    pub pg_partman_version: String,
    pub tables: Vec<TableReport>,
    /// Closed partitions clustered by this run (`--cluster-closed`), oldest first.
    pub clustered: Vec<ClusteredPartition>,
    /// Rows removed from the deduplication table.
    pub dedupe_pruned: u64,
    /// Rows left in it.
    pub dedupe_rows: i64,
    /// Events the analytics inbox forgot (see [`MaintainOptions::analytics_inbox_keep`]).
    pub inbox_pruned: u64,
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
    /// Cluster the partitions whose day is over (see [`cluster_closed`]), waiting at most
    /// this long for each one's lock; `None` leaves them as they are.
    pub cluster_closed: Option<Duration>,
    /// Drop outbox partitions whose whole range is older than this once every event in
    /// them is published (see [`OutboxRelay`] for how that is known).
    pub outbox_retention: Duration,
    /// Which relay publishes the outbox, and so how a partition is known to be published.
    pub outbox_relay: OutboxRelay,
    /// Forget analytics inbox rows older than this. Keep it longer than the
    /// `domain-events` topic's retention: an event replayed after its row is gone would be
    /// counted again.
    pub analytics_inbox_keep: Duration,
}

/// Which relay publishes the outbox. The polling relay marks each event it published
/// (`published_at`); Debezium reads the write-ahead log and marks nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutboxRelay {
    /// `pmctl outbox-relay`: a partition is dropped once none of its events is unpublished.
    #[default]
    Polling,
    /// Debezium: a partition is dropped by age alone, but none while a logical replication
    /// slot of this database is inactive — a stopped Debezium has perhaps not read them yet.
    Debezium,
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

/// pg_partman's schema and version in this database, when it is installed.
pub(crate) async fn installed_partman(
    conn: &mut PgConnection,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.nspname::text, e.extversion FROM pg_extension e
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'",
    )
    .fetch_optional(&mut *conn)
    .await
}

async fn partman(conn: &mut PgConnection) -> Result<(String, String), MaintainError> {
    installed_partman(conn)
        .await?
        .ok_or(MaintainError::NotMigrated)
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

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs pg_partman maintenance for our tables (premake future partitions, apply the
/// retention when given), prunes the deduplication table, and reports the result. Event
/// tables of the unpartitioned layout ([`crate::layout`]) are left alone and not reported.
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
    for table in MAINTAINED_TABLES {
        if !crate::layout::is_partitioned(&mut conn, table).await? {
            continue;
        }
        let before = partitions(&mut conn, table).await?;
        if !opts.dry_run {
            if table == OUTBOX_TABLE {
                run_table_maintenance(&mut conn, &schema, table, None).await?;
                prune_outbox(
                    &mut conn,
                    Utc::now(),
                    opts.outbox_retention,
                    opts.outbox_relay,
                )
                .await?;
            } else {
                run_table_maintenance(&mut conn, &schema, table, opts.retention).await?;
            }
        }
        tables.push(table_report(&mut conn, table, &before).await?);
    }
    let before = |keep: Duration| {
        Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX)
    };
    let (dedupe_pruned, inbox_pruned) = if opts.dry_run {
        (0, 0)
    } else {
        (
            prune_before(&mut conn, "processed_webhooks", before(opts.dedupe_keep)).await?,
            prune_before(
                &mut conn,
                "analytics.inbox",
                before(opts.analytics_inbox_keep),
            )
            .await?,
        )
    };
    let dedupe_rows = sqlx::query_scalar("SELECT count(*) FROM processed_webhooks")
        .fetch_one(&mut *conn)
        .await?;
    let mut clustered = Vec::new();
    if let Some(lock_timeout) = opts.cluster_closed {
        let closed_before = Utc::now();
        for (table, index) in CLUSTER_INDEXES {
            if !crate::layout::is_partitioned(&mut conn, table).await? {
                continue;
            }
            clustered.extend(
                cluster_closed(
                    &mut conn,
                    table,
                    index,
                    closed_before,
                    lock_timeout,
                    opts.dry_run,
                )
                .await?,
            );
        }
    }
    Ok(MaintenanceReport {
        pg_partman_version: version,
        tables,
        clustered,
        dedupe_pruned,
        dedupe_rows,
        inbox_pruned,
    })
}

/// Drops the outbox partitions whose range ended more than `retention` before `now` and
/// whose events are published. With the polling relay that means none is unpublished, each
/// partition checked under a lock that keeps a relay from marking (and so needing) its rows
/// meanwhile; with Debezium it means no logical replication slot of this database is
/// inactive (a slot's reader that is down may not have read the oldest events yet).
async fn prune_outbox(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    retention: Duration,
    relay: OutboxRelay,
) -> Result<Vec<String>, MaintainError> {
    let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut dropped = Vec::new();
    if relay == OutboxRelay::Debezium {
        let idle: Vec<String> = sqlx::query_scalar(
            "SELECT slot_name::text FROM pg_replication_slots \
             WHERE database = current_database() AND slot_type = 'logical' AND NOT active",
        )
        .fetch_all(&mut *conn)
        .await?;
        if !idle.is_empty() {
            tracing::warn!(slots = ?idle, "a logical replication slot of this database is inactive; keeping the old outbox partitions until its reader (Debezium) runs again");
            return Ok(dropped);
        }
    }
    for p in partitions(conn, OUTBOX_TABLE).await? {
        let Some(to) = p.to else { continue };
        if to > cutoff {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let name = quote_ident(&p.name);
        sqlx::query(&format!("LOCK TABLE {name} IN SHARE ROW EXCLUSIVE MODE"))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        let pending = relay == OutboxRelay::Polling
            && sqlx::query_scalar::<_, bool>(&format!(
                "SELECT EXISTS (SELECT 1 FROM {name} WHERE published_at IS NULL)"
            ))
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        if pending {
            tracing::warn!(partition = %p.name, "an old outbox partition still holds unpublished events; is a relay running?");
            continue;
        }
        sqlx::query(&format!("DROP TABLE {name}"))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        dropped.push(p.name);
    }
    Ok(dropped)
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

/// Clusters the partitions of `table` whose range ended by `closed_before` and that are not
/// clustered yet on their partition of `parent_index`, one at a time, oldest first.
///
/// Why: rows arrive in time order with every kind interleaved, so a report that reads one
/// kind over a few days touches a heap page for nearly every row it returns. `CLUSTER`
/// rewrites a partition in index order, after which those rows sit on a few contiguous pages.
/// It is worth doing once a day is over: no more rows arrive in that partition, so the order
/// lasts.
///
/// The cost: `CLUSTER` holds an `ACCESS EXCLUSIVE` lock on the partition while it rewrites it,
/// so reads of that one day wait meanwhile (other days, and every write of today, do not).
/// The lock time is bounded by one day's size, and the wait for the lock by `lock_timeout`: a
/// partition whose lock is not granted in time is reported [`ClusterOutcome::Busy`] and left
/// to the next run, instead of queueing every later reader behind us.
///
/// Done once: PostgreSQL records the index a table was clustered on (`pg_index.
/// indisclustered`), which is how a later run knows to skip the partition, with no state of
/// our own to keep in step with partitions pg_partman creates and drops.
pub async fn cluster_closed(
    conn: &mut PgConnection,
    table: &str,
    parent_index: &str,
    closed_before: DateTime<Utc>,
    lock_timeout: Duration,
    dry_run: bool,
) -> Result<Vec<ClusteredPartition>, StorageError> {
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), pg_get_expr(c.relpartbound, c.oid),
                format('%I', ci.relname), x.indisclustered
         FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_index x ON x.indrelid = c.oid
         JOIN pg_inherits xi ON xi.inhrelid = x.indexrelid AND xi.inhparent = $2::regclass
         JOIN pg_class ci ON ci.oid = x.indexrelid
         WHERE i.inhparent = $1::regclass",
    )
    .bind(table)
    .bind(parent_index)
    .fetch_all(&mut *conn)
    .await?;
    let mut closed: Vec<_> = rows
        .into_iter()
        .filter(|(_, _, _, clustered)| !clustered)
        .filter_map(|(partition, bound, index, _)| {
            let (from, to) = parse_bound(&bound)?;
            (to <= closed_before).then_some((from, to, partition, index))
        })
        .collect();
    closed.sort();

    let mut out = Vec::with_capacity(closed.len());
    for (from, to, partition, index) in closed {
        let outcome = if dry_run {
            ClusterOutcome::Pending
        } else {
            cluster_one(conn, &partition, &index, lock_timeout).await?
        };
        if let ClusterOutcome::Clustered { rows, millis, .. } = &outcome {
            tracing::info!(%partition, rows, millis, "clustered a closed partition");
        }
        out.push(ClusteredPartition {
            table: table.to_owned(),
            partition,
            from: Some(from),
            to: Some(to),
            outcome,
        });
    }
    Ok(out)
}

/// `CLUSTER` and `ANALYZE` of one partition (names already quoted; the index's unqualified,
/// as `CLUSTER … USING` wants it: an index lives in its table's schema), its lock wait bounded.
async fn cluster_one(
    conn: &mut PgConnection,
    partition: &str,
    index: &str,
    lock_timeout: Duration,
) -> Result<ClusterOutcome, StorageError> {
    let started = std::time::Instant::now();
    // Set for this transaction only, so the connection goes back to its pool unchanged. The
    // pool's statement timeout guards requests; a rewrite takes as long as the day is big.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', '0', true)",
    )
    .bind(format!("{}ms", lock_timeout.as_millis().max(1)))
    .execute(&mut *tx)
    .await?;
    // Unprepared-style statements through `query` (not `raw_sql`, whose future is not `Send`
    // in general: maintenance also runs inside the API, from the admin UI).
    let cluster = format!("CLUSTER {partition} USING {index}");
    let clustered = sqlx::query(&cluster)
        .persistent(false)
        .execute(&mut *tx)
        .await;
    match clustered {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            tx.rollback().await?;
            tracing::warn!(%partition, ?lock_timeout, "partition busy; it will be clustered by a later run");
            return Ok(ClusterOutcome::Busy);
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // The rewrite left the planner's statistics describing the old order.
    let analyze = format!("ANALYZE {partition}");
    sqlx::query(&analyze)
        .persistent(false)
        .execute(&mut *conn)
        .await?;
    let (rows, pages): (f32, i32) =
        sqlx::query_as("SELECT reltuples, relpages FROM pg_class WHERE oid = $1::regclass")
            .bind(partition)
            .fetch_one(&mut *conn)
            .await?;
    Ok(ClusterOutcome::Clustered {
        rows: rows.max(0.0) as i64,
        pages: i64::from(pages),
        millis,
    })
}

/// Deletes the rows of `table` (the webhook dedupe table, the analytics inbox: both have a
/// `processed_at`) processed before `cutoff`, in batches so no single transaction grows
/// large.
async fn prune_before(
    conn: &mut PgConnection,
    table: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, StorageError> {
    let mut total = 0;
    loop {
        let n = sqlx::query(&format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM {table} WHERE processed_at < $1 LIMIT 10000))"
        ))
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

/// The state of every partitioned table now (its `created` and `dropped` are empty; tables of
/// the unpartitioned layout are not listed): what
/// the services export as metrics, so an alert fires while there is still time to run
/// maintenance, before rows start landing in a default partition.
pub async fn status(pool: &PgPool) -> Result<Vec<TableReport>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let mut reports = Vec::with_capacity(MAINTAINED_TABLES.len());
    for table in MAINTAINED_TABLES {
        if !crate::layout::is_partitioned(&mut conn, table).await? {
            continue;
        }
        let current = partitions(&mut conn, table).await?;
        reports.push(table_report(&mut conn, table, &current).await?);
    }
    Ok(reports)
}

/// One partition and about how many rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionRows {
    pub partition: Partition,
    /// PostgreSQL's running estimate of its live rows (`pg_stat_user_tables.n_live_tup`):
    /// counting every partition exactly would read every table.
    pub estimated_rows: i64,
}

/// Every partitioned table's state and its partitions with their estimated sizes, oldest
/// first, the default partition last (the admin UI's partitions page).
pub async fn overview(
    pool: &PgPool,
) -> Result<Vec<(TableReport, Vec<PartitionRows>)>, StorageError> {
    let reports = status(pool).await?;
    let mut conn = crate::db::acquire(pool).await?;
    let mut out = Vec::with_capacity(reports.len());
    for report in reports {
        let estimates: HashMap<String, i64> = sqlx::query_as(
            "SELECT c.relname::text, coalesce(s.n_live_tup, 0)
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
             WHERE i.inhparent = $1::regclass",
        )
        .bind(&report.table)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let rows = partitions(&mut conn, &report.table)
            .await?
            .into_iter()
            .map(|p| PartitionRows {
                estimated_rows: estimates.get(&p.name).copied().unwrap_or(0),
                partition: p,
            })
            .collect();
        out.push((report, rows));
    }
    Ok(out)
}

/// Creates the daily partitions of every partitioned event table from the day of `since`
/// up to the ones pg_partman premade, so that rows of that period (a backfill, an import,
/// a benchmark's history) land in their own partition rather than in the default one.
/// Returns the partitions created; tables of the unpartitioned layout are skipped.
pub async fn cover(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<String>, MaintainError> {
    let mut conn = crate::db::acquire(pool).await?;
    let (schema, _) = partman(&mut conn).await?;
    let mut created = Vec::new();
    for table in PARTITIONED_TABLES {
        if !crate::layout::is_partitioned(&mut conn, table).await? {
            continue;
        }
        let before = partitions(&mut conn, table).await?;
        sqlx::query(&format!(
            "SELECT {}.create_partition_time($1, ARRAY(
                 SELECT generate_series(date_trunc('day', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                                        now(), interval '1 day')))",
            quote_ident(&schema)
        ))
        .bind(table)
        .bind(since)
        .execute(&mut *conn)
        .await?;
        let after = partitions(&mut conn, table).await?;
        created.extend(
            after
                .into_iter()
                .filter(|p| !before.iter().any(|b| b.name == p.name))
                .map(|p| p.name),
        );
    }
    Ok(created)
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
