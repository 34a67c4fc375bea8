//! Bad deliveries: extra requests, each with its own `provider_event_id`, built from a
//! real webhook of the same order so that accepting one by mistake would visibly corrupt
//! that order or dispute.
//!
//! * `malformed`: the body is not a JSON object (truncated, trailing garbage, wrapped in
//!   an array, single quotes, form-encoded) → 400.
//! * `invalid_fields`: a JSON object with one bad field (bad UUID, unknown status, bad
//!   timestamp, missing id, bad currency, negative or too precise amount, …) → 422.
//! * `bad_signature` / `stale_timestamp`: a *valid* webhook that would change state
//!   (an order flipped to the other final status, a dispute closed as won), signed with a
//!   wrong secret, not signed, or signed an hour ago → 401.

use pm_domain::order::OrderStatus;
use pm_domain::ProviderEventId;

use crate::body::{map_text, time_text, JsonFields};
use crate::dice::Dice;
use crate::plan::{FaultReason, Route, Signing};
use crate::story::{Event, Story};

/// A fault's body and how it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultBody {
    pub(crate) body: Vec<u8>,
    pub(crate) signing: Signing,
}

/// Builds the fault of `reason` that shadows `event`.
pub(crate) fn build(
    reason: FaultReason,
    story: &Story,
    event: &Event,
    id: &ProviderEventId,
    dice: &mut Dice,
) -> FaultBody {
    let mut fields = event.fields.clone();
    fields.set_str("provider_event_id", id.as_str());
    match reason {
        FaultReason::Malformed => FaultBody {
            body: malformed(&fields, dice),
            signing: Signing::Valid,
        },
        FaultReason::InvalidFields => {
            match event.route {
                Route::Orders => invalid_order(&mut fields, story, dice),
                Route::Chargebacks => invalid_chargeback(&mut fields, story, dice),
            }
            FaultBody {
                body: fields.render(),
                signing: Signing::Valid,
            }
        }
        FaultReason::BadSignature | FaultReason::StaleTimestamp => {
            harmful(&mut fields, story, event);
            let signing = match reason {
                FaultReason::StaleTimestamp => Signing::Stale,
                _ if dice.chance(0.5) => Signing::Missing,
                _ => Signing::WrongSecret,
            };
            FaultBody {
                body: fields.render(),
                signing,
            }
        }
    }
}

/// Text that is not a JSON object.
fn malformed(fields: &JsonFields, dice: &mut Dice) -> Vec<u8> {
    let body = fields.render();
    let text = String::from_utf8_lossy(&body).into_owned();
    match dice.below(5) {
        0 => {
            // Cut somewhere after the first field: never a complete object.
            let lo = text.len() / 3;
            let mut cut = dice.between(lo as u64, text.len().saturating_sub(2) as u64) as usize;
            while cut > 1 && !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.as_bytes()[..cut.max(1)].to_vec()
        }
        1 => format!("{text}}}").into_bytes(),
        2 => format!("[{text}]").into_bytes(),
        3 => text.replace('"', "'").into_bytes(),
        _ => {
            let id = fields
                .get("provider_event_id")
                .unwrap_or("\"\"")
                .trim_matches('"');
            let order = fields.get("order_id").unwrap_or("\"\"").trim_matches('"');
            format!("provider_event_id={id}&order_id={order}").into_bytes()
        }
    }
}

fn invalid_order(fields: &mut JsonFields, story: &Story, dice: &mut Dice) {
    match dice.below(6) {
        0 => fields.set_str("user_id", "not-a-uuid"),
        1 => fields.set_str("status", "refunded"),
        2 => fields.set_str("created_at", "yesterday"),
        3 => {
            let before = story.created_at - chrono::TimeDelta::days(1);
            fields.set_raw("updated_at", time_text(&before));
        }
        4 => fields.remove("order_id"),
        _ => fields.set_raw("meta", "{\"channel\":42}"),
    }
}

fn invalid_chargeback(fields: &mut JsonFields, story: &Story, dice: &mut Dice) {
    match dice.below(9) {
        0 => fields.set_str("currency", &story.currency.code().to_ascii_lowercase()),
        1 => fields.set_str("currency", "XYZ"),
        2 => fields.set_raw("amount", format!("-{}", story.amount_text())),
        3 => fields.set_raw("amount", "0"),
        4 => {
            // One digit more than the currency allows.
            let text = story.amount_text();
            let extra = if text.contains('.') {
                format!("{text}1")
            } else {
                format!("{text}.5")
            };
            fields.set_raw("amount", extra);
        }
        5 => fields.set_str("user_id", "00000000-0000-0000-0000"),
        6 => fields.set_str("reason", "   "),
        7 => fields.set_str("occurred_at", "2026-13-01T00:00:00Z"),
        _ => {
            fields.set_str("status", "closed");
            fields.set_raw("meta", map_text(&[("resolution", "maybe")]));
        }
    }
}

/// A valid webhook that would change the outcome if it were let in.
fn harmful(fields: &mut JsonFields, story: &Story, event: &Event) {
    match event.route {
        Route::Orders => {
            let (last, _) = story.last_order_state();
            let flipped = if last == OrderStatus::Success {
                OrderStatus::Failed
            } else {
                OrderStatus::Success
            };
            fields.set_str("status", flipped.as_str());
        }
        Route::Chargebacks => {
            fields.set_str("status", "closed");
            fields.set_raw("meta", map_text(&[("resolution", "won")]));
        }
    }
}
