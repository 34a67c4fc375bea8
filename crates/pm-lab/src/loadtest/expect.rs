//! The expected database state of what a step actually sent, for `verify`.
//!
//! The scenario's own ledger describes the final state after *every* delivery and every
//! merchant action. A load test sends a cut of the scenario (the last plan is cut where the
//! step ends), performs no merchant action, may drop requests, and gets answers that
//! decide what must be stored. So the expectation is rebuilt from the answers: the
//! webhooks that were accepted are replayed through the domain's own state machines
//! ([`pm_domain::order::apply`], [`pm_domain::dispute::apply`]) — the rules the service
//! applies — which gives each order's and dispute's final state whatever the order of
//! arrival.
//!
//! What each answer means for a real webhook (all deliveries of one event together):
//! * `200`/`202` by any delivery: stored, exactly once;
//! * only `4xx` and `503` (the service stores nothing then): not stored;
//! * no answer or another `5xx`: unknown. Its order (with its dispute) is left out of the
//!   check and counted in [`Expectation::excluded_orders`], since it may or may not hold
//!   the event.
//!
//! Bad deliveries must never be stored, whatever they were answered. Orders of which
//! nothing was stored are not expected to exist.
//!
//! A chargeback can only be applied to an order the database holds. In sync mode the API
//! answers `404` otherwise (retried, see [`crate::loadtest::engine`]); in kafka mode ingest accepts it
//! (it has no database) and the consumer dead-letters it after its retries. So chargebacks
//! accepted for an order of which no order webhook was stored — its webhooks were dropped,
//! cut off by the end of the step, or rejected — are not expected in the database; they
//! are counted in [`Expectation::chargebacks_without_order`] (in kafka mode they are in the
//! dead-letter topic).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use pm_domain::dispute::{self, ChargebackChange, DisputeProgress};
use pm_domain::order::{self, OrderProgress};
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use pm_domain::{OrderId, ProviderEventId, UserId};
use pm_scenario::ledger::LEDGER_FORMAT;
use pm_scenario::{
    Counts, Delivery, DeliveryKind, DisputeExpectation, FaultReason, Ledger, OrderExpectation,
    Route,
};

use crate::loadtest::engine::Answer;

/// The expectation of one step.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// What the database must hold, as a ledger `pmctl verify` understands.
    pub ledger: Ledger,
    /// Orders left out because an answer leaves their state unknown.
    pub excluded_orders: u64,
    /// Accepted chargebacks whose order has no stored order webhook: they cannot be
    /// applied and are not expected.
    pub chargebacks_without_order: u64,
}

/// What is known about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    NotStored,
    Unknown,
    Stored,
}

fn fate(a: Answer) -> Option<Fate> {
    match a {
        Answer::NotSent | Answer::Dropped => None,
        Answer::Status(200 | 202) => Some(Fate::Stored),
        Answer::Status(s) if s < 500 || s == 503 => Some(Fate::NotStored),
        Answer::Status(_) | Answer::Failed(_) => Some(Fate::Unknown),
    }
}

#[derive(Debug)]
struct Event {
    id: ProviderEventId,
    route: Route,
    /// Its first delivery (all copies carry the same bytes).
    first: usize,
    fate: Fate,
}

