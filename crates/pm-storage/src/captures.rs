//! Capture bookkeeping: one row per idempotency key, in short transactions around the
//! provider call, which is never made while a transaction is open.
//!
//! 1. [`begin`] checks the order and the key, and opens the capture (`pending`), or finds
//!    the stored result of an earlier request with the same key and body.
//! 2. The caller calls the provider with the same idempotency key.
//! 3. [`finish`] stores the provider's answer; [`mark_unknown`] records that the answer was
//!    lost (timeout, reset, 5xx): the provider may have captured.
//!
//! **Invariant: at most one capture per order has an open outcome** (`pending` or
//! `unknown`), enforced by a unique index. While one is open, every other key is refused
//! ([`CaptureStart::OpenUnderOtherKey`]): only a retry under the *same* key may call the
//! provider again, and the provider deduplicates on that key, so an order can never be
//! charged twice. An open capture is settled by such a retry or by the reconciliation
//! ([`unsettled`], then [`finish`] with what the provider's lookup says, or [`give_up`]
//! when the provider has no record of it).
//!
//! A process that crashes between 1 and 3 leaves a `pending` row whose attempt grows old;
//! after `stale_after` it counts as unknown: a retry with the same key takes it over, and
//! the reconciliation settles it.

use crate::statement;
use pm_domain::domain_event::EventType;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pm_domain::event::OrderEventKind;
use pm_domain::order::{HoldReason, OrderStatus};
use pm_domain::{Amount, Currency, EventId, IdempotencyKey, Money, OrderId};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::audit::{self, Actor};
use crate::events::{insert_event, EventTable};
use crate::StorageError;

/// Where a capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureStatus {
    /// A provider call is under way (or its process died; see `stale_after`).
    Pending,
    /// The provider's answer was lost: it may or may not have captured.
    Unknown,
    Success,
    Failed,
}

impl CaptureStatus {
    fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "pending" => Ok(CaptureStatus::Pending),
            "unknown" => Ok(CaptureStatus::Unknown),
            "success" => Ok(CaptureStatus::Success),
            "failed" => Ok(CaptureStatus::Failed),
            other => Err(StorageError::corrupt("order_captures.status", other)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CaptureStatus::Pending => "pending",
            CaptureStatus::Unknown => "unknown",
            CaptureStatus::Success => "success",
            CaptureStatus::Failed => "failed",
        }
    }

    /// Whether the outcome is still open: the order may or may not have been charged.
    pub fn is_open(self) -> bool {
        matches!(self, CaptureStatus::Pending | CaptureStatus::Unknown)
    }
}

/// A stored capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    pub idempotency_key: IdempotencyKey,
    pub order_id: OrderId,
    pub money: Money,
    pub status: CaptureStatus,
    pub provider_tx_id: Option<String>,
    pub failure_reason: Option<String>,
    /// Why the last provider call ended without an outcome.
    pub last_error: Option<String>,
    /// Provider calls made (or begun) under this key.
    pub attempts: i32,
    /// When the last provider call began.
    pub attempt_started_at: DateTime<Utc>,
    pub captured_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct CaptureRow {
    idempotency_key: String,
    order_id: String,
    amount: Decimal,
    currency: String,
    request_fingerprint: String,
    status: String,
    provider_tx_id: Option<String>,
    failure_reason: Option<String>,
    last_error: Option<String>,
    attempts: i32,
    attempt_started_at: DateTime<Utc>,
    captured_at: Option<DateTime<Utc>>,
}

const CAPTURE_COLUMNS: &str =
    "idempotency_key, order_id, amount, currency, request_fingerprint, status, \
     provider_tx_id, failure_reason, last_error, attempts, attempt_started_at, captured_at";

