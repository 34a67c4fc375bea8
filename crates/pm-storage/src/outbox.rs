//! The transactional outbox: every state change of an order or a dispute writes one domain
//! event here, in the transaction of the change (migration `…_outbox.sql` explains the
//! per-aggregate sequence). A relay publishes the rows and marks them published
//! ([`claim`], [`mark_published`]); maintenance drops partitions once every row in them is
//! published and older than the retention.
//!
//! Writers: the order webhooks (in their single statements, see `webhooks.rs`), and through
//! [`append`] the chargebacks, holds, captures, evidence and submissions.
//!
//! For benchmarks only, a session with the setting [`BENCH_WITHOUT_OUTBOX`] `= on` writes
//! no event (everything else unchanged), which is the baseline `pmctl bench outbox` measures
//! the outbox's write-path cost against. Set it through the connection URL
//! (`?options=-c%20pm.bench_without_outbox%3Don`); never in production: the events are lost.

use chrono::{DateTime, Utc};
use pm_domain::domain_event::{AggregateType, Envelope, EventType, SCHEMA_VERSION};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::statement;
use crate::StorageError;

/// The PostgreSQL setting that turns the outbox writes off, for a benchmark's baseline.
pub const BENCH_WITHOUT_OUTBOX: &str = "pm.bench_without_outbox";

/// The SQL condition under which an event is written: unless [`BENCH_WITHOUT_OUTBOX`] is on.
/// A constant, so that it is the same text in every statement.
macro_rules! outbox_on {
    () => {
        "coalesce(current_setting('pm.bench_without_outbox', true), '') <> 'on'"
    };
}
pub(crate) use outbox_on;

/// A domain event to write.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_type: EventType,
    /// The order id, or the dispute id as text.
    pub aggregate_id: &'a str,
    pub data: Value,
    pub correlation_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// The trace id of the current span, when tracing is on.
pub(crate) fn current_trace_id() -> Option<String> {
    pm_telemetry::propagation::trace_id_of(&tracing::Span::current())
}

/// A fresh event's envelope; its `sequence` (0 here) is set by the statement that writes it,
/// from the aggregate's row.
fn envelope(
    event_type: EventType,
    aggregate_id: &str,
    data: Value,
    correlation_id: Option<&str>,
    trace_id: Option<&str>,
    at: DateTime<Utc>,
) -> Envelope {
    Envelope {
        event_id: uuid::Uuid::now_v7(),
        event_type,
        schema_version: SCHEMA_VERSION,
        aggregate_type: event_type.aggregate(),
        aggregate_id: aggregate_id.to_owned(),
        sequence: 0,
        occurred_at: at,
        correlation_id: correlation_id.map(str::to_owned),
        trace_id: trace_id.map(str::to_owned),
        data,
    }
}

/// Writes `event` on `conn` (inside the transaction of the change it describes), drawing its
/// sequence number from the aggregate's row — which locks that row until the transaction
/// ends, so the aggregate's next event cannot commit before this one.
pub(crate) async fn append(
    conn: &mut PgConnection,
    event: NewEvent<'_>,
) -> Result<(), StorageError> {
    let aggregate = event.event_type.aggregate();
    let trace_id = current_trace_id();
    let envelope = envelope(
        event.event_type,
        event.aggregate_id,
        event.data,
        event.correlation_id,
        trace_id.as_deref(),
        event.at,
    );
    let (table, key) = match aggregate {
        AggregateType::Order => ("orders", "order_id = $1"),
        AggregateType::Dispute => ("disputes", "dispute_id = $1::uuid"),
    };
    // The answer is whether the aggregate exists (a data-modifying CTE runs whether or not
    // the rest reads it).
    let sql = format!(
        "WITH seq AS (
             UPDATE {table} SET outbox_sequence = outbox_sequence + 1 WHERE {key}
             RETURNING outbox_sequence
         ), written AS (
             INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type,
                                 schema_version, payload, correlation_id, trace_id, created_at)
             SELECT $2, $3, $1, seq.outbox_sequence, $4, $5,
                    jsonb_set($6::jsonb, '{{sequence}}', to_jsonb(seq.outbox_sequence)), $7, $8, $9
             FROM seq
             WHERE {on}
         )
         SELECT count(*) FROM seq",
        on = outbox_on!()
    );
    let statement = sqlx::query_scalar::<_, i64>(&sql)
        .bind(event.aggregate_id)
        .bind(envelope.event_id)
        .bind(aggregate.as_str())
        .bind(envelope.event_type.as_str())
        .bind(SCHEMA_VERSION)
        .bind(serde_json::to_string(&envelope)?)
        .bind(envelope.correlation_id.as_deref())
        .bind(envelope.trace_id.as_deref())
        .bind(event.at)
        .fetch_one(conn);
    let found = statement::run("INSERT", "outbox", statement).await?;
    if found != 1 {
        return Err(StorageError::corrupt(
            "outbox aggregate",
            format!(
                "{} {} does not exist",
                aggregate.as_str(),
                event.aggregate_id
            ),
        ));
    }
    Ok(())
}

