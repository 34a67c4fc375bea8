//! Response shapes: the types live in `pm-api-types` (shared with every client of the
//! API); here, how storage records become them.

pub mod requests;

use pm_domain::evidence::EvidenceFile as DomainFile;
use pm_domain::pagination::Page;
use pm_storage::audit::AuditRecord;
use pm_storage::captures::CaptureRecord;
use pm_storage::disputes::{DisputeRecord, EvidenceRecord};
use pm_storage::events::EventRecord;
use pm_storage::orders::OrderRecord;
use serde_json::value::RawValue;

pub use pm_api_types::{
    Aggregate, AuditEntry, Capture, Dispute, Event, Evidence, EvidenceFile, Health, Hold, List,
    Order, Submission, WebhookAck,
};

/// A storage page as a list response.
pub fn list<R, T>(page: Page<R>, f: impl Fn(R) -> T) -> List<T> {
    let has_more = page.has_more();
    List {
        items: page.items.into_iter().map(f).collect(),
        next_cursor: page.next_cursor,
        has_more,
    }
}

pub fn order(o: OrderRecord) -> Order {
    Order {
        order_id: o.order_id,
        user_id: o.user_id.as_uuid(),
        status: o.status.as_str().to_owned(),
        on_hold: o.on_hold,
        hold_reason: o.hold_reason.map(|r| r.as_str().to_owned()),
        created_at: o.created_at,
        updated_at: o.updated_at,
    }
}

pub fn hold(o: OrderRecord) -> Hold {
    Hold {
        updated_at: o.hold_updated_at.unwrap_or(o.created_at),
        order_id: o.order_id,
        on_hold: o.on_hold,
        hold_reason: o.hold_reason.map(|r| r.as_str().to_owned()),
    }
}

pub fn dispute(d: DisputeRecord) -> Dispute {
    Dispute {
        dispute_id: d.dispute_id.as_uuid(),
        order_id: d.order_id,
        status: d.status.as_str().to_owned(),
        reason: d.reason,
        amount: d.money.amount_json(),
        currency: d.money.currency().code().to_owned(),
        opened_at: d.opened_at,
        evidence_due_at: d.evidence_due_at,
        submitted_at: d.submitted_at,
        closed_at: d.closed_at,
        submission_id: d.submission_id,
    }
}

/// An event of an order.
pub fn order_event(e: EventRecord) -> Event {
    event(Aggregate::Order(e.aggregate_id.clone()), e)
}

/// An event of a dispute.
pub fn dispute_event(e: EventRecord) -> Event {
    event(Aggregate::Dispute(e.aggregate_id.clone()), e)
}

fn event(aggregate: Aggregate, e: EventRecord) -> Event {
    Event {
        event_id: e.event_id,
        aggregate,
        kind: e.kind,
        provider_event_id: e.provider_event_id,
        data: e.data,
        created_at: e.created_at,
    }
}

pub fn audit_entry(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        audit_id: r.audit_id,
        created_at: r.created_at,
        actor: r.actor,
        action: r.action,
        object_type: r.object_type,
        object_id: r.object_id,
        outcome: r.outcome,
        correlation_id: r.correlation_id,
        detail: RawValue::from_string(r.detail)
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default()),
    }
}

pub fn capture(c: &CaptureRecord) -> Capture {
    Capture {
        order_id: c.order_id.to_string(),
        idempotency_key: c.idempotency_key.to_string(),
        amount: c.money.amount_json(),
        currency: c.money.currency().code().to_owned(),
        status: c.status.as_str().to_owned(),
        provider_tx_id: c.provider_tx_id.clone(),
        failure_reason: c.failure_reason.clone(),
        last_error: c.last_error.clone(),
        attempts: c.attempts,
        captured_at: c.captured_at,
    }
}

pub fn evidence(e: EvidenceRecord) -> Evidence {
    Evidence {
        dispute_id: e.dispute_id.as_uuid(),
        fields: e.evidence.fields,
        files: e
            .evidence
            .files
            .into_iter()
            .map(
                |DomainFile {
                     file_id,
                     name,
                     content_type,
                     size,
                 }| EvidenceFile {
                    file_id,
                    name,
                    content_type,
                    size,
                },
            )
            .collect(),
        updated_at: e.updated_at,
    }
}
