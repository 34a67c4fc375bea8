//! Loading the benchmark's data: server-side generation (`generate_series` and hashes of row
//! numbers), so the rows never cross the network and are identical on every run and machine.
//!
//! The events are generated once, into the plain layout, **in dispute order** — each
//! dispute's events together, their times spread over the whole period — as the original
//! generator did (its page counts, ~119k pages read by the sequential scan and ~26k by the
//! bitmap scan for ~29k candidate rows, only fit rows scattered in time across the heap).
//! The other layouts are copied from it block range by block range, so the heap order (and
//! with it every page count) is as identical as the layouts allow.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use pm_storage::partitions::ClusterOutcome;

use super::schema::{self, DATA_SCHEMA};
use super::{Layout, Progress, Stage};
use crate::generate::{hash, pick, timestamp, CURRENCIES, REASONS, STATUSES};
use crate::LabError;

/// Per mille of the events between a dispute's first and (for final disputes) last that are
/// `evidence_added`; the same share again is `evidence_submitted`, the rest `webhook_updated`.
/// 43‰ makes `evidence_added` ≈ 3.6 % of all rows, which reproduces the original's
/// selectivity: ≈29k candidate rows in a 5-day window of 5M rows over 31 days, ≈1,044 of them
/// for `lost` + `fraud` disputes. The selectivity decides the plans, so it matters more than
/// realism here.
const EVIDENCE_ADDED_PER_MILLE: u32 = 43;
/// Disputes per generated chunk of the disputes table.
const DISPUTE_CHUNK: u64 = 50_000;
/// Roughly how many events one generation statement produces (one progress step).
const EVENT_CHUNK: u64 = 100_000;
/// Heap blocks copied per statement (≈ 90k rows).
const COPY_CHUNK_BLOCKS: i64 = 2_000;
/// Generator rows sent per statement.
const PLAN_CHUNK: usize = 100_000;

/// What the load produced, for the report.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) evidence_added_rows: i64,
    /// How long clustering each day's partition took (its lock held), in milliseconds.
    pub(crate) cluster_ms: Vec<u64>,
}

/// A dispute's status, computed from its number wherever it is needed (the disputes table
/// and the kinds of its events agree without a join).
fn status_of(n: &str) -> String {
    pick(STATUSES, n, 1)
}

/// Loads everything and builds the indexes; reports progress per statement.
pub(crate) async fn load(
    conn: &mut PgConnection,
    counts: &[u8],
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    days: u32,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Loaded, LabError> {
    // Generous memory for the sorts of the generator and the index builds; reset before
    // anything is measured.
    sqlx::raw_sql(
        "SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'; SET synchronize_seqscans = off;",
    )
    .execute(&mut *conn)
    .await?;
    let period_us = i64::from(days) * 86_400 * 1_000_000;
    plan(conn, counts).await?;
    disputes(conn, counts.len() as u64, period_start, period_us, progress).await?;
    events(conn, counts, period_start, period_us, progress).await?;
    for layout in Layout::ALL.into_iter().filter(|l| *l != Layout::Plain) {
        copy(conn, layout, progress).await?;
    }
    for layout in Layout::ALL.into_iter().filter(|l| l.is_partitioned()) {
        let default_rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}.dispute_events_default",
            layout.schema()
        ))
        .fetch_one(&mut *conn)
        .await?;
        if default_rows > 0 {
            return Err(LabError::RowsInDefaultPartition { rows: default_rows });
        }
    }
    indexes(conn, progress).await?;
    let cluster_ms = cluster(conn, period_end, progress).await?;
    vacuum(conn, progress).await?;
    sqlx::raw_sql(&format!(
        "DROP TABLE {DATA_SCHEMA}.generator; \
         RESET maintenance_work_mem; RESET work_mem; RESET synchronize_seqscans;"
    ))
    .execute(&mut *conn)
    .await?;
    let evidence_added_rows = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {} WHERE kind = 'evidence_added'",
        Layout::Indexed.table()
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Loaded {
        evidence_added_rows,
        cluster_ms,
    })
}

