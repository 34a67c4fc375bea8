//! Response shapes: the types live in `pm-api-types` (shared with every client of the
//! API); here, how storage records become them.

pub mod requests;

use pm_domain::evidence::EvidenceFile as DomainFile;
use pm_domain::pagination::Page;
use pm_storage::analytics;
use pm_storage::audit::AuditRecord;
use pm_storage::captures::CaptureRecord;
use pm_storage::disputes::{DisputeRecord, EvidenceRecord};
use pm_storage::events::EventRecord;
use pm_storage::orders::OrderRecord;
use serde_json::value::RawValue;

pub use pm_api_types::{
    Aggregate, AuditEntry, Capture, CaptureDay, CaptureVolume, DecisionTimes, Dispute,
    DisputeAnalytics, Event, Evidence, EvidenceFile, Health, Hold, List, Order, OrderDay,
    OrderVolume, ReasonOutcome, Submission, WebhookAck,
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

/// Orders created per day, from the analytics projection.
pub fn order_volume(days: Vec<analytics::OrderDay>) -> OrderVolume {
    OrderVolume {
        days: days
            .into_iter()
            .map(|d| OrderDay {
                day: d.day,
                orders_created: d.orders_created,
            })
            .collect(),
    }
}

/// A sum in minor units as a JSON number with the currency's precision (`301.50`).
fn minor_units_json(currency: pm_domain::Currency, minor: i64) -> Box<RawValue> {
    // Digits with an optional sign and point: always a JSON number.
    RawValue::from_string(currency.format_minor_units(minor))
        .unwrap_or_else(|_| RawValue::from_string("0".to_owned()).unwrap_or_default())
}

/// Captures per day and currency, from the analytics projection.
pub fn capture_volume(days: Vec<analytics::CaptureDay>) -> CaptureVolume {
    CaptureVolume {
        days: days
            .into_iter()
            .map(|d| CaptureDay {
                day: d.day,
                currency: d.currency.code().to_owned(),
                captured: d.captured,
                captured_minor_units: d.captured_minor,
                captured_amount: minor_units_json(d.currency, d.captured_minor),
                failed: d.failed,
                failed_minor_units: d.failed_minor,
                failed_amount: minor_units_json(d.currency, d.failed_minor),
            })
            .collect(),
    }
}

/// Dispute outcomes per reason and the time to decision, from the analytics projection.
pub fn dispute_analytics(
    outcomes: Vec<analytics::ReasonOutcomes>,
    times: analytics::DecisionTimes,
) -> DisputeAnalytics {
    DisputeAnalytics {
        outcomes: outcomes
            .into_iter()
            .map(|o| ReasonOutcome {
                win_rate: o.win_rate(),
                reason: o.reason,
                won: o.won,
                lost: o.lost,
            })
            .collect(),
        time_to_decision: DecisionTimes {
            decided: times.count,
            mean_seconds: times.mean_seconds,
            p50_seconds: times.p50_seconds,
            p90_seconds: times.p90_seconds,
        },
    }
}
