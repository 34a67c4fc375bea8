//! Capture bookkeeping: one row per idempotency key, in two short transactions around the
//! provider call, which is never made while a transaction is open.
//!
//! 1. [`begin`] checks the key and the order, and inserts a `pending` row (or finds the
//!    stored result of an earlier request with the same key and body).
//! 2. The caller calls the provider with the same idempotency key.
//! 3. [`finish`] stores the provider's answer; [`release`] gives up a pending attempt whose
//!    outcome is unknown (provider unreachable) so a retry with the same key may call again.
//!
//! A process that crashes between 1 and 3 leaves a pending row whose attempt grows old;
//! a retry with the same key takes it over after `stale_after`. Calling the provider again
//! is safe because the provider deduplicates on the idempotency key too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pm_domain::event::OrderEventKind;
use pm_domain::order::{HoldReason, OrderStatus};
use pm_domain::{Amount, Currency, EventId, IdempotencyKey, Money, OrderId};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::events::{insert_event, EventTable};
use crate::StorageError;

/// Where a capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureStatus {
    Pending,
    Success,
    Failed,
}

impl CaptureStatus {
    fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "pending" => Ok(CaptureStatus::Pending),
            "success" => Ok(CaptureStatus::Success),
            "failed" => Ok(CaptureStatus::Failed),
            other => Err(StorageError::corrupt("order_captures.status", other)),
        }
    }
}

/// A stored capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    pub idempotency_key: String,
    pub order_id: String,
    pub money: Money,
    pub status: CaptureStatus,
    pub provider_tx_id: Option<String>,
    pub failure_reason: Option<String>,
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
    attempt_started_at: DateTime<Utc>,
    captured_at: Option<DateTime<Utc>>,
}

const CAPTURE_COLUMNS: &str =
    "idempotency_key, order_id, amount, currency, request_fingerprint, status, \
     provider_tx_id, failure_reason, attempt_started_at, captured_at";

impl CaptureRow {
    fn record(&self) -> Result<CaptureRecord, StorageError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|_| StorageError::corrupt("order_captures.currency", &self.currency))?;
        let money = Amount::new(self.amount)
            .and_then(|a| Money::new(a, currency))
            .map_err(|_| StorageError::corrupt("order_captures.amount", self.amount))?;
        Ok(CaptureRecord {
            idempotency_key: self.idempotency_key.clone(),
            order_id: self.order_id.clone(),
            money,
            status: CaptureStatus::parse(&self.status)?,
            provider_tx_id: self.provider_tx_id.clone(),
            failure_reason: self.failure_reason.clone(),
            captured_at: self.captured_at,
        })
    }
}

/// What [`begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureStart {
    /// A pending capture this caller now owns: call the provider, then [`finish`].
    Proceed(CaptureRecord),
    /// The same request was completed before: answer with its stored result.
    Replay(CaptureRecord),
    /// A request with this key (or another capture of the order) is calling the provider.
    InProgress,
    /// The key was used before for a different request.
    KeyReused,
    OrderNotFound,
    OnHold(Option<HoldReason>),
    Final(OrderStatus),
    /// The order was already captured under another key.
    AlreadyCaptured {
        idempotency_key: String,
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

async fn fetch_key(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
) -> Result<Option<CaptureRow>, StorageError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CAPTURE_COLUMNS} FROM order_captures WHERE idempotency_key = $1 FOR UPDATE"
    ))
    .bind(key.as_str())
    .fetch_optional(conn)
    .await?)
}

