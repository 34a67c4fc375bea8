//! Verification after a step: wait until the system has processed what it accepted, then
//! compare the database (through the API's read routes, like `pmctl verify`) with the
//! step's [`Expectation`]: nothing lost, nothing doubled, no rejected delivery stored,
//! every order and dispute in its expected status.
//!
//! In kafka mode webhooks are applied after they were accepted, so the comparison is
//! repeated until it passes, or until it stops improving for a while (the consumer is done
//! or stuck), or until a deadline.

use std::time::{Duration, Instant};

use crate::verify::{self, VerifyReport};
use serde::{Deserialize, Serialize};

use crate::loadtest::expect::Expectation;
use crate::LabError;
use pm_api_types::client::ApiAccess;

/// How long to wait for processing to finish.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The API (a key with the `read` scope).
    pub api: ApiAccess,
    /// Give up once the comparison has not improved for this long.
    pub quiet: Duration,
    /// Give up after this long in any case.
    pub timeout: Duration,
    /// Pause between two comparisons.
    pub interval: Duration,
}

impl CheckConfig {
    /// The defaults against `api`: give up after 10 s without progress or 3 minutes.
    pub fn new(api: ApiAccess) -> Self {
        CheckConfig {
            api,
            quiet: Duration::from_secs(10),
            timeout: Duration::from_secs(180),
            interval: Duration::from_secs(1),
        }
    }
}

/// The verification of one step, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Nothing lost, nothing doubled, nothing unexpected, every status as expected.
    pub ok: bool,
    /// Orders compared.
    pub orders_checked: u64,
    /// Disputes compared.
    pub disputes_checked: u64,
    /// Orders left out because an answer left their state unknown (timeouts, 5xx).
    pub orders_excluded: u64,
    /// Event ids that must be stored once.
    pub events_expected: u64,
    /// Of those, stored.
    pub events_stored: u64,
    /// Accepted but not stored.
    pub missing: u64,
    /// Stored more than once.
    pub doubled: u64,
    /// Stored but must not be (rejected deliveries, unknown ids on our orders).
    pub unexpected: u64,
    /// Orders and disputes in another status than expected.
    pub status_mismatches: u64,
    /// Disputes with another amount, currency, reason or evidence.
    pub dispute_mismatches: u64,
    /// Accepted chargebacks of orders of which nothing was stored: they cannot be applied
    /// (dead-lettered in kafka mode) and are not expected.
    #[serde(default)]
    pub chargebacks_without_order: u64,
    /// Bad deliveries checked never to be stored.
    pub rejected_checked: u64,
    /// Duplicate deliveries sent (each must have been suppressed).
    pub duplicates_sent: u64,
    /// How long the check waited for processing to finish, in milliseconds.
    pub waited_ms: u64,
    /// A few of the problems, for people.
    pub examples: Vec<String>,
}

impl VerifySummary {
    fn of(r: &VerifyReport, e: &Expectation, waited: Duration) -> Self {
        let examples = r
            .missing
            .iter()
            .map(|id| format!("missing {id}"))
            .chain(r.doubled.iter().map(|id| format!("doubled {id}")))
            .chain(r.unexpected.iter().map(|id| format!("unexpected {id}")))
            .chain(r.dispute_mismatches.iter().cloned())
            .chain(
                r.orders
                    .iter()
                    .chain(&r.disputes)
                    .filter(|row| row.expected != row.actual)
                    .map(|row| {
                        format!(
                            "{} expected {}, found {}",
                            row.count, row.expected, row.actual
                        )
                    }),
            )
            .take(10)
            .collect();
        VerifySummary {
            ok: r.ok(),
            orders_checked: e.ledger.orders.len() as u64,
            disputes_checked: e.ledger.disputes.len() as u64,
            orders_excluded: e.excluded_orders,
            events_expected: r.events_expected,
            events_stored: r.events_stored,
            missing: r.missing.len() as u64,
            doubled: r.doubled.len() as u64,
            unexpected: r.unexpected.len() as u64,
            status_mismatches: r.status_mismatches(),
            dispute_mismatches: r.dispute_mismatches.len() as u64,
            chargebacks_without_order: e.chargebacks_without_order,
            rejected_checked: e.ledger.rejected_event_ids.len() as u64,
            duplicates_sent: e.ledger.counts.duplicates,
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            examples,
        }
    }
}

/// Compares until the database matches `expectation`, or it stops improving, or the
/// deadline passes; returns the last comparison.
pub async fn check(
    config: &CheckConfig,
    expectation: &Expectation,
) -> Result<VerifySummary, LabError> {
    let started = Instant::now();
    let mut best = u64::MAX;
    let mut improved = Instant::now();
    loop {
        let report = verify::verify(&config.api, &expectation.ledger).await?;
        let waited = started.elapsed();
        if report.ok() {
            return Ok(VerifySummary::of(&report, expectation, waited));
        }
        let wrong = report.mismatches();
        if wrong < best {
            best = wrong;
            improved = Instant::now();
        }
        if improved.elapsed() >= config.quiet || waited >= config.timeout {
            return Ok(VerifySummary::of(&report, expectation, waited));
        }
        tokio::time::sleep(config.interval).await;
    }
}