impl CaptureRow {
    fn record(&self) -> Result<CaptureRecord, StorageError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|_| StorageError::corrupt("order_captures.currency", &self.currency))?;
        let money = Amount::new(self.amount)
            .and_then(|a| Money::new(a, currency))
            .map_err(|_| StorageError::corrupt("order_captures.amount", self.amount))?;
        Ok(CaptureRecord {
            idempotency_key: IdempotencyKey::parse(self.idempotency_key.as_str()).map_err(
                |_| StorageError::corrupt("order_captures.idempotency_key", &self.idempotency_key),
            )?,
            order_id: OrderId::parse(self.order_id.as_str())
                .map_err(|_| StorageError::corrupt("order_captures.order_id", &self.order_id))?,
            money,
            status: CaptureStatus::parse(&self.status)?,
            provider_tx_id: self.provider_tx_id.clone(),
            failure_reason: self.failure_reason.clone(),
            last_error: self.last_error.clone(),
            attempts: self.attempts,
            attempt_started_at: self.attempt_started_at,
            captured_at: self.captured_at,
        })
    }

    /// Whether a provider call under this key may be running now.
    fn in_flight(&self, stale_before: DateTime<Utc>) -> bool {
        self.status == "pending" && self.attempt_started_at > stale_before
    }
}

/// What [`begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureStart {
    /// An open capture this caller now owns: call the provider, then [`finish`] or
    /// [`mark_unknown`]. `attempts > 1` when it retries an unknown outcome.
    Proceed(CaptureRecord),
    /// The same request was completed before: answer with its stored result.
    Replay(CaptureRecord),
    /// A request with this key is calling the provider now.
    InProgress,
    /// The key was used before for a different request.
    KeyReused,
    OrderNotFound,
    OnHold(Option<HoldReason>),
    Final(OrderStatus),
    /// The order was already captured under another key.
    AlreadyCaptured {
        idempotency_key: IdempotencyKey,
    },
    /// Another key's capture of this order has an open outcome; only that key may be
    /// retried until it is settled. `in_flight` when its provider call is running now.
    OpenUnderOtherKey {
        idempotency_key: IdempotencyKey,
        in_flight: bool,
    },
}

/// The provider's answer to a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureResult {
    Success {
        provider_tx_id: String,
    },
    /// The provider answered but did not capture.
    Failed {
        provider_tx_id: Option<String>,
        reason: String,
    },
}