/// Sends the per-dispute counts and their running offsets.
async fn plan(conn: &mut PgConnection, counts: &[u8]) -> Result<(), LabError> {
    let mut first_event: i64 = 0;
    for (chunk_no, chunk) in counts.chunks(PLAN_CHUNK).enumerate() {
        let base = (chunk_no * PLAN_CHUNK) as i64;
        let n: Vec<i64> = (0..chunk.len() as i64).map(|i| base + i).collect();
        let events: Vec<i32> = chunk.iter().map(|&c| i32::from(c)).collect();
        let firsts: Vec<i64> = chunk
            .iter()
            .map(|&c| {
                let first = first_event;
                first_event += i64::from(c);
                first
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO {DATA_SCHEMA}.generator (n, events, first_event)
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[])"
        ))
        .bind(&n)
        .bind(&events)
        .bind(&firsts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn disputes(
    conn: &mut PgConnection,
    total: u64,
    period_start: DateTime<Utc>,
    period_us: i64,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), LabError> {
    let status = status_of("n");
    let sql = format!(
        "INSERT INTO {DATA_SCHEMA}.disputes
         SELECT md5('dispute-' || n)::uuid, 'ord_bench_' || n,
                md5('user-' || {user} % 200000)::uuid, status, {reason},
                (100 + {cents} % 99900) / 100.0, {currency},
                opened, opened + interval '14 days',
                CASE WHEN status IN ('submitted', 'won', 'lost') THEN opened + interval '3 days' END,
                CASE WHEN status IN ('won', 'lost', 'closed', 'canceled') THEN opened + interval '20 days' END,
                CASE WHEN status IN ('submitted', 'won', 'lost') THEN 'rep_' || n END,
                opened, opened
         FROM (SELECT n, {status} AS status,
                      {start} + ({offset} % {period_us})::float8 * interval '1 microsecond' AS opened
               FROM generate_series($1::bigint, $2::bigint - 1) AS n) g",
        user = hash("n", 4),
        reason = pick(REASONS, "n", 2),
        cents = hash("n", 5),
        currency = pick(CURRENCIES, "n", 3),
        start = timestamp(period_start),
        offset = hash("n", 6),
    );
    let mut done = 0;
    while done < total {
        let end = (done + DISPUTE_CHUNK).min(total);
        sqlx::query(&sql)
            .bind(done as i64)
            .bind(end as i64)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        done = end;
        progress(Progress {
            stage: Stage::Disputes,
            done,
            total,
        });
    }
    Ok(())
}

async fn events(
    conn: &mut PgConnection,
    counts: &[u8],
    period_start: DateTime<Utc>,
    period_us: i64,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), LabError> {
    let status = status_of("p.n");
    let sql = format!(
        "INSERT INTO {table} (event_id, dispute_id, kind, provider_event_id, data, created_at)
         SELECT md5('event-' || g.i)::uuid, md5('dispute-' || g.n)::uuid,
                CASE WHEN g.pos = 1 THEN 'webhook_opened'
                     WHEN g.pos = g.events AND g.status IN ('won', 'lost', 'closed', 'canceled')
                         THEN 'provider_decision'
                     WHEN g.u < {added} THEN 'evidence_added'
                     WHEN g.u < {submitted} THEN 'evidence_submitted'
                     ELSE 'webhook_updated' END,
                'evt_' || lpad(to_hex({pe_hash}), 16, '0'),
                jsonb_build_object('effect', 'applied', 'status', g.status, 'source', 'bench'),
                g.created_at
         FROM (SELECT p.n, p.events, p.first_event + k AS i, {status} AS status, t.created_at, t.u,
                      row_number() OVER (PARTITION BY p.n ORDER BY t.created_at, k) AS pos
               FROM {DATA_SCHEMA}.generator p
               CROSS JOIN LATERAL generate_series(0, p.events - 1) AS k
               CROSS JOIN LATERAL (
                   SELECT {start} + ({time_hash} % {period_us})::float8 * interval '1 microsecond'
                              AS created_at,
                          {kind_hash} % 1000 AS u) t
               WHERE p.n >= $1 AND p.n < $2) g
         ORDER BY g.n, g.pos",
        table = Layout::Plain.table(),
        added = EVIDENCE_ADDED_PER_MILLE,
        submitted = 2 * EVIDENCE_ADDED_PER_MILLE,
        pe_hash = hash("g.i", 13),
        start = timestamp(period_start),
        time_hash = hash("p.first_event + k", 11),
        kind_hash = hash("p.first_event + k", 12),
    );
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let mut done = 0u64;
    let mut from = 0usize;
    while from < counts.len() {
        // As many disputes as make about one chunk of events.
        let mut to = from;
        let mut rows = 0u64;
        while to < counts.len() && rows < EVENT_CHUNK {
            rows += counts.get(to).map_or(0, |&c| u64::from(c));
            to += 1;
        }
        sqlx::query(&sql)
            .bind(from as i64)
            .bind(to as i64)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        done += rows;
        from = to;
        progress(Progress {
            stage: Stage::Events,
            done,
            total,
        });
    }
    Ok(())
}

/// Copies the plain layout's heap in physical order, block range by block range (a TID range
/// scan), so the copy's rows lie in the same order.
async fn copy(
    conn: &mut PgConnection,
    layout: Layout,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), LabError> {
    let source = Layout::Plain.table();
    let blocks: i64 = sqlx::query_scalar(&format!(
        "SELECT pg_relation_size('{source}') / current_setting('block_size')::bigint"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let mut from = 0i64;
    while from < blocks {
        let to = (from + COPY_CHUNK_BLOCKS).min(blocks);
        sqlx::raw_sql(&format!(
            "INSERT INTO {target} SELECT * FROM {source}
             WHERE ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid",
            target = layout.table()
        ))
        .execute(&mut *conn)
        .await?;
        from = to;
        progress(Progress {
            stage: Stage::Copy(layout),
            done: from as u64,
            total: blocks as u64,
        });
    }
    Ok(())
}

async fn indexes(
    conn: &mut PgConnection,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), LabError> {
    let statements = schema::index_statements();
    let total = statements.len() as u64;
    for (i, (_, sql)) in statements.iter().enumerate() {
        sqlx::raw_sql(sql).execute(&mut *conn).await?;
        progress(Progress {
            stage: Stage::Indexes,
            done: i as u64 + 1,
            total,
        });
    }
    Ok(())
}

/// Clusters the clustered layout's partitions of the generated days — all closed, the data
/// ends where today begins — with the very code `pmctl partition-maintain --cluster-closed`
/// runs.
async fn cluster(
    conn: &mut PgConnection,
    period_end: DateTime<Utc>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Vec<u64>, LabError> {
    let table = Layout::Clustered.table();
    let index = format!("{}.{}", Layout::Clustered.schema(), schema::KIND_INDEX);
    progress(Progress {
        stage: Stage::Cluster,
        done: 0,
        total: 1,
    });
    // Nothing else uses the benchmark's schemas: a lock wait would be a bug, not a busy day.
    let clustered = pm_storage::partitions::cluster_closed(
        conn,
        &table,
        &index,
        period_end,
        std::time::Duration::from_secs(60),
        false,
    )
    .await?;
    let mut millis = Vec::with_capacity(clustered.len());
    for c in clustered {
        match c.outcome {
            ClusterOutcome::Clustered { millis: ms, .. } => millis.push(ms),
            other => {
                return Err(LabError::NotClustered {
                    partition: c.partition,
                    outcome: format!("{other:?}"),
                })
            }
        }
    }
    progress(Progress {
        stage: Stage::Cluster,
        done: 1,
        total: 1,
    });
    Ok(millis)
}

/// `VACUUM (ANALYZE)` sets the visibility map (so index-only scans are possible everywhere
/// alike) and the statistics the planner needs; a partitioned parent is processed with all
/// its partitions.
async fn vacuum(
    conn: &mut PgConnection,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), LabError> {
    let tables: Vec<String> = Layout::ALL
        .iter()
        .map(|l| l.table())
        .chain([format!("{DATA_SCHEMA}.disputes")])
        .collect();
    let total = tables.len() as u64;
    for (i, table) in tables.iter().enumerate() {
        sqlx::raw_sql(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&mut *conn)
            .await?;
        progress(Progress {
            stage: Stage::Vacuum,
            done: i as u64 + 1,
            total,
        });
    }
    Ok(())
}
