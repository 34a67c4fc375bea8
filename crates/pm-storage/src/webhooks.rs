//! Applying provider webhooks: deduplicate, lock the aggregate, let the domain decide,
//! store the change and its event — all in the caller's transaction.
//!
//! The functions take a connection that is already inside a transaction so that a caller
//! can apply one webhook per transaction (HTTP) or a batch of them (Kafka), and commit only
//! when everything in it is stored. Deduplication inserts the provider's event id first:
//! a concurrent second delivery of the same event blocks on that row until the first
//! transaction ends, then sees the conflict and reports a duplicate — so 20 parallel
//! deliveries make exactly one change and one event row.
//!
//! Every statement runs through [`crate::statement::run`], which gives it a span in the
//! webhook's trace.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pm_domain::dispute::{self, ChargebackChange, DisputeEffect, DisputeProgress};
use pm_domain::event::DisputeEventKind;
use pm_domain::order::OrderEffect;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook, WebhookKind};
use pm_domain::{DisputeId, EventId};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::events::{insert_event, EventTable};
use crate::statement;
use crate::StorageError;

/// When and under which id a webhook was accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The id of the event row to write (ingest's envelope id, or a fresh one).
    pub event_id: EventId,
    /// When the webhook was accepted; stamps the event row (and picks its partition).
    pub received_at: DateTime<Utc>,
    /// The correlation id of the request or message that brought it: the domain events it
    /// causes carry it.
    pub correlation_id: Option<std::sync::Arc<str>>,
}

impl Delivery {
    /// A delivery accepted now, with a fresh event id.
    pub fn now() -> Self {
        Self {
            event_id: EventId::generate(),
            received_at: pm_domain::time::now(),
            correlation_id: None,
        }
    }
}

/// The result of applying an order webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Recorded as an event; `effect` tells whether the order changed.
    Applied {
        event_id: EventId,
        effect: OrderEffect,
    },
    /// This provider event id was processed before; nothing was written.
    Duplicate,
}

/// The result of applying a chargeback webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargebackOutcome {
    Applied {
        event_id: EventId,
        dispute_id: DisputeId,
        effect: DisputeEffect,
    },
    Duplicate,
    /// The order is not known (yet): nothing was written, so a later retry, once the
    /// order webhook has arrived, applies the chargeback in full.
    OrderUnknown,
}