/// Builds the expectation of `deliveries[i]` answered `answers[i]`. `scenario`, `seed` and
/// `id_prefix` only label the ledger.
pub fn expected(
    scenario: &str,
    seed: u64,
    id_prefix: &str,
    deliveries: &[Delivery],
    answers: &[Answer],
) -> Expectation {
    let mut counts = Counts {
        faults: FaultReason::ALL.into_iter().map(|r| (r, 0)).collect(),
        ..Counts::default()
    };
    let mut rejected = BTreeSet::new();
    let mut order_seq: Vec<OrderId> = Vec::new();
    let mut events: HashMap<OrderId, Vec<Event>> = HashMap::new();
    let mut slot: HashMap<ProviderEventId, (OrderId, usize)> = HashMap::new();
    for (i, (d, a)) in deliveries.iter().zip(answers).enumerate() {
        let Some(f) = fate(*a) else { continue };
        counts.deliveries += 1;
        match d.kind {
            DeliveryKind::Fault(reason) => {
                *counts.faults.entry(reason).or_default() += 1;
                rejected.extend(d.provider_event_id.clone());
                continue;
            }
            DeliveryKind::Original => counts.originals += 1,
            DeliveryKind::Duplicate { .. } => counts.duplicates += 1,
        }
        let Some(id) = d.provider_event_id.clone() else {
            continue;
        };
        let list = events.entry(d.order_id.clone()).or_insert_with(|| {
            order_seq.push(d.order_id.clone());
            Vec::new()
        });
        match slot.get(&id) {
            Some((_, k)) => {
                if let Some(e) = list.get_mut(*k) {
                    e.fate = e.fate.max(f);
                }
            }
            None => {
                slot.insert(id.clone(), (d.order_id.clone(), list.len()));
                list.push(Event {
                    id,
                    route: d.route,
                    first: i,
                    fate: f,
                });
            }
        }
    }

    let mut ledger = Ledger {
        format: LEDGER_FORMAT,
        scenario: scenario.to_owned(),
        seed,
        id_prefix: id_prefix.to_owned(),
        orders: Vec::new(),
        disputes: Vec::new(),
        counts,
        rejected_event_ids: rejected,
    };
    let mut excluded_orders = 0;
    let mut chargebacks_without_order = 0;
    for order_id in order_seq {
        let Some(list) = events.get(&order_id) else {
            continue;
        };
        if list.iter().any(|e| e.fate == Fate::Unknown) {
            excluded_orders += 1;
            continue;
        }
        let stored: Vec<&Event> = list.iter().filter(|e| e.fate == Fate::Stored).collect();
        let Some(o) = replay_order(&order_id, &stored, deliveries) else {
            chargebacks_without_order += stored
                .iter()
                .filter(|e| e.route == Route::Chargebacks)
                .count() as u64;
            continue;
        };
        ledger.orders.push(o);
        if let Some(d) = replay_dispute(&order_id, &stored, deliveries) {
            ledger.disputes.push(d);
        }
    }
    ledger.counts.orders = ledger.orders.len() as u64;
    ledger.counts.disputes = ledger.disputes.len() as u64;
    Expectation {
        ledger,
        excluded_orders,
        chargebacks_without_order,
    }
}

fn replay_order(
    order_id: &OrderId,
    stored: &[&Event],
    deliveries: &[Delivery],
) -> Option<OrderExpectation> {
    let mut progress: Option<OrderProgress> = None;
    let mut first: Option<(UserId, DateTime<Utc>)> = None;
    let mut ids = BTreeSet::new();
    for e in stored.iter().filter(|e| e.route == Route::Orders) {
        let Some(w) = deliveries
            .get(e.first)
            .and_then(|d| OrderWebhook::parse(&d.body).ok())
        else {
            continue;
        };
        first.get_or_insert((w.user_id, w.created_at));
        let incoming = OrderProgress {
            status: w.status,
            updated_at: w.updated_at,
        };
        progress = Some(order::apply(progress, incoming).0);
        ids.insert(e.id.clone());
    }
    let (p, (user_id, created_at)) = (progress?, first?);
    Some(OrderExpectation {
        order_id: order_id.clone(),
        user_id,
        final_status: p.status,
        created_at,
        updated_at: p.updated_at,
        provider_event_ids: ids,
    })
}

fn replay_dispute(
    order_id: &OrderId,
    stored: &[&Event],
    deliveries: &[Delivery],
) -> Option<DisputeExpectation> {
    let mut progress: Option<DisputeProgress> = None;
    let mut first: Option<ChargebackWebhook> = None;
    let mut ids = BTreeSet::new();
    for e in stored.iter().filter(|e| e.route == Route::Chargebacks) {
        let Some(w) = deliveries
            .get(e.first)
            .and_then(|d| ChargebackWebhook::parse(&d.body).ok())
        else {
            continue;
        };
        let change = ChargebackChange {
            status: w.status,
            resolution: w.resolution,
            occurred_at: w.occurred_at,
            evidence_due_at: w.evidence_due_at,
        };
        progress = Some(dispute::apply(progress, change).0);
        ids.insert(e.id.clone());
        first.get_or_insert(w);
    }
    let (p, w) = (progress?, first?);
    Some(DisputeExpectation {
        order_id: order_id.clone(),
        final_status: p.status,
        amount: w.money.amount().value(),
        currency: w.money.currency(),
        reason: w.reason,
        opened_at: p.opened_at,
        closed_at: p.closed_at,
        evidence_due_at: p.evidence_due_at,
        provider_event_ids: ids,
        evidence_added: false,
        evidence_submitted: false,
    })
}

/// Final answers by kind of delivery, for reports: `(kind, status) → count`.
pub fn answers_by_kind(deliveries: &[Delivery], answers: &[Answer]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (d, a) in deliveries.iter().zip(answers) {
        let kind = match d.kind {
            DeliveryKind::Original => "original".to_owned(),
            DeliveryKind::Duplicate { .. } => "duplicate".to_owned(),
            DeliveryKind::Fault(r) => format!("fault:{}", r.as_str()),
        };
        let answer = match a {
            Answer::NotSent => "not sent".to_owned(),
            Answer::Dropped => "dropped".to_owned(),
            Answer::Status(s) => s.to_string(),
            Answer::Failed(f) => f.as_str().to_owned(),
        };
        *out.entry(format!("{kind} {answer}")).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests;
