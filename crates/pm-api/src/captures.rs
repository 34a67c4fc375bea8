//! Captures: what a provider answer means for the stored capture, and the reconciliation
//! that settles captures whose answer was lost.
//!
//! The rules (see `pm_storage::captures` for the invariant that enforces them):
//! - An answer with a status is *known*: `success` captured, anything else did not.
//! - A refusal the provider gives about the request itself (4xx other than 409/429) is
//!   known too: it did not capture. So is a request that could not be sent.
//! - Anything else — a timeout, a reset connection, 5xx after retries, 409, 429, an
//!   unreadable 2xx — is *unknown*: the provider may have captured. The capture stays open.
//!
//! The reconciliation asks the provider's capture lookup about every open capture no request
//! is working on. Found: its answer is stored. Not found, and the last attempt began longer
//! ago than `stale_after` (so no request of ours can still reach the provider): the capture
//! is settled as failed and the order may be captured under a new key. The provider
//! unreachable: it stays open for the next round.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pm_provider::{CaptureOutcome, ProviderClient, ProviderError};
use pm_storage::audit::Actor;
use pm_storage::captures::{self, CaptureResult, SettledBy};
use pm_storage::{PgPool, StorageError};
use serde::Serialize;

/// What a provider call under a capture's key told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Known(CaptureResult),
    /// The provider may or may not have captured; the text says what went wrong.
    Unknown(String),
}

impl Answer {
    /// Classifies the result of a capture call.
    pub fn of_capture(result: Result<CaptureOutcome, ProviderError>) -> Answer {
        match result {
            Ok(outcome) => Answer::Known(known(outcome)),
            Err(e) if e.is_definitive() => Answer::Known(CaptureResult::Failed {
                provider_tx_id: None,
                reason: match e {
                    ProviderError::Rejected {
                        status,
                        code,
                        message,
                        ..
                    } => format!("{message} ({code}, HTTP {status})"),
                    other => other.to_string(),
                },
            }),
            Err(e) => Answer::Unknown(e.to_string()),
        }
    }
}

fn known(outcome: CaptureOutcome) -> CaptureResult {
    if outcome.is_success() {
        CaptureResult::Success {
            provider_tx_id: outcome.transaction_id,
        }
    } else {
        CaptureResult::Failed {
            reason: format!(
                "provider status {:?} (transaction {})",
                outcome.status, outcome.transaction_id
            ),
            provider_tx_id: Some(outcome.transaction_id),
        }
    }
}

/// The reason stored on a capture the provider never saw.
pub const NOT_AT_PROVIDER: &str =
    "the provider has no capture under this idempotency key: the request never reached it";

/// How the reconciliation works.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileSettings {
    /// A pending capture whose attempt began longer ago than this is presumed abandoned;
    /// a capture the provider does not know is settled as failed only after this long.
    /// Must exceed the longest provider call (attempts × timeout + backoff).
    pub stale_after: Duration,
    /// Most captures looked at in one round.
    pub batch: i64,
}

/// What one round of reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Open captures looked at.
    pub examined: u32,
    /// Settled as captured (the provider had captured).
    pub captured: u32,
    /// Settled as not captured (the provider declined, or never saw the request).
    pub not_captured: u32,
    /// Left open: the provider has no record yet but the attempt is too recent, or another
    /// attempt began meanwhile.
    pub left_open: u32,
    /// Left open because the provider could not be asked; one line each.
    pub errors: Vec<String>,
}

/// One round: settles what the provider can tell about every open capture no request is
/// working on. Storage errors stop the round; provider errors are counted and skipped.
pub async fn reconcile(
    pool: &PgPool,
    provider: &ProviderClient,
    settings: ReconcileSettings,
    now: DateTime<Utc>,
) -> Result<ReconcileReport, StorageError> {
    let open = captures::unsettled(pool, now, settings.stale_after, settings.batch).await?;
    let mut report = ReconcileReport::default();
    let old_enough =
        now - chrono::Duration::from_std(settings.stale_after).unwrap_or(chrono::Duration::MAX);
    for capture in open {
        report.examined += 1;
        let key = &capture.idempotency_key;
        let correlation = format!("reconcile-{}", uuid::Uuid::new_v4().simple());
        let settled = match provider.capture_status(key, &correlation).await {
            Ok(Some(outcome)) => Some(
                captures::finish(
                    pool,
                    key,
                    &known(outcome),
                    SettledBy::Reconciliation,
                    &Actor::new(
                        SettledBy::Reconciliation.as_str(),
                        Some(correlation.clone()),
                    ),
                    pm_domain::time::now(),
                )
                .await?,
            ),
            Ok(None) if capture.attempt_started_at <= old_enough => {
                captures::give_up(
                    pool,
                    key,
                    capture.attempt_started_at,
                    NOT_AT_PROVIDER,
                    pm_domain::time::now(),
                )
                .await?
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(order_id = %capture.order_id, error = %e, "capture reconciliation: provider lookup failed");
                report
                    .errors
                    .push(format!("order {}: {e}", capture.order_id));
                continue;
            }
        };
        match settled {
            Some(c) if c.status == captures::CaptureStatus::Success => report.captured += 1,
            Some(c) if c.status == captures::CaptureStatus::Failed => report.not_captured += 1,
            _ => report.left_open += 1,
        }
    }
    if report.examined > 0 {
        tracing::info!(
            examined = report.examined,
            captured = report.captured,
            not_captured = report.not_captured,
            left_open = report.left_open,
            errors = report.errors.len(),
            "capture reconciliation round"
        );
    }
    Ok(report)
}