/// Step 1: checks the idempotency key and the order, and reserves the capture.
pub async fn begin(
    pool: &PgPool,
    order_id: &OrderId,
    money: &Money,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Result<CaptureStart, StorageError> {
    let fp = fingerprint(order_id, money);
    let stale_before =
        now - chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let mut tx = pool.begin().await?;

    if let Some(row) = fetch_key(&mut tx, key).await? {
        if row.request_fingerprint != fp {
            return Ok(CaptureStart::KeyReused);
        }
        let record = row.record()?;
        if record.status != CaptureStatus::Pending {
            return Ok(CaptureStart::Replay(record));
        }
        if row.attempt_started_at > stale_before {
            return Ok(CaptureStart::InProgress);
        }
        sqlx::query("UPDATE order_captures SET attempt_started_at = $2 WHERE idempotency_key = $1")
            .bind(key.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(CaptureStart::Proceed(record));
    }

    let order: Option<(String, bool, Option<String>)> = sqlx::query_as(
        "SELECT status, on_hold, hold_reason FROM orders WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, on_hold, hold_reason)) = order else {
        return Ok(CaptureStart::OrderNotFound);
    };
    if on_hold {
        return Ok(CaptureStart::OnHold(
            hold_reason.and_then(|r| r.parse().ok()),
        ));
    }
    let status: OrderStatus = status
        .parse()
        .map_err(|_| StorageError::corrupt("orders.status", &status))?;
    if status.is_final() {
        return Ok(CaptureStart::Final(status));
    }
    let others: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT idempotency_key, status, attempt_started_at FROM order_captures
         WHERE order_id = $1 AND status IN ('success', 'pending')",
    )
    .bind(order_id.as_str())
    .fetch_all(&mut *tx)
    .await?;
    if let Some((k, _, _)) = others.iter().find(|(_, s, _)| s == "success") {
        return Ok(CaptureStart::AlreadyCaptured {
            idempotency_key: k.clone(),
        });
    }
    if others.iter().any(|(_, _, started)| *started > stale_before) {
        return Ok(CaptureStart::InProgress);
    }

    let row: CaptureRow = sqlx::query_as(&format!(
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
    .fetch_one(&mut *tx)
    .await?;
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
    tx.commit().await?;
    Ok(CaptureStart::Proceed(row.record()?))
}

/// Step 3: stores the provider's answer. Returns the stored capture (the earlier answer
/// when another request finished it first).
pub async fn finish(
    pool: &PgPool,
    key: &IdempotencyKey,
    result: &CaptureResult,
    now: DateTime<Utc>,
) -> Result<CaptureRecord, StorageError> {
    let mut tx = pool.begin().await?;
    let row = fetch_key(&mut tx, key)
        .await?
        .ok_or_else(|| StorageError::corrupt("order_captures.idempotency_key", key))?;
    if row.status != "pending" {
        return row.record();
    }
    let (status, tx_id, reason, captured_at, kind) = match result {
        CaptureResult::Success { provider_tx_id } => (
            "success",
            Some(provider_tx_id.as_str()),
            None,
            Some(now),
            OrderEventKind::CaptureCompleted,
        ),
        CaptureResult::Failed {
            provider_tx_id,
            reason,
        } => (
            "failed",
            provider_tx_id.as_deref(),
            Some(reason.as_str()),
            None,
            OrderEventKind::CaptureFailed,
        ),
    };
    let updated: CaptureRow = sqlx::query_as(&format!(
        "UPDATE order_captures SET status = $2, provider_tx_id = $3, failure_reason = $4, captured_at = $5
         WHERE idempotency_key = $1 RETURNING {CAPTURE_COLUMNS}"
    ))
    .bind(key.as_str())
    .bind(status)
    .bind(tx_id)
    .bind(reason)
    .bind(captured_at)
    .fetch_one(&mut *tx)
    .await?;
    let data = serde_json::json!({ "idempotency_key": key.as_str(), "provider_tx_id": tx_id, "reason": reason });
    insert_event(
        &mut tx,
        EventTable::Order,
        EventId::generate(),
        &updated.order_id,
        kind.as_str(),
        Some(key.as_str()),
        &data.to_string(),
        now,
    )
    .await?;
    tx.commit().await?;
    updated.record()
}

/// Gives up the current attempt of a pending capture whose outcome is unknown, so that a
/// retry with the same key calls the provider again at once.
pub async fn release(pool: &PgPool, key: &IdempotencyKey) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE order_captures SET attempt_started_at = 'epoch'
         WHERE idempotency_key = $1 AND status = 'pending'",
    )
    .bind(key.as_str())
    .execute(pool)
    .await?;
    Ok(())
}
