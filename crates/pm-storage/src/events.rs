//! The two event tables (`order_events`, `dispute_events`): appending and paging.
//!
//! Both are range-partitioned by day on `created_at`, so every read filters or orders by
//! `created_at` first; a time window then touches only the partitions it covers.

use chrono::{DateTime, Utc};
use pm_domain::pagination::{Page, PageRequest, Sort};
use pm_domain::EventId;
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::statement;
use crate::StorageError;

/// Which event table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTable {
    Order,
    Dispute,
}

impl EventTable {
    fn table(self) -> &'static str {
        match self {
            EventTable::Order => "order_events",
            EventTable::Dispute => "dispute_events",
        }
    }

    /// The aggregate column and the cast that turns a text parameter into its type.
    fn aggregate(self) -> (&'static str, &'static str) {
        match self {
            EventTable::Order => ("order_id", "text"),
            EventTable::Dispute => ("dispute_id", "uuid"),
        }
    }
}

/// One stored event.
#[derive(Debug)]
pub struct EventRecord {
    pub event_id: Uuid,
    /// The order id, or the dispute id as text.
    pub aggregate_id: String,
    pub kind: String,
    pub provider_event_id: Option<String>,
    /// The stored JSON, verbatim (exact amounts stay exact).
    pub data: Box<RawValue>,
    pub created_at: DateTime<Utc>,
}

/// Filters of an event list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events of these order ids / dispute ids; empty means all.
    pub aggregate_ids: Vec<String>,
    /// Only these kinds (any of them); empty means all.
    pub kinds: Vec<String>,
    /// `created_at >= time_from`.
    pub time_from: Option<DateTime<Utc>>,
    /// `created_at < time_to`.
    pub time_to: Option<DateTime<Utc>>,
}

/// Appends one event row.
#[allow(clippy::too_many_arguments)]
pub async fn insert_event(
    conn: &mut PgConnection,
    table: EventTable,
    event_id: EventId,
    aggregate_id: &str,
    kind: &str,
    provider_event_id: Option<&str>,
    data_json: &str,
    created_at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let (column, cast) = table.aggregate();
    let sql = format!(
        "INSERT INTO {} (event_id, {column}, kind, provider_event_id, data, created_at)
         VALUES ($1, $2::{cast}, $3, $4, $5::jsonb, $6)",
        table.table()
    );
    let statement = sqlx::query(&sql)
        .bind(event_id.as_uuid())
        .bind(aggregate_id)
        .bind(kind)
        .bind(provider_event_id)
        .bind(data_json)
        .bind(created_at)
        .execute(conn);
    statement::run("INSERT", table.table(), statement).await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: Uuid,
    aggregate_id: String,
    kind: String,
    provider_event_id: Option<String>,
    data: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StorageError;
    fn try_from(r: EventRow) -> Result<Self, StorageError> {
        let data = RawValue::from_string(r.data)?;
        Ok(EventRecord {
            event_id: r.event_id,
            aggregate_id: r.aggregate_id,
            kind: r.kind,
            provider_event_id: r.provider_event_id,
            data,
            created_at: r.created_at,
        })
    }
}

/// Appends `AND (created_at, <id>) >/< (cursor)` and the matching `ORDER BY … LIMIT`.
pub(crate) fn push_keyset(
    q: &mut QueryBuilder<'_, Postgres>,
    id_column: &str,
    id_cast: &str,
    page: &PageRequest,
) -> Result<(), StorageError> {
    let (cmp, dir) = match page.sort {
        Sort::Asc => (">", "ASC"),
        Sort::Desc => ("<", "DESC"),
    };
    if let Some(after) = &page.after {
        let fits = match id_cast {
            "uuid" => after.id.parse::<Uuid>().is_ok(),
            "bigint" => after.id.parse::<i64>().is_ok(),
            _ => true,
        };
        if !fits {
            return Err(StorageError::InvalidCursor);
        }
        q.push(format_args!(" AND (created_at, {id_column}) {cmp} ("))
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.id.clone())
            .push(format_args!("::{id_cast})"));
    }
    q.push(format_args!(
        " ORDER BY created_at {dir}, {id_column} {dir} LIMIT "
    ))
    .push_bind(i64::from(page.limit) + 1);
    Ok(())
}

/// One page of events, oldest first or newest first.
pub async fn list_events(
    pool: &PgPool,
    table: EventTable,
    filter: &EventFilter,
    page: &PageRequest,
) -> Result<Page<EventRecord>, StorageError> {
    let (column, cast) = table.aggregate();
    let mut q = QueryBuilder::new(format!(
        "SELECT event_id, {column}::text AS aggregate_id, kind, provider_event_id, data::text AS data, created_at
         FROM {} WHERE true",
        table.table()
    ));
    if !filter.aggregate_ids.is_empty() {
        q.push(format_args!(" AND {column} = ANY("))
            .push_bind(filter.aggregate_ids.clone())
            .push(format_args!("::{cast}[])"));
    }
    if !filter.kinds.is_empty() {
        q.push(" AND kind = ANY(")
            .push_bind(filter.kinds.clone())
            .push(")");
    }
    if let Some(from) = filter.time_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.time_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    push_keyset(&mut q, "event_id", "uuid", page)?;
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<EventRow> = statement::run(
        "SELECT",
        table.table(),
        q.build_query_as().fetch_all(&mut *conn),
    )
    .await?;
    let rows = rows
        .into_iter()
        .map(EventRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page, |e| {
        (e.created_at, e.event_id.to_string())
    }))
}