/// Records the provider event id; `false` when it was already there.
async fn first_delivery(
    conn: &mut PgConnection,
    kind: WebhookKind,
    provider_event_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, StorageError> {
    let statement = sqlx::query(
        "INSERT INTO processed_webhooks (source, provider_event_id, processed_at)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(provider_event_id)
    .bind(at)
    .execute(conn);
    let inserted = statement::run("INSERT", "processed_webhooks", statement)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// The JSON stored with a webhook event: what arrived and what it did.
#[derive(Serialize)]
struct WebhookEventData<'a, W> {
    effect: &'static str,
    webhook: &'a W,
}

/// Applies an order webhook inside the caller's transaction.
pub async fn apply_order(
    conn: &mut PgConnection,
    w: &OrderWebhook,
    delivery: &Delivery,
) -> Result<OrderOutcome, StorageError> {
    let trace_id = crate::outbox::current_trace_id();
    let correlation_id = delivery.correlation_id.as_deref();
    let (outbox_id, outbox_payload) =
        crate::outbox::order_webhook_event(w, correlation_id, trace_id.as_deref())?;
    let statement = sqlx::query_scalar(APPLY_ORDER_SQL)
        .bind(w.provider_event_id.as_str())
        .bind(delivery.received_at)
        .bind(w.order_id.as_str())
        .bind(w.user_id.as_uuid())
        .bind(w.status.as_str())
        .bind(w.created_at)
        .bind(w.updated_at)
        .bind(delivery.event_id.as_uuid())
        .bind(serde_json::to_string(w)?)
        .bind(outbox_id)
        .bind(outbox_payload)
        .bind(correlation_id)
        .bind(trace_id.as_deref())
        .bind(pm_domain::domain_event::SCHEMA_VERSION)
        .fetch_one(conn);
    // One statement: the dedupe record, the order, its event and its domain event in the
    // outbox (see APPLY_ORDER_SQL).
    let effect: Option<String> = statement::run("INSERT", "orders", statement).await?;
    Ok(match effect {
        None => OrderOutcome::Duplicate,
        Some(effect) => OrderOutcome::Applied {
            event_id: delivery.event_id,
            effect: order_effect(&effect)?,
        },
    })
}

/// Applies order webhooks inside the caller's transaction, as if one after another in the
/// given order, and returns their outcomes in that order.
///
/// The webhooks go to PostgreSQL in as few statements as their ids allow: a statement holds
/// at most one webhook per order and per provider event id (one row cannot be upserted twice
/// by one statement, and a duplicate delivery must see the first one's dedupe row), so
/// webhooks of the same order — or repeated deliveries of one event — are split into
/// successive *rounds*, each after the ones it must follow. Webhooks of distinct orders
/// share a round however many there are. Within a statement rows are taken in `order_id`
/// order, so concurrent statements lock orders in one global order.
///
/// A statement that fails fails the whole call (and the caller's transaction); callers that
/// must not let one webhook cost the others apply them again one by one (see the API's
/// webhook groups and the Kafka consumer).
pub async fn apply_orders(
    conn: &mut PgConnection,
    batch: &[(&OrderWebhook, Delivery)],
) -> Result<Vec<OrderOutcome>, StorageError> {
    let mut outcomes = vec![OrderOutcome::Duplicate; batch.len()];
    for round in order_rounds(batch) {
        if let [index] = round[..] {
            // A round of one takes the single-webhook statement: the set-based one costs
            // PostgreSQL more to plan and run for a single row.
            let (w, delivery) = &batch[index];
            outcomes[index] = apply_order(conn, w, delivery).await?;
            continue;
        }
        let trace_id = crate::outbox::current_trace_id();
        let rows = RoundColumns::of(batch, &round, trace_id.as_deref())?;
        let statement = sqlx::query_as::<_, (i64, Option<String>)>(APPLY_ORDERS_SQL)
            .bind(rows.provider_event_ids)
            .bind(rows.received_at)
            .bind(rows.order_ids)
            .bind(rows.user_ids)
            .bind(rows.statuses)
            .bind(rows.created_at)
            .bind(rows.updated_at)
            .bind(rows.event_ids)
            .bind(rows.webhooks)
            .bind(rows.outbox_event_ids)
            .bind(rows.outbox_payloads)
            .bind(rows.correlation_ids)
            .bind(trace_id.as_deref())
            .bind(pm_domain::domain_event::SCHEMA_VERSION)
            .fetch_all(&mut *conn);
        // One statement per round: the dedupe records, the orders, their events and their
        // domain events (see APPLY_ORDERS_SQL).
        let answers = statement::run("INSERT", "orders", statement).await?;
        if answers.len() != round.len() {
            return Err(StorageError::corrupt(
                "order webhook outcomes",
                format!("{} for {} webhooks", answers.len(), round.len()),
            ));
        }
        for (position, effect) in answers {
            let index = usize::try_from(position - 1)
                .ok()
                .and_then(|i| round.get(i))
                .copied()
                .ok_or_else(|| StorageError::corrupt("order webhook position", position))?;
            outcomes[index] = match effect {
                None => OrderOutcome::Duplicate,
                Some(effect) => OrderOutcome::Applied {
                    event_id: batch[index].1.event_id,
                    effect: order_effect(&effect)?,
                },
            };
        }
    }
    Ok(outcomes)
}

fn order_effect(effect: &str) -> Result<OrderEffect, StorageError> {
    Ok(match effect {
        "created" => OrderEffect::Created,
        "applied" => OrderEffect::Applied,
        "stale" => OrderEffect::Stale,
        "final_kept" => OrderEffect::FinalKept,
        other => return Err(StorageError::corrupt("order webhook effect", other)),
    })
}

/// Splits `batch` into rounds (lists of indexes into it): a webhook goes into the round
/// after the last one holding its order or its provider event id, so each round has at most
/// one webhook per order and per event, and webhooks of one order keep their relative order.
fn order_rounds(batch: &[(&OrderWebhook, Delivery)]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut last_of_order: HashMap<&str, usize> = HashMap::new();
    let mut last_of_event: HashMap<&str, usize> = HashMap::new();
    for (index, (w, _)) in batch.iter().enumerate() {
        let order = w.order_id.as_str();
        let event = w.provider_event_id.as_str();
        let round = [last_of_order.get(order), last_of_event.get(event)]
            .into_iter()
            .flatten()
            .map(|r| r + 1)
            .max()
            .unwrap_or(0);
        if round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[round].push(index);
        last_of_order.insert(order, round);
        last_of_event.insert(event, round);
    }
    rounds
}

/// One round's webhooks as the columns [`APPLY_ORDERS_SQL`] unnests.
#[derive(Default)]
struct RoundColumns<'a> {
    provider_event_ids: Vec<&'a str>,
    received_at: Vec<DateTime<Utc>>,
    order_ids: Vec<&'a str>,
    user_ids: Vec<uuid::Uuid>,
    statuses: Vec<&'static str>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    event_ids: Vec<uuid::Uuid>,
    webhooks: Vec<String>,
    outbox_event_ids: Vec<uuid::Uuid>,
    outbox_payloads: Vec<String>,
    correlation_ids: Vec<Option<&'a str>>,
}

impl<'a> RoundColumns<'a> {
    fn of(
        batch: &'a [(&'a OrderWebhook, Delivery)],
        round: &[usize],
        trace_id: Option<&str>,
    ) -> Result<Self, StorageError> {
        let mut c = RoundColumns::default();
        for &index in round {
            let (w, delivery) = &batch[index];
            c.provider_event_ids.push(w.provider_event_id.as_str());
            c.received_at.push(delivery.received_at);
            c.order_ids.push(w.order_id.as_str());
            c.user_ids.push(w.user_id.as_uuid());
            c.statuses.push(w.status.as_str());
            c.created_at.push(w.created_at);
            c.updated_at.push(w.updated_at);
            c.event_ids.push(delivery.event_id.as_uuid());
            c.webhooks.push(serde_json::to_string(w)?);
            let correlation_id = delivery.correlation_id.as_deref();
            let (id, payload) = crate::outbox::order_webhook_event(w, correlation_id, trace_id)?;
            c.outbox_event_ids.push(id);
            c.outbox_payloads.push(payload);
            c.correlation_ids.push(correlation_id);
        }
        Ok(c)
    }
}

