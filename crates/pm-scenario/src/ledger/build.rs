//! The ledger of a laid-out plan, from the stories (the truth) and the send order.
//!
//! Final statuses come from the stories alone: the domain's rules make the outcome
//! independent of delivery order and duplicates. Only the dispute's due date depends on
//! the order (an `updated` that arrives after the decision no longer applies), so it is
//! derived from where each chargeback webhook is first delivered.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use pm_domain::ProviderEventId;

use super::{Counts, DisputeExpectation, Ledger, OrderExpectation, LEDGER_FORMAT};
use crate::layout::Layout;
use crate::plan::{DeliveryKind, Displacement, FaultReason};
use crate::scenario::Scenario;
use crate::story::{DisputeStory, Fact, Story};

/// Builds the ledger.
pub(crate) fn build(scenario: &Scenario, stories: &[Story], layout: &Layout) -> Ledger {
    let orders = stories.iter().map(order).collect();
    let disputes = stories
        .iter()
        .enumerate()
        .filter_map(|(s, story)| {
            let d = story.dispute.as_ref()?;
            Some(dispute(story, d, &layout.first[s]))
        })
        .collect::<Vec<_>>();
    let mut counts = Counts {
        orders: stories.len() as u64,
        disputes: disputes.len() as u64,
        deliveries: layout.deliveries.len() as u64,
        actions: layout.actions.len() as u64,
        faults: FaultReason::ALL.into_iter().map(|r| (r, 0)).collect(),
        ..Counts::default()
    };
    let mut rejected_event_ids = BTreeSet::new();
    for d in &layout.deliveries {
        match d.kind {
            DeliveryKind::Original => counts.originals += 1,
            DeliveryKind::Duplicate { .. } => counts.duplicates += 1,
            DeliveryKind::Fault(reason) => {
                *counts.faults.entry(reason).or_default() += 1;
                rejected_event_ids.extend(d.provider_event_id.clone());
            }
        }
        match d.displaced {
            Some(Displacement::Reordered { .. }) => counts.reordered += 1,
            Some(Displacement::Late { .. }) => counts.late += 1,
            None => {}
        }
    }
    let config = scenario.config();
    Ledger {
        format: LEDGER_FORMAT,
        scenario: config.name.clone(),
        seed: config.seed,
        id_prefix: scenario.id_prefix().to_owned(),
        orders,
        disputes,
        counts,
        rejected_event_ids,
    }
}

fn order(story: &Story) -> OrderExpectation {
    let (final_status, updated_at) = story.last_order_state();
    OrderExpectation {
        order_id: story.order_id.clone(),
        user_id: story.user_id,
        final_status,
        created_at: story.created_at,
        updated_at,
        provider_event_ids: story
            .order_events()
            .map(|(e, _, _)| e.event_id.clone())
            .collect(),
    }
}

/// `occurred_at` and `evidence_due_at` of a chargeback event.
fn chargeback_times(story: &Story, event: usize) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    match story.events.get(event)?.fact {
        Fact::Chargeback {
            occurred_at,
            evidence_due_at,
            ..
        } => Some((occurred_at, evidence_due_at)),
        Fact::Order { .. } => None,
    }
}

fn dispute(story: &Story, d: &DisputeStory, first: &[usize]) -> DisputeExpectation {
    let opened = chargeback_times(story, d.opened);
    let updated = d.updated.and_then(|i| chargeback_times(story, i));
    let decision = d.decision.and_then(|i| chargeback_times(story, i));
    let at = |i: Option<usize>| i.and_then(|i| first.get(i).copied());
    let (o, u, c) = (at(Some(d.opened)), at(d.updated), at(d.decision));
    // Whichever chargeback webhook arrives first creates the dispute with its due date; an
    // `updated` only applies while the dispute is not decided yet.
    let due = match (c, u) {
        (Some(c), _) if Some(c) < o && u.is_none_or(|u| c < u) => decision.map(|t| t.1),
        (c, Some(u)) if c.is_none_or(|c| u < c) => updated.map(|t| t.1),
        _ => opened.map(|t| t.1),
    };
    let ids: BTreeSet<ProviderEventId> = story
        .events
        .iter()
        .filter(|e| matches!(e.fact, Fact::Chargeback { .. }))
        .map(|e| e.event_id.clone())
        .collect();
    DisputeExpectation {
        order_id: story.order_id.clone(),
        final_status: d.final_status(),
        amount: story.amount,
        currency: story.currency,
        reason: d.reason.clone(),
        opened_at: opened.map_or(story.created_at, |t| t.0),
        closed_at: decision.map(|t| t.0),
        evidence_due_at: due,
        provider_event_ids: ids,
        evidence_added: d.evidence.is_some(),
        evidence_submitted: d.evidence.as_ref().is_some_and(|e| e.submit),
    }
}