fn fingerprint(order_id: &OrderId, money: &Money) -> String {
    let mut h = Sha256::new();
    for part in [
        order_id.as_str(),
        &money.amount_text(),
        money.currency().code(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn stale_before(now: DateTime<Utc>, stale_after: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX)
}

async fn fetch_key(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
) -> Result<Option<CaptureRow>, StorageError> {
    Ok(statement::run(
        "SELECT",
        "order_captures",
        sqlx::query_as(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM order_captures WHERE idempotency_key = $1 FOR UPDATE"
        ))
        .bind(key.as_str())
        .fetch_optional(conn),
    )
    .await?)
}

/// The order's state as far as capturing goes; `Err` is the refusal.
async fn lock_capturable_order(
    conn: &mut PgConnection,
    order_id: &OrderId,
) -> Result<Result<(), CaptureStart>, StorageError> {
    let order: Option<(String, bool, Option<String>)> = statement::run(
        "SELECT",
        "orders",
        sqlx::query_as(
            "SELECT status, on_hold, hold_reason FROM orders WHERE order_id = $1 FOR UPDATE",
        )
        .bind(order_id.as_str())
        .fetch_optional(conn),
    )
    .await?;
    let Some((status, on_hold, hold_reason)) = order else {
        return Ok(Err(CaptureStart::OrderNotFound));
    };
    if on_hold {
        return Ok(Err(CaptureStart::OnHold(
            hold_reason.and_then(|r| r.parse().ok()),
        )));
    }
    let status: OrderStatus = status
        .parse()
        .map_err(|_| StorageError::corrupt("orders.status", &status))?;
    if status.is_final() {
        return Ok(Err(CaptureStart::Final(status)));
    }
    Ok(Ok(()))
}

/// Step 1: checks the order and the idempotency key, and opens the capture.
///
/// The order row is locked first, in every path, so concurrent captures of one order are
/// decided one after the other.
pub async fn begin(
    pool: &PgPool,
    order_id: &OrderId,
    money: &Money,
    key: &IdempotencyKey,
    actor: &Actor,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<CaptureStart, StorageError> {
    let fp = fingerprint(order_id, money);
    let stale_before = stale_before(now, stale_after);
    let mut tx = crate::db::begin(pool).await?;
    let order = lock_capturable_order(&mut tx, order_id).await?;

    if let Some(row) = fetch_key(&mut tx, key).await? {
        if row.request_fingerprint != fp {
            return Ok(CaptureStart::KeyReused);
        }
        let record = row.record()?;
        if !record.status.is_open() {
            return Ok(CaptureStart::Replay(record));
        }
        if row.in_flight(stale_before) {
            return Ok(CaptureStart::InProgress);
        }
        // Asking again under the same key is safe (the provider answers a repeated key
        // with its first answer), but a hold or a final order still forbids a charge.
        if let Err(refusal) = order {
            return Ok(refusal);
        }
        let row: CaptureRow = statement::run(
            "UPDATE",
            "order_captures",
            sqlx::query_as(&format!(
                "UPDATE order_captures SET status = 'pending', attempt_started_at = $2,
                    attempts = attempts + 1
             WHERE idempotency_key = $1 RETURNING {CAPTURE_COLUMNS}"
            ))
            .bind(key.as_str())
            .bind(now)
            .fetch_one(&mut *tx),
        )
        .await?;
        let record = row.record()?;
        audit_requested(&mut tx, actor, &record, now).await?;
        tx.commit().await?;
        return Ok(CaptureStart::Proceed(record));
    }
    if let Err(refusal) = order {
        return Ok(refusal);
    }

    let others: Vec<CaptureRow> = statement::run(
        "SELECT",
        "order_captures",
        sqlx::query_as(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM order_captures
         WHERE order_id = $1 AND status IN ('success', 'pending', 'unknown')"
        ))
        .bind(order_id.as_str())
        .fetch_all(&mut *tx),
    )
    .await?;
    if let Some(done) = others.iter().find(|r| r.status == "success") {
        return Ok(CaptureStart::AlreadyCaptured {
            idempotency_key: done.record()?.idempotency_key,
        });
    }
    if let Some(open) = others.first() {
        return Ok(CaptureStart::OpenUnderOtherKey {
            idempotency_key: open.record()?.idempotency_key,
            in_flight: open.in_flight(stale_before),
        });
    }

    let row: CaptureRow = statement::run("INSERT", "order_captures", sqlx::query_as(&format!(
        "INSERT INTO order_captures (idempotency_key, order_id, amount, currency, request_fingerprint,
                                     status, attempt_started_at, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)
         RETURNING {CAPTURE_COLUMNS}"
    ))
    .bind(key.as_str())
    .bind(order_id.as_str())
    .bind(money.amount().value())
    .bind(money.currency().code())
    .bind(&fp)
    .bind(now)
    .fetch_one(&mut *tx)).await?;
    let data = serde_json::json!({
        "idempotency_key": key.as_str(),
        "amount": money.amount_json(),
        "currency": money.currency().code(),
    });
    insert_event(
        &mut tx,
        EventTable::Order,
        EventId::generate(),
        order_id.as_str(),
        OrderEventKind::CaptureRequested.as_str(),
        Some(key.as_str()),
        &data.to_string(),
        now,
    )
    .await?;
    let record = row.record()?;
    audit_requested(&mut tx, actor, &record, now).await?;
    tx.commit().await?;
    Ok(CaptureStart::Proceed(record))
}

/// The audit row of a provider call about to be made (a first attempt or a retry).
async fn audit_requested(
    conn: &mut PgConnection,
    actor: &Actor,
    capture: &CaptureRecord,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    audit::record(
        conn,
        &audit::Entry {
            actor,
            action: "capture_requested",
            object_type: "order",
            object_id: capture.order_id.as_str(),
            outcome: "pending",
            detail: serde_json::json!({
                "idempotency_key": capture.idempotency_key.as_str(),
                "amount": capture.money.amount_json(),
                "currency": capture.money.currency().code(),
                "attempt": capture.attempts,
            }),
        },
        now,
    )
    .await
}