/// An order webhook in one statement, so one round trip (and, outside a transaction, no
/// BEGIN/COMMIT) applies it: the webhook rate of sync mode is bounded by round trips.
///
/// It is [`pm_domain::order::decide`] compiled to SQL — the `ON CONFLICT … DO UPDATE … WHERE` holds the
/// rule (final states are kept; a webhook applies when it is at a later lifecycle stage, or
/// at the same stage with a newer provider `updated_at`) and is evaluated on the locked,
/// latest row version. `tests/it/webhooks.rs` checks it against `pm_domain::order::apply` for every
/// pair of statuses and time orders. The dedupe insert comes first: a concurrent delivery of
/// the same event waits on it and then does nothing. The effect recorded in the event's
/// data is read from the statement's snapshot, so under a concurrent change of the same
/// order it may say `stale` where `final_kept` was meant; the state change itself is exact.
/// A change also bumps the order's `outbox_sequence` and writes its domain event
/// (`order_created` or `order_status_changed`, [`crate::outbox`]) with that sequence.
const APPLY_ORDER_SQL: &str = concat!(
    r"
WITH dedupe AS (
    INSERT INTO processed_webhooks (source, provider_event_id, processed_at)
    VALUES ('order', $1, $2)
    ON CONFLICT DO NOTHING
    RETURNING 1
), upsert AS (
    INSERT INTO orders AS o (order_id, user_id, status, created_at, updated_at, outbox_sequence)
    SELECT $3, $4, $5, $6, $7, 1 FROM dedupe
    ON CONFLICT (order_id) DO UPDATE
        SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
            outbox_sequence = o.outbox_sequence + 1
        WHERE o.status NOT IN ('success', 'failed')
          AND (
                (CASE EXCLUDED.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              > (CASE o.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
            OR ((CASE EXCLUDED.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              = (CASE o.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              AND EXCLUDED.updated_at > o.updated_at)
          )
    RETURNING (xmax = 0) AS created, o.outbox_sequence
), effect AS (
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM dedupe) THEN NULL
        WHEN (SELECT created FROM upsert) THEN 'created'
        WHEN EXISTS (SELECT 1 FROM upsert) THEN 'applied'
        WHEN (SELECT status FROM orders WHERE order_id = $3) IN ('success', 'failed') THEN 'final_kept'
        ELSE 'stale'
    END AS effect
), event AS (
    INSERT INTO order_events (event_id, order_id, kind, provider_event_id, data, created_at)
    SELECT $8, $3, 'webhook_received', $1,
           jsonb_build_object('effect', effect.effect, 'webhook', $9::jsonb), $2
    FROM effect
    WHERE effect.effect IS NOT NULL
), domain_event AS (
    INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type,
                        schema_version, payload, correlation_id, trace_id, created_at)
    SELECT $10, 'order', $3, upsert.outbox_sequence, t.event_type, $14,
           jsonb_set(jsonb_set($11::jsonb, '{sequence}', to_jsonb(upsert.outbox_sequence)),
                     '{event_type}', to_jsonb(t.event_type)),
           $12, $13, now()
    FROM upsert
    CROSS JOIN LATERAL (SELECT CASE WHEN upsert.created THEN 'order_created'
                                    ELSE 'order_status_changed' END AS event_type) t
    WHERE ",
    crate::outbox::outbox_on!(),
    "
)
SELECT effect FROM effect
"
);

/// A round of order webhooks in one statement, so one round trip (and, outside a
/// transaction, no BEGIN/COMMIT) applies them: the webhook rate of sync mode is bounded by
/// round trips and commits. The parameters are one array per column; `position` is the
/// 1-based place of a webhook in them, and the answer is one row per webhook: its effect,
/// or NULL when its provider event id was processed before (a duplicate, nothing written).
///
/// It is [`pm_domain::order::decide`] compiled to SQL — the `ON CONFLICT … DO UPDATE … WHERE` holds the
/// rule (final states are kept; a webhook applies when it is at a later lifecycle stage, or
/// at the same stage with a newer provider `updated_at`) and is evaluated on the locked,
/// latest row version. `tests/it/webhooks.rs` checks it against `pm_domain::order::apply` for every
/// pair of statuses and time orders, and batches against the same webhooks one at a time.
/// The dedupe insert comes first: a concurrent delivery of the same event waits on it and
/// then does nothing. The joins on `provider_event_id` and `order_id` are one-to-one
/// because a round holds each at most once (see [`order_rounds`]). The effect recorded in
/// the event's data is read from the statement's snapshot, so under a concurrent change of
/// the same order it may say `stale` where `final_kept` was meant; the state change itself
/// is exact. Each change also bumps its order's `outbox_sequence` and writes its domain
/// event ([`crate::outbox`]) with that sequence.
const APPLY_ORDERS_SQL: &str = concat!(
    r"
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[], $8::uuid[], $9::text[],
                         $10::uuid[], $11::text[], $12::text[])
        WITH ORDINALITY AS i(provider_event_id, received_at, order_id, user_id, status,
                             created_at, updated_at, event_id, webhook,
                             outbox_event_id, outbox_payload, correlation_id, position)
), dedupe AS (
    INSERT INTO processed_webhooks (source, provider_event_id, processed_at)
    SELECT 'order', provider_event_id, received_at FROM input ORDER BY order_id
    ON CONFLICT DO NOTHING
    RETURNING provider_event_id
), fresh AS (
    SELECT input.* FROM input JOIN dedupe USING (provider_event_id)
), upsert AS (
    INSERT INTO orders AS o (order_id, user_id, status, created_at, updated_at, outbox_sequence)
    SELECT order_id, user_id, status, created_at, updated_at, 1 FROM fresh ORDER BY order_id
    ON CONFLICT (order_id) DO UPDATE
        SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
            outbox_sequence = o.outbox_sequence + 1
        WHERE o.status NOT IN ('success', 'failed')
          AND (
                (CASE EXCLUDED.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              > (CASE o.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
            OR ((CASE EXCLUDED.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              = (CASE o.status WHEN 'created' THEN 0 WHEN 'updated' THEN 1 ELSE 2 END)
              AND EXCLUDED.updated_at > o.updated_at)
          )
    RETURNING o.order_id, (o.xmax = 0) AS created, o.outbox_sequence
), effect AS (
    SELECT fresh.*, CASE
        WHEN upsert.created THEN 'created'
        WHEN upsert.order_id IS NOT NULL THEN 'applied'
        WHEN (SELECT status FROM orders WHERE orders.order_id = fresh.order_id)
             IN ('success', 'failed') THEN 'final_kept'
        ELSE 'stale'
    END AS effect
    FROM fresh LEFT JOIN upsert ON upsert.order_id = fresh.order_id
), event AS (
    INSERT INTO order_events (event_id, order_id, kind, provider_event_id, data, created_at)
    SELECT event_id, order_id, 'webhook_received', provider_event_id,
           jsonb_build_object('effect', effect, 'webhook', webhook::jsonb), received_at
    FROM effect
), domain_event AS (
    INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type,
                        schema_version, payload, correlation_id, trace_id, created_at)
    SELECT fresh.outbox_event_id, 'order', fresh.order_id, upsert.outbox_sequence, t.event_type,
           $14, jsonb_set(jsonb_set(fresh.outbox_payload::jsonb, '{sequence}',
                                    to_jsonb(upsert.outbox_sequence)),
                          '{event_type}', to_jsonb(t.event_type)),
           fresh.correlation_id, $13, now()
    FROM fresh JOIN upsert ON upsert.order_id = fresh.order_id
    CROSS JOIN LATERAL (SELECT CASE WHEN upsert.created THEN 'order_created'
                                    ELSE 'order_status_changed' END AS event_type) t
    WHERE ",
    crate::outbox::outbox_on!(),
    "
)
SELECT input.position, effect.effect
FROM input LEFT JOIN effect ON effect.position = input.position
"
);

#[derive(sqlx::FromRow)]
struct DisputeProgressRow {
    dispute_id: uuid::Uuid,
    status: String,
    evidence_due_at: Option<DateTime<Utc>>,
    provider_updated_at: DateTime<Utc>,
    opened_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl DisputeProgressRow {
    fn progress(&self) -> Result<DisputeProgress, StorageError> {
        Ok(DisputeProgress {
            status: self
                .status
                .parse()
                .map_err(|_| StorageError::corrupt("disputes.status", &self.status))?,
            evidence_due_at: self.evidence_due_at,
            provider_updated_at: self.provider_updated_at,
            opened_at: self.opened_at,
            closed_at: self.closed_at,
        })
    }
}

async fn lock_dispute_of_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<DisputeProgressRow>, StorageError> {
    let statement = sqlx::query_as(
        "SELECT dispute_id, status, evidence_due_at, provider_updated_at, opened_at, closed_at
         FROM disputes WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(conn);
    Ok(statement::run("SELECT", "disputes", statement).await?)
}

/// Applies a chargeback webhook inside the caller's transaction.
pub async fn apply_chargeback(
    conn: &mut PgConnection,
    w: &ChargebackWebhook,
    delivery: &Delivery,
) -> Result<ChargebackOutcome, StorageError> {
    let statement = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders WHERE order_id = $1)")
        .bind(w.order_id.as_str())
        .fetch_one(&mut *conn);
    let order_known: bool = statement::run("SELECT", "orders", statement).await?;
    if !order_known {
        return Ok(ChargebackOutcome::OrderUnknown);
    }
    if !first_delivery(
        conn,
        WebhookKind::Chargeback,
        w.provider_event_id.as_str(),
        delivery.received_at,
    )
    .await?
    {
        return Ok(ChargebackOutcome::Duplicate);
    }
    let change = ChargebackChange {
        status: w.status,
        resolution: w.resolution,
        occurred_at: w.occurred_at,
        evidence_due_at: w.evidence_due_at,
    };

    let mut current = lock_dispute_of_order(conn, w.order_id.as_str()).await?;
    if current.is_none() {
        let (fresh, _) = dispute::apply(None, change);
        let dispute_id = DisputeId::generate();
        let currency = w.money.currency();
        let statement = sqlx::query(
            "INSERT INTO disputes (dispute_id, order_id, user_id, status, reason, amount, currency,
                                   opened_at, evidence_due_at, closed_at, provider_updated_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(dispute_id.as_uuid())
        .bind(w.order_id.as_str())
        .bind(w.user_id.as_uuid())
        .bind(fresh.status.as_str())
        .bind(&w.reason)
        .bind(w.money.amount().value())
        .bind(currency.code())
        .bind(fresh.opened_at)
        .bind(fresh.evidence_due_at)
        .bind(fresh.closed_at)
        .bind(fresh.provider_updated_at)
        .bind(delivery.received_at)
        .execute(&mut *conn);
        let inserted = statement::run("INSERT", "disputes", statement)
            .await?
            .rows_affected();
        if inserted == 1 {
            dispute_changed(conn, w, delivery, dispute_id.as_uuid(), None, &fresh).await?;
            return record_chargeback(
                conn,
                w,
                delivery,
                dispute_id.as_uuid(),
                DisputeEffect::Created,
            )
            .await;
        }
        // Another transaction created it between our read and insert: apply to theirs.
        current = lock_dispute_of_order(conn, w.order_id.as_str()).await?;
    }
    let row =
        current.ok_or_else(|| StorageError::corrupt("disputes.order_id", w.order_id.as_str()))?;
    let previous = row.progress()?;
    let (next, effect) = dispute::apply(Some(previous), change);
    if effect.changes_state() {
        let statement = sqlx::query(
            "UPDATE disputes SET status = $2, evidence_due_at = $3, provider_updated_at = $4,
                                 opened_at = $5, closed_at = $6
             WHERE dispute_id = $1",
        )
        .bind(row.dispute_id)
        .bind(next.status.as_str())
        .bind(next.evidence_due_at)
        .bind(next.provider_updated_at)
        .bind(next.opened_at)
        .bind(next.closed_at)
        .execute(&mut *conn);
        statement::run("UPDATE", "disputes", statement).await?;
        dispute_changed(conn, w, delivery, row.dispute_id, Some(&previous), &next).await?;
    }
    record_chargeback(conn, w, delivery, row.dispute_id, effect).await
}

/// The domain events of a chargeback that changed its dispute: `dispute_opened` for a new
/// one, `dispute_won` / `dispute_lost` for a decision (a dispute whose first webhook is
/// already its decision gets both), `dispute_status_changed` for anything else.
async fn dispute_changed(
    conn: &mut PgConnection,
    w: &ChargebackWebhook,
    delivery: &Delivery,
    dispute_id: uuid::Uuid,
    previous: Option<&DisputeProgress>,
    next: &DisputeProgress,
) -> Result<(), StorageError> {
    use pm_domain::dispute::DisputeStatus;
    use pm_domain::domain_event::EventType;
    let aggregate_id = dispute_id.to_string();
    let at = pm_domain::time::now();
    let format = |t: Option<DateTime<Utc>>| t.map(|t| pm_domain::time::format(&t));
    let mut events = Vec::with_capacity(2);
    if previous.is_none() {
        events.push((
            EventType::DisputeOpened,
            serde_json::json!({
                "dispute_id": dispute_id,
                "order_id": w.order_id.as_str(),
                "user_id": w.user_id.as_uuid(),
                "status": next.status.as_str(),
                "reason": w.reason,
                "amount": w.money.amount_text(),
                "currency": w.money.currency().code(),
                "opened_at": pm_domain::time::format(&next.opened_at),
                "evidence_due_at": format(next.evidence_due_at),
            }),
        ));
    }
    let decision = match next.status {
        DisputeStatus::Won => Some(EventType::DisputeWon),
        DisputeStatus::Lost => Some(EventType::DisputeLost),
        _ => None,
    };
    match (decision, previous) {
        (Some(event_type), _) => events.push((
            event_type,
            serde_json::json!({
                "dispute_id": dispute_id,
                "order_id": w.order_id.as_str(),
                "reason": w.reason,
                "amount": w.money.amount_text(),
                "currency": w.money.currency().code(),
                "opened_at": pm_domain::time::format(&next.opened_at),
                "closed_at": format(next.closed_at),
                "previous_status": previous.map(|p| p.status.as_str()),
            }),
        )),
        (None, Some(previous)) => events.push((
            EventType::DisputeStatusChanged,
            serde_json::json!({
                "dispute_id": dispute_id,
                "order_id": w.order_id.as_str(),
                "status": next.status.as_str(),
                "previous_status": previous.status.as_str(),
                "evidence_due_at": format(next.evidence_due_at),
                "closed_at": format(next.closed_at),
            }),
        )),
        (None, None) => {}
    }
    for (event_type, data) in events {
        crate::outbox::append(
            conn,
            crate::outbox::NewEvent {
                event_type,
                aggregate_id: &aggregate_id,
                data,
                correlation_id: delivery.correlation_id.as_deref(),
                at,
            },
        )
        .await?;
    }
    Ok(())
}

async fn record_chargeback(
    conn: &mut PgConnection,
    w: &ChargebackWebhook,
    delivery: &Delivery,
    dispute_id: uuid::Uuid,
    effect: DisputeEffect,
) -> Result<ChargebackOutcome, StorageError> {
    let data = serde_json::to_string(&WebhookEventData {
        effect: effect.as_str(),
        webhook: w,
    })?;
    let dispute_id_text = dispute_id.to_string();
    let statement = insert_event(
        conn,
        EventTable::Dispute,
        delivery.event_id,
        &dispute_id_text,
        DisputeEventKind::for_chargeback(w.status).as_str(),
        Some(w.provider_event_id.as_str()),
        &data,
        delivery.received_at,
    );
    statement::run("INSERT", "dispute_events", statement).await?;
    Ok(ChargebackOutcome::Applied {
        event_id: delivery.event_id,
        dispute_id: DisputeId::from_uuid(dispute_id),
        effect,
    })
}

/// Applies one order webhook in its own transaction.
pub async fn apply_order_tx(
    pool: &PgPool,
    w: &OrderWebhook,
    delivery: &Delivery,
) -> Result<OrderOutcome, StorageError> {
    // One statement is its own transaction: no BEGIN/COMMIT round trips.
    let mut conn = crate::db::acquire(pool).await?;
    let outcome = apply_order(&mut conn, w, delivery).await?;
    Ok(outcome)
}

/// Applies one chargeback webhook in its own transaction (rolled back when the order is
/// unknown, so nothing of it is kept).
pub async fn apply_chargeback_tx(
    pool: &PgPool,
    w: &ChargebackWebhook,
    delivery: &Delivery,
) -> Result<ChargebackOutcome, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let outcome = apply_chargeback(&mut tx, w, delivery).await?;
    if outcome == ChargebackOutcome::OrderUnknown {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use pm_domain::order::OrderStatus;
    use pm_domain::webhook::{Meta, OrderWebhook};
    use pm_domain::{OrderId, ProviderEventId, UserId};

    use super::{order_rounds, Delivery};

    fn webhook(event: &str, order: &str) -> OrderWebhook {
        OrderWebhook {
            provider_event_id: ProviderEventId::parse(event).expect("id"),
            order_id: OrderId::parse(order).expect("id"),
            user_id: UserId::from_uuid(uuid::Uuid::nil()),
            status: OrderStatus::Created,
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            meta: Meta::new(),
        }
    }

    fn rounds(pairs: &[(&str, &str)]) -> Vec<Vec<usize>> {
        let webhooks: Vec<_> = pairs.iter().map(|(e, o)| webhook(e, o)).collect();
        let batch: Vec<_> = webhooks.iter().map(|w| (w, Delivery::now())).collect();
        order_rounds(&batch)
    }

    #[test]
    fn distinct_orders_share_one_round() {
        assert_eq!(
            rounds(&[("e1", "a"), ("e2", "b"), ("e3", "c")]),
            vec![vec![0, 1, 2]]
        );
    }

    #[test]
    fn an_order_or_an_event_seen_before_waits_for_the_next_round() {
        assert_eq!(
            rounds(&[
                ("e1", "a"),
                ("e2", "a"), // same order: after e1
                ("e3", "b"),
                ("e1", "c"), // same event as the first: after it
                ("e4", "a"), // after e2
                ("e5", "b"), // after e3
            ]),
            vec![vec![0, 2], vec![1, 3, 5], vec![4]]
        );
    }

    #[test]
    fn an_empty_batch_has_no_rounds() {
        assert!(rounds(&[]).is_empty());
    }
}
