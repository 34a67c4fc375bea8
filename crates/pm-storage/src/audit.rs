//! The audit trail of operator actions: append-only (a trigger refuses UPDATE, DELETE and
//! TRUNCATE), written in the transaction of the change it records where there is one.

use chrono::{DateTime, Utc};
use pm_domain::pagination::{Page, PageRequest};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::events::push_keyset;
use crate::statement;
use crate::StorageError;

/// Who acts: an API key's name (`reconciliation` for the capture reconciliation, `cli:…` for
/// a pmctl command), and the request's correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub correlation_id: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, correlation_id: Option<String>) -> Self {
        Actor {
            name: name.into(),
            correlation_id,
        }
    }
}

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: &'a Actor,
    /// e.g. `hold_set`, `capture_requested`, `capture_settled`, `evidence_saved`.
    pub action: &'static str,
    /// `order`, `dispute`, `api_key`.
    pub object_type: &'static str,
    pub object_id: &'a str,
    /// How it ended: `applied`, `unchanged`, `refused: …`, `success`, `failed`, `unknown`…
    pub outcome: &'a str,
    pub detail: serde_json::Value,
}

/// Records `entry` on `conn` (inside the caller's transaction).
pub async fn record(
    conn: &mut PgConnection,
    entry: &Entry<'_>,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    statement::run(
        "INSERT",
        "audit_log",
        sqlx::query(
            "INSERT INTO audit_log (created_at, actor, action, object_type, object_id, outcome,
                                correlation_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
        )
        .bind(at)
        .bind(&entry.actor.name)
        .bind(entry.action)
        .bind(entry.object_type)
        .bind(entry.object_id)
        .bind(entry.outcome)
        .bind(entry.actor.correlation_id.as_deref())
        .bind(entry.detail.to_string())
        .execute(conn),
    )
    .await?;
    Ok(())
}

/// Records an action that changed nothing (a refusal), on its own.
pub async fn record_alone(
    pool: &PgPool,
    entry: &Entry<'_>,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    record(&mut conn, entry, at).await
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    pub audit_id: i64,
    pub created_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub outcome: String,
    pub correlation_id: Option<String>,
    pub detail: String,
}

/// Filters of [`list`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub actions: Vec<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub time_from: Option<DateTime<Utc>>,
    pub time_to: Option<DateTime<Utc>>,
}

/// One page of the trail.
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Page<AuditRecord>, StorageError> {
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(
        "SELECT audit_id, created_at, actor, action, object_type, object_id, outcome,
                correlation_id, detail::text AS detail
         FROM audit_log WHERE true",
    );
    if let Some(actor) = &filter.actor {
        q.push(" AND actor = ").push_bind(actor.clone());
    }
    if !filter.actions.is_empty() {
        q.push(" AND action = ANY(")
            .push_bind(filter.actions.clone())
            .push(")");
    }
    if let Some(t) = &filter.object_type {
        q.push(" AND object_type = ").push_bind(t.clone());
    }
    if let Some(id) = &filter.object_id {
        q.push(" AND object_id = ").push_bind(id.clone());
    }
    if let Some(from) = filter.time_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.time_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    push_keyset(&mut q, "audit_id", "bigint", page)?;
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<AuditRecord> = statement::run(
        "SELECT",
        "audit_log",
        q.build_query_as().fetch_all(&mut *conn),
    )
    .await?;
    Ok(Page::from_rows(rows, page, |r| {
        (r.created_at, r.audit_id.to_string())
    }))
}
