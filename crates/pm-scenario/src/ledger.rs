//! The expected final state: what the merchant's database must contain once every
//! delivery of a plan was sent and every action performed.
//!
//! The emitter writes it as JSON next to its report; `pmctl verify` reads it back and
//! compares it with the database. Amounts are strings with the currency's minor units
//! (`"100.50"`), timestamps RFC 3339 in UTC.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use pm_domain::dispute::DisputeStatus;
use pm_domain::order::OrderStatus;
use pm_domain::{Currency, OrderId, ProviderEventId, UserId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::plan::FaultReason;

pub(crate) mod build;

/// The version of the ledger's JSON format; [`Ledger::from_json`] refuses others.
pub const LEDGER_FORMAT: u32 = 1;

/// The expected final state of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Always [`LEDGER_FORMAT`].
    pub format: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The seed the plan was generated with.
    pub seed: u64,
    /// The prefix of every id in the run.
    pub id_prefix: String,
    /// Every order, in generation order.
    pub orders: Vec<OrderExpectation>,
    /// Every dispute, in generation order of its order.
    pub disputes: Vec<DisputeExpectation>,
    /// Totals, for reports and quick checks.
    pub counts: Counts,
    /// Event ids of fault deliveries: none of them may be stored anywhere.
    pub rejected_event_ids: BTreeSet<ProviderEventId>,
}

/// What one order must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExpectation {
    /// The provider's order id.
    pub order_id: OrderId,
    /// Its customer.
    pub user_id: UserId,
    /// The status of the lifecycle's last webhook.
    pub final_status: OrderStatus,
    /// `created_at` carried by every webhook of the order.
    #[serde(with = "pm_domain::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// `updated_at` of the lifecycle's last webhook.
    #[serde(with = "pm_domain::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Distinct webhook event ids of the order: each stored exactly once, as one
    /// `webhook_received` event.
    pub provider_event_ids: BTreeSet<ProviderEventId>,
}

/// What one dispute must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeExpectation {
    /// The disputed order (one dispute per order).
    pub order_id: OrderId,
    /// `won`, `lost` or `closed` when decided; otherwise `submitted`, `under_review` or
    /// `open` depending on the merchant's actions.
    pub final_status: DisputeStatus,
    /// Disputed amount, with the currency's minor units (`"100.50"`).
    pub amount: Decimal,
    /// ISO 4217 currency.
    pub currency: Currency,
    /// The chargeback reason.
    pub reason: String,
    /// `occurred_at` of the `opened` webhook.
    #[serde(with = "pm_domain::time::rfc3339")]
    pub opened_at: DateTime<Utc>,
    /// `occurred_at` of the decision, when there is one.
    #[serde(with = "pm_domain::time::rfc3339::option")]
    pub closed_at: Option<DateTime<Utc>>,
    /// The due date the dispute must end with, given the delivery order (an `updated`
    /// delivered after the decision no longer changes it).
    #[serde(with = "pm_domain::time::rfc3339::option")]
    pub evidence_due_at: Option<DateTime<Utc>>,
    /// Distinct chargeback webhook event ids (`webhook_opened`, `webhook_updated`,
    /// `provider_decision` events), each stored exactly once.
    pub provider_event_ids: BTreeSet<ProviderEventId>,
    /// The merchant stored evidence: one `evidence_added` event.
    pub evidence_added: bool,
    /// The merchant submitted it: one `evidence_submitted` event and a submission id.
    pub evidence_submitted: bool,
}

/// Totals of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Orders generated.
    pub orders: u64,
    /// Disputes generated.
    pub disputes: u64,
    /// All deliveries.
    pub deliveries: u64,
    /// First deliveries of real webhooks (distinct stored events).
    pub originals: u64,
    /// Repeated deliveries of real webhooks.
    pub duplicates: u64,
    /// Bad deliveries, by reason (every reason listed, zeros included).
    pub faults: BTreeMap<FaultReason, u64>,
    /// Originals held back within the reorder window.
    pub reordered: u64,
    /// Originals delivered late.
    pub late: u64,
    /// Merchant actions.
    pub actions: u64,
}

impl Counts {
    /// Bad deliveries of every reason together.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// A ledger that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Not a ledger document.
    #[error("not a valid ledger file: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by an incompatible version.
    #[error("ledger format {found} is not supported (expected {LEDGER_FORMAT})")]
    Format {
        /// The format found in the file.
        found: u32,
    },
}

impl Ledger {
    /// Pretty JSON, stable: the same plan always gives the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Every field is a string, number, bool, list or string-keyed map: cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a ledger written by [`Ledger::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, LedgerError> {
        let ledger: Ledger = serde_json::from_slice(bytes)?;
        if ledger.format != LEDGER_FORMAT {
            return Err(LedgerError::Format {
                found: ledger.format,
            });
        }
        Ok(ledger)
    }

    /// Every event id that must be stored (orders' and disputes').
    pub fn stored_event_ids(&self) -> impl Iterator<Item = &ProviderEventId> {
        self.orders
            .iter()
            .flat_map(|o| &o.provider_event_ids)
            .chain(self.disputes.iter().flat_map(|d| &d.provider_event_ids))
    }
}