/// Who learned an outcome: the request that called the provider, or the reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettledBy {
    Request,
    Reconciliation,
}

impl SettledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SettledBy::Request => "request",
            SettledBy::Reconciliation => "reconciliation",
        }
    }
}

/// Step 3: stores the provider's answer, if the capture is still open. Returns the stored
/// capture (the earlier answer when another request or the reconciliation settled it first).
///
/// A true answer from the provider is stored whoever owns the current attempt: an answer
/// under this key is the answer to every attempt under it.
pub async fn finish(
    pool: &PgPool,
    key: &IdempotencyKey,
    result: &CaptureResult,
    settled_by: SettledBy,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<CaptureRecord, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let row = fetch_key(&mut tx, key)
        .await?
        .ok_or_else(|| StorageError::corrupt("order_captures.idempotency_key", key))?;
    if !CaptureStatus::parse(&row.status)?.is_open() {
        return row.record();
    }
    let settled = settle(&mut tx, key, &row.order_id, result, settled_by, actor, now).await?;
    tx.commit().await?;
    settled.record()
}

/// Settles an open capture as failed because the provider has no record of it, but only if
/// no attempt began since the caller looked (`seen_attempt`): a new attempt could still
/// reach the provider. `None` when it was not open any more or a new attempt began.
pub async fn give_up(
    pool: &PgPool,
    key: &IdempotencyKey,
    seen_attempt: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<CaptureRecord>, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let Some(row) = fetch_key(&mut tx, key).await? else {
        return Ok(None);
    };
    if !CaptureStatus::parse(&row.status)?.is_open() || row.attempt_started_at != seen_attempt {
        return Ok(None);
    }
    let result = CaptureResult::Failed {
        provider_tx_id: None,
        reason: reason.to_owned(),
    };
    let settled = settle(
        &mut tx,
        key,
        &row.order_id,
        &result,
        SettledBy::Reconciliation,
        &Actor::new(SettledBy::Reconciliation.as_str(), None),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(settled.record()?))
}

