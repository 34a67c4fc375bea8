//! Kafka mode: the handler that applies batches of webhook envelopes from Kafka.
//!
//! A batch (one partition's messages) is applied in one transaction — the main lever for
//! throughput — and the consumer commits the offsets only after that transaction
//! committed. Decoding happens before the transaction: an undecodable message is
//! rejected (dead-lettered at once) without touching the database. A chargeback whose
//! order is not known yet writes nothing and is reported retryable (the messages after it
//! wait for its retries, keeping the partition's order).
//!
//! Each message is applied in the consumer span of [`Received::process_span`] (a child of
//! the producer's span in ingest), so its database statements join the webhook's trace.
//!
//! Database errors: only those the input itself causes (SQLSTATE classes 22 and 23) can
//! cost a message. Such an error aborts the batch, which is then applied one message per
//! transaction so that only the message that cannot be stored is dead-lettered. Every
//! other failure — the database down or read-only, a missing table, a revoked grant, a
//! statement timeout, an unknown SQLSTATE — is the operator's to fix, not the input's:
//! it is transient, so the batch is retried and the partition waits, with a metric and a
//! log line naming the cause.

use pm_domain::envelope::WebhookEnvelope;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook, WebhookKind};
use pm_kafka::consumer::{Handler, Outcome, Received, Transient};
use pm_storage::webhooks::{self, ChargebackOutcome, Delivery, OrderOutcome};
use pm_storage::{PgPool, StorageError};
use tracing::Instrument as _;

use crate::state::{ApiMetrics, WebhookLabels};

/// Applies the envelopes of one topic.
#[derive(Debug, Clone)]
pub struct WebhookHandler {
    pool: PgPool,
    kind: WebhookKind,
    metrics: ApiMetrics,
}

impl WebhookHandler {
    pub fn new(pool: PgPool, kind: WebhookKind, metrics: ApiMetrics) -> Self {
        Self {
            pool,
            kind,
            metrics,
        }
    }
}

enum Decoded {
    Order(OrderWebhook, Delivery),
    Chargeback(ChargebackWebhook, Delivery),
}

impl WebhookHandler {
    fn decode(&self, m: &Received) -> Result<Decoded, String> {
        let payload = m.payload.as_deref().ok_or("the message has no value")?;
        let env: WebhookEnvelope =
            serde_json::from_slice(payload).map_err(|e| format!("not a webhook envelope: {e}"))?;
        if env.kind != self.kind {
            return Err(format!(
                "a {} envelope on the {} topic",
                env.kind.as_str(),
                self.kind.as_str()
            ));
        }
        let delivery = Delivery {
            event_id: env.event_id,
            received_at: env.received_at,
            correlation_id: m.header(pm_kafka::headers::CORRELATION_ID).map(Into::into),
        };
        let body = env.payload.get().as_bytes();
        match env.kind {
            WebhookKind::Order => OrderWebhook::parse(body).map(|w| Decoded::Order(w, delivery)),
            WebhookKind::Chargeback => {
                ChargebackWebhook::parse(body).map(|w| Decoded::Chargeback(w, delivery))
            }
        }
        .map_err(|e| e.to_string())
    }