/// The domain event of an order webhook that changes its order, before the statement that
/// applies the webhook knows its sequence and whether it created the order (it sets both):
/// its id and envelope.
pub(crate) fn order_webhook_event(
    w: &pm_domain::webhook::OrderWebhook,
    correlation_id: Option<&str>,
    trace_id: Option<&str>,
) -> Result<(uuid::Uuid, String), StorageError> {
    let data = serde_json::json!({
        "order_id": w.order_id.as_str(),
        "user_id": w.user_id.as_uuid(),
        "status": w.status.as_str(),
        "created_at": pm_domain::time::format(&w.created_at),
        "updated_at": pm_domain::time::format(&w.updated_at),
    });
    let envelope = envelope(
        EventType::OrderStatusChanged,
        w.order_id.as_str(),
        data,
        correlation_id,
        trace_id,
        pm_domain::time::now(),
    );
    Ok((envelope.event_id, serde_json::to_string(&envelope)?))
}

/// One unpublished event, as a relay publishes it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Pending {
    pub event_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// The message value (the envelope, as JSON text).
    pub payload: String,
    pub correlation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A claimed event, with its aggregate's oldest unpublished sequence number.
#[derive(sqlx::FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    event: Pending,
    first_unpublished: i64,
}

/// Claims up to `limit` unpublished events on `conn` (inside the relay's transaction):
/// locked with `FOR UPDATE SKIP LOCKED`, so relays running side by side take different
/// events, and then cut to what may be published now — per aggregate, only a run that starts
/// at the aggregate's oldest unpublished event and has no gap. An aggregate whose oldest
/// unpublished event another relay holds is left to that relay, so no aggregate's events are
/// ever published out of order. The result is in publishing order (per aggregate, by
/// sequence).
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<Pending>, StorageError> {
    let statement = sqlx::query_as::<_, Claimed>(
        "WITH claimed AS (
             SELECT event_id, created_at FROM outbox
             WHERE published_at IS NULL
             ORDER BY created_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         SELECT o.event_id, o.aggregate_type, o.aggregate_id, o.sequence, o.event_type,
                o.payload::text AS payload, o.correlation_id, o.created_at,
                (SELECT min(u.sequence) FROM outbox u
                 WHERE u.published_at IS NULL AND u.aggregate_type = o.aggregate_type
                   AND u.aggregate_id = o.aggregate_id) AS first_unpublished
         FROM outbox o JOIN claimed USING (event_id, created_at)
         ORDER BY o.aggregate_type, o.aggregate_id, o.sequence",
    )
    .bind(limit)
    .fetch_all(conn);
    let rows = statement::run("SELECT", "outbox", statement).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut expected: Option<(String, String, i64)> = None;
    for Claimed {
        event,
        first_unpublished,
    } in rows
    {
        let next = match &expected {
            Some((t, a, n)) if *t == event.aggregate_type && *a == event.aggregate_id => *n,
            _ => first_unpublished,
        };
        if event.sequence != next {
            // A gap: an earlier event of this aggregate is held by another relay (or is in
            // another claim); what follows it waits for the next round.
            expected = Some((event.aggregate_type, event.aggregate_id, i64::MAX));
            continue;
        }
        expected = Some((
            event.aggregate_type.clone(),
            event.aggregate_id.clone(),
            event.sequence + 1,
        ));
        out.push(event);
    }
    Ok(out)
}

/// Marks claimed events published (after the broker acknowledged them), on `conn` inside
/// the transaction that claimed them.
pub async fn mark_published(
    conn: &mut PgConnection,
    events: &[Pending],
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let created: Vec<DateTime<Utc>> = events.iter().map(|e| e.created_at).collect();
    let statement = sqlx::query(
        "UPDATE outbox o SET published_at = $3
         FROM unnest($1::uuid[], $2::timestamptz[]) AS p(event_id, created_at)
         WHERE o.event_id = p.event_id AND o.created_at = p.created_at",
    )
    .bind(ids)
    .bind(created)
    .bind(at)
    .execute(conn);
    statement::run("UPDATE", "outbox", statement).await?;
    Ok(())
}

/// How many events wait for a relay, and how old the oldest is.
pub async fn backlog(pool: &PgPool) -> Result<(i64, Option<DateTime<Utc>>), StorageError> {
    let statement =
        sqlx::query_as("SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL")
            .fetch_one(pool);
    Ok(statement::run("SELECT", "outbox", statement).await?)
}