async fn settle(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    order_id: &str,
    result: &CaptureResult,
    settled_by: SettledBy,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<CaptureRow, StorageError> {
    let (status, tx_id, reason, captured_at, kind) = match result {
        CaptureResult::Success { provider_tx_id } => (
            CaptureStatus::Success,
            Some(provider_tx_id.as_str()),
            None,
            Some(now),
            OrderEventKind::CaptureCompleted,
        ),
        CaptureResult::Failed {
            provider_tx_id,
            reason,
        } => (
            CaptureStatus::Failed,
            provider_tx_id.as_deref(),
            Some(reason.as_str()),
            None,
            OrderEventKind::CaptureFailed,
        ),
    };
    let updated: CaptureRow = statement::run("UPDATE", "order_captures", sqlx::query_as(&format!(
        "UPDATE order_captures SET status = $2, provider_tx_id = $3, failure_reason = $4, captured_at = $5
         WHERE idempotency_key = $1 RETURNING {CAPTURE_COLUMNS}"
    ))
    .bind(key.as_str())
    .bind(status.as_str())
    .bind(tx_id)
    .bind(reason)
    .bind(captured_at)
    .fetch_one(&mut *conn)).await?;
    let data = serde_json::json!({
        "idempotency_key": key.as_str(),
        "provider_tx_id": tx_id,
        "reason": reason,
        "settled_by": settled_by.as_str(),
    });
    insert_event(
        &mut *conn,
        EventTable::Order,
        EventId::generate(),
        order_id,
        kind.as_str(),
        Some(key.as_str()),
        &data.to_string(),
        now,
    )
    .await?;
    audit::record(
        &mut *conn,
        &audit::Entry {
            actor,
            action: "capture_settled",
            object_type: "order",
            object_id: order_id,
            outcome: status.as_str(),
            detail: data,
        },
        now,
    )
    .await?;
    let money = updated.record()?.money;
    let (event_type, data) = match result {
        CaptureResult::Success { provider_tx_id } => (
            EventType::OrderCaptured,
            serde_json::json!({
                "order_id": order_id,
                "idempotency_key": key.as_str(),
                "amount": money.amount_text(),
                "currency": money.currency().code(),
                "provider_tx_id": provider_tx_id,
                "captured_at": pm_domain::time::format(&now),
                "settled_by": settled_by.as_str(),
            }),
        ),
        CaptureResult::Failed { reason, .. } => (
            EventType::OrderCaptureFailed,
            serde_json::json!({
                "order_id": order_id,
                "idempotency_key": key.as_str(),
                "amount": money.amount_text(),
                "currency": money.currency().code(),
                "reason": reason,
                "settled_by": settled_by.as_str(),
            }),
        ),
    };
    crate::outbox::append(
        conn,
        crate::outbox::NewEvent {
            event_type,
            aggregate_id: order_id,
            data,
            correlation_id: actor.correlation_id.as_deref(),
            at: now,
        },
    )
    .await?;
    Ok(updated)
}

/// Records that the provider call of a pending capture ended without an answer: the
/// provider may have captured. The capture stays open (other keys are refused) until a
/// retry with the same key or the reconciliation learns the outcome.
pub async fn mark_unknown(
    pool: &PgPool,
    key: &IdempotencyKey,
    error: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let order_id: Option<String> = statement::run(
        "UPDATE",
        "order_captures",
        sqlx::query_scalar(
            "UPDATE order_captures SET status = 'unknown', last_error = $2
         WHERE idempotency_key = $1 AND status = 'pending' RETURNING order_id",
        )
        .bind(key.as_str())
        .bind(error)
        .fetch_optional(&mut *tx),
    )
    .await?;
    if let Some(order_id) = order_id {
        let data = serde_json::json!({ "idempotency_key": key.as_str(), "error": error });
        insert_event(
            &mut tx,
            EventTable::Order,
            EventId::generate(),
            &order_id,
            OrderEventKind::CaptureUnknown.as_str(),
            Some(key.as_str()),
            &data.to_string(),
            now,
        )
        .await?;
        audit::record(
            &mut tx,
            &audit::Entry {
                actor,
                action: "capture_settled",
                object_type: "order",
                object_id: &order_id,
                outcome: "unknown",
                detail: data,
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Open captures no provider call is working on: `unknown` ones, and `pending` ones whose
/// attempt began before `now - stale_after` (their process died). Oldest attempt first.
pub async fn unsettled(
    pool: &PgPool,
    now: DateTime<Utc>,
    stale_after: Duration,
    limit: i64,
) -> Result<Vec<CaptureRecord>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<CaptureRow> = statement::run(
        "SELECT",
        "order_captures",
        sqlx::query_as(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM order_captures
         WHERE status = 'unknown' OR (status = 'pending' AND attempt_started_at <= $1)
         ORDER BY attempt_started_at LIMIT $2"
        ))
        .bind(stale_before(now, stale_after))
        .bind(limit)
        .fetch_all(&mut *conn),
    )
    .await?;
    rows.iter().map(CaptureRow::record).collect()
}

/// The captures of an order, newest first.
pub async fn of_order(
    pool: &PgPool,
    order_id: &OrderId,
) -> Result<Vec<CaptureRecord>, StorageError> {
    let mut conn = crate::db::acquire(pool).await?;
    let rows: Vec<CaptureRow> = statement::run(
        "SELECT",
        "order_captures",
        sqlx::query_as(&format!(
        "SELECT {CAPTURE_COLUMNS} FROM order_captures WHERE order_id = $1 ORDER BY created_at DESC"
    ))
        .bind(order_id.as_str())
        .fetch_all(&mut *conn),
    )
    .await?;
    rows.iter().map(CaptureRow::record).collect()
}