    fn count(&self, outcome: &'static str) {
        let kind = self.kind.as_str();
        self.metrics
            .webhooks
            .get_or_create(&WebhookLabels { kind, outcome })
            .inc();
    }

    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        d: &Decoded,
    ) -> Result<(Outcome, &'static str), StorageError> {
        Ok(match d {
            Decoded::Order(w, delivery) => (
                Outcome::Done,
                order_label(webhooks::apply_order(conn, w, delivery).await?),
            ),
            Decoded::Chargeback(w, delivery) => {
                match webhooks::apply_chargeback(conn, w, delivery).await? {
                    ChargebackOutcome::Applied { effect, .. } => (Outcome::Done, effect.as_str()),
                    ChargebackOutcome::Duplicate => (Outcome::Done, "duplicate"),
                    ChargebackOutcome::OrderUnknown => (
                        Outcome::Retry(format!("order {} is not known yet", w.order_id)),
                        "order_unknown",
                    ),
                }
            }
        })
    }

    /// All decodable messages in one transaction.
    async fn apply_batch(
        &self,
        batch: &[Received],
        decoded: &[Result<Decoded, String>],
    ) -> Result<Vec<(Outcome, &'static str)>, StorageError> {
        let mut tx = pm_storage::db::begin(&self.pool).await?;
        if self.kind == WebhookKind::Order {
            let out = apply_order_batch(&mut tx, batch, decoded).await?;
            tx.commit().await?;
            return Ok(out);
        }
        let mut out = Vec::with_capacity(decoded.len());
        for (m, d) in batch.iter().zip(decoded) {
            // After a message that must be retried, the rest wait so the partition's
            // order holds (the consumer hands them over again).
            if out.iter().any(|(o, _)| matches!(o, Outcome::Retry(_))) {
                out.push((Outcome::Skipped, "skipped"));
                continue;
            }
            out.push(match d {
                Ok(d) => self.apply(&mut tx, d).instrument(m.process_span()).await?,
                Err(e) => (Outcome::Reject(e.clone()), "rejected"),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One transaction per message: isolates a message the database refuses.
    async fn apply_each(
        &self,
        batch: &[Received],
        decoded: &[Result<Decoded, String>],
    ) -> Result<Vec<(Outcome, &'static str)>, StorageError> {
        let mut out = Vec::with_capacity(decoded.len());
        for (m, d) in batch.iter().zip(decoded) {
            if out.iter().any(|(o, _)| matches!(o, Outcome::Retry(_))) {
                out.push((Outcome::Skipped, "skipped"));
                continue;
            }
            let Ok(d) = d else {
                out.push((
                    Outcome::Reject(d.as_ref().err().cloned().unwrap_or_default()),
                    "rejected",
                ));
                continue;
            };
            let mut tx = pm_storage::db::begin(&self.pool).await?;
            match self.apply(&mut tx, d).instrument(m.process_span()).await {
                Ok(result) => {
                    tx.commit().await?;
                    out.push(result);
                }
                Err(e) if !e.is_caused_by_input() => return Err(e),
                Err(e) => {
                    tx.rollback().await?;
                    tracing::error!(error = %e, "the database refused a webhook; it goes to the DLQ");
                    out.push((
                        Outcome::Reject(format!("database refused it: {e}")),
                        "rejected",
                    ));
                }
            }
        }
        Ok(out)
    }
}

fn order_label(outcome: OrderOutcome) -> &'static str {
    match outcome {
        OrderOutcome::Applied { effect, .. } => effect.as_str(),
        OrderOutcome::Duplicate => "duplicate",
    }
}

/// The orders topic's batch: every decodable message in as few statements as its orders
/// allow, in offset order (see [`webhooks::apply_orders`]); an order webhook is never
/// retried, so nothing waits behind another. The statements run in the first message's
/// consumer span, which links to the others'.
async fn apply_order_batch(
    conn: &mut sqlx::PgConnection,
    batch: &[Received],
    decoded: &[Result<Decoded, String>],
) -> Result<Vec<(Outcome, &'static str)>, StorageError> {
    let mut out: Vec<(Outcome, &'static str)> = Vec::with_capacity(decoded.len());
    let mut applied = Vec::new();
    let mut orders = Vec::new();
    let mut spans = Vec::new();
    for (index, (m, d)) in batch.iter().zip(decoded).enumerate() {
        out.push(match d {
            Ok(Decoded::Order(w, delivery)) => {
                applied.push(index);
                orders.push((w, delivery.clone()));
                spans.push(m.process_span());
                (Outcome::Done, "")
            }
            // `decode` refuses a chargeback envelope on the orders topic.
            Ok(Decoded::Chargeback(..)) => (
                Outcome::Reject("a chargeback on the orders topic".to_owned()),
                "rejected",
            ),
            Err(e) => (Outcome::Reject(e.clone()), "rejected"),
        });
    }
    let Some(first) = spans.first() else {
        return Ok(out);
    };
    for other in &spans[1..] {
        first.follows_from(other);
    }
    let outcomes = webhooks::apply_orders(conn, &orders)
        .instrument(first.clone())
        .await?;
    for (index, outcome) in applied.into_iter().zip(outcomes) {
        out[index] = (Outcome::Done, order_label(outcome));
    }
    Ok(out)
}

fn transient(e: &StorageError) -> Transient {
    Transient::new(e.cause(), e.to_string())
}

impl Handler for WebhookHandler {
    async fn handle(&self, batch: &[Received]) -> Result<Vec<Outcome>, Transient> {
        let decoded: Vec<Result<Decoded, String>> = batch.iter().map(|m| self.decode(m)).collect();
        let kind = self.kind.as_str();
        let failed = |e: StorageError| {
            self.metrics.count_apply_error(kind, &e);
            transient(&e)
        };
        let results = match self.apply_batch(batch, &decoded).await {
            Ok(r) => r,
            Err(e) if !e.is_caused_by_input() => return Err(failed(e)),
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "batch refused; applying its messages one by one");
                self.apply_each(batch, &decoded).await.map_err(failed)?
            }
        };
        Ok(results
            .into_iter()
            .map(|(outcome, label)| {
                if outcome != Outcome::Skipped {
                    self.count(label);
                }
                outcome
            })
            .collect())
    }
}
