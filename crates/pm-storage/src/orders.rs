//! Orders: reads and the operator hold.

use chrono::{DateTime, Utc};
use pm_domain::command::HoldChange;
use pm_domain::event::OrderEventKind;
use pm_domain::order::{HoldReason, OrderStatus};
use pm_domain::pagination::{Page, PageRequest};
use pm_domain::{EventId, OrderId, UserId};
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::events::{insert_event, push_keyset, EventTable};
use crate::statement;
use crate::StorageError;
use pm_domain::domain_event::EventType;

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: String,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub on_hold: bool,
    pub hold_reason: Option<HoldReason>,
    pub hold_updated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: String,
    user_id: Uuid,
    status: String,
    on_hold: bool,
    hold_reason: Option<String>,
    hold_updated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str =
    "order_id, user_id, status, on_hold, hold_reason, hold_updated_at, created_at, updated_at";

impl TryFrom<OrderRow> for OrderRecord {
    type Error = StorageError;
    fn try_from(r: OrderRow) -> Result<Self, StorageError> {
        Ok(OrderRecord {
            status: r
                .status
                .parse()
                .map_err(|_| StorageError::corrupt("orders.status", &r.status))?,
            hold_reason: r
                .hold_reason
                .map(|h| {
                    h.parse()
                        .map_err(|_| StorageError::corrupt("orders.hold_reason", &h))
                })
                .transpose()?,
            order_id: r.order_id,
            user_id: UserId::from_uuid(r.user_id),
            on_hold: r.on_hold,
            hold_updated_at: r.hold_updated_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Filters of `GET /orders`.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Any of these orders; empty means all.
    pub order_ids: Vec<OrderId>,
    /// Any of these statuses; empty means all.
    pub statuses: Vec<OrderStatus>,
    pub user_id: Option<UserId>,
    pub on_hold: Option<bool>,
    /// `created_at >= created_from`.
    pub created_from: Option<DateTime<Utc>>,
    /// `created_at < created_to`.
    pub created_to: Option<DateTime<Utc>>,
}

pub async fn get(pool: &PgPool, order_id: &OrderId) -> Result<Option<OrderRecord>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let row: Option<OrderRow> = statement::run(
        "SELECT",
        "orders",
        sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1"
        ))
        .bind(order_id.as_str())
        .fetch_optional(&mut *conn),
    )
    .await?;
    row.map(OrderRecord::try_from).transpose()
}

pub async fn list(
    pool: &PgPool,
    filter: &OrderFilter,
    page: &PageRequest,
) -> Result<Page<OrderRecord>, StorageError> {
    let mut q = QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE true"));
    if !filter.order_ids.is_empty() {
        let ids: Vec<&str> = filter.order_ids.iter().map(OrderId::as_str).collect();
        q.push(" AND order_id = ANY(").push_bind(ids).push(")");
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        q.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(user) = filter.user_id {
        q.push(" AND user_id = ").push_bind(user.as_uuid());
    }
    if let Some(on_hold) = filter.on_hold {
        q.push(" AND on_hold = ").push_bind(on_hold);
    }
    if let Some(from) = filter.created_from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        q.push(" AND created_at < ").push_bind(to);
    }
    push_keyset(&mut q, "order_id", "text", page)?;
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<OrderRow> =
        statement::run("SELECT", "orders", q.build_query_as().fetch_all(&mut *conn)).await?;
    let rows = rows
        .into_iter()
        .map(OrderRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page, |o| {
        (o.created_at, o.order_id.clone())
    }))
}

/// Sets or clears the hold; `None` when the order does not exist. Setting the hold that is
/// already set (same reason), or clearing a clear one, changes nothing and records nothing.
pub async fn set_hold(
    pool: &PgPool,
    order_id: &OrderId,
    change: HoldChange,
    actor: &Actor,
    at: DateTime<Utc>,
) -> Result<Option<OrderRecord>, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let row: Option<OrderRow> = statement::run(
        "SELECT",
        "orders",
        sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1 FOR UPDATE"
        ))
        .bind(order_id.as_str())
        .fetch_optional(&mut *tx),
    )
    .await?;
    let Some(current) = row.map(OrderRecord::try_from).transpose()? else {
        return Ok(None);
    };
    let (on_hold, reason, kind) = match change {
        HoldChange::Set(r) => (true, Some(r), OrderEventKind::HoldSet),
        HoldChange::Clear => (false, None, OrderEventKind::HoldCleared),
    };
    let unchanged = current.on_hold == on_hold && current.hold_reason == reason;
    audit::record(
        &mut tx,
        &audit::Entry {
            actor,
            action: kind.as_str(),
            object_type: "order",
            object_id: order_id.as_str(),
            outcome: if unchanged { "unchanged" } else { "applied" },
            detail: serde_json::json!({ "reason": reason.map(HoldReason::as_str) }),
        },
        at,
    )
    .await?;
    if unchanged {
        tx.commit().await?;
        return Ok(Some(current));
    }
    let row: OrderRow = statement::run(
        "UPDATE",
        "orders",
        sqlx::query_as(&format!(
            "UPDATE orders SET on_hold = $2, hold_reason = $3, hold_updated_at = $4
         WHERE order_id = $1 RETURNING {ORDER_COLUMNS}"
        ))
        .bind(order_id.as_str())
        .bind(on_hold)
        .bind(reason.map(HoldReason::as_str))
        .bind(at)
        .fetch_one(&mut *tx),
    )
    .await?;
    let data = serde_json::json!({ "reason": reason.map(HoldReason::as_str), "previous_reason": current.hold_reason.map(HoldReason::as_str) });
    insert_event(
        &mut tx,
        EventTable::Order,
        EventId::generate(),
        order_id.as_str(),
        kind.as_str(),
        None,
        &data.to_string(),
        at,
    )
    .await?;
    let (event_type, data) = match reason {
        Some(r) => (
            EventType::OrderHeld,
            serde_json::json!({ "order_id": order_id.as_str(), "reason": r.as_str() }),
        ),
        None => (
            EventType::OrderReleased,
            serde_json::json!({
                "order_id": order_id.as_str(),
                "previous_reason": current.hold_reason.map(HoldReason::as_str),
            }),
        ),
    };
    crate::outbox::append(
        &mut tx,
        crate::outbox::NewEvent {
            event_type,
            aggregate_id: order_id.as_str(),
            data,
            correlation_id: actor.correlation_id.as_deref(),
            at,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(row.try_into()?))
}
