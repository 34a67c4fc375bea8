//! Orders (payments) and the rule that keeps them monotonic under duplicate and
//! reordered webhooks.
//!
//! Lifecycle: `created → updated* → success | failed`; the last two are final. A webhook
//! is always recorded as an event, but it changes the order only when it moves the order
//! forward: to a later stage of the lifecycle, or (within the same stage) to a newer
//! provider `updated_at`. A final status is never left because of a webhook.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The status of an order, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Updated,
    Success,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Created,
        OrderStatus::Updated,
        OrderStatus::Success,
        OrderStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Updated => "updated",
            OrderStatus::Success => "success",
            OrderStatus::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Success | OrderStatus::Failed)
    }

    /// Position in the lifecycle; a webhook may only move an order to a higher stage, or
    /// refresh it within the same stage.
    fn stage(self) -> u8 {
        match self {
            OrderStatus::Created => 0,
            OrderStatus::Updated => 1,
            OrderStatus::Success | OrderStatus::Failed => 2,
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {expected} (got {got:?})")]
pub struct UnknownStatus {
    pub got: String,
    pub expected: &'static str,
}

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        OrderStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                got: s.to_owned(),
                expected: "created, updated, success, failed",
            })
    }
}

/// Why an operator hold was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    ManualReview,
    Risk,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::ManualReview => "manual_review",
            HoldReason::Risk => "risk",
        }
    }
}

impl FromStr for HoldReason {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        match s {
            "manual_review" => Ok(HoldReason::ManualReview),
            "risk" => Ok(HoldReason::Risk),
            _ => Err(UnknownStatus {
                got: s.to_owned(),
                expected: "manual_review, risk",
            }),
        }
    }
}

/// The part of a stored order that decides whether a webhook applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderProgress {
    pub status: OrderStatus,
    /// The provider's `updated_at` of the webhook that set `status`.
    pub updated_at: DateTime<Utc>,
}

/// What a webhook does to an existing order. The webhook's event is recorded either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEffect {
    /// The order did not exist; the webhook created it with its own status.
    Created,
    /// The order moved forward to the webhook's status and `updated_at`.
    Applied,
    /// The webhook is older than what the order already reflects.
    Stale,
    /// The order is final; webhooks no longer change it.
    FinalKept,
}

impl OrderEffect {
    pub fn changes_state(self) -> bool {
        matches!(self, OrderEffect::Created | OrderEffect::Applied)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderEffect::Created => "created",
            OrderEffect::Applied => "applied",
            OrderEffect::Stale => "stale",
            OrderEffect::FinalKept => "final_kept",
        }
    }
}

/// Decides what a webhook carrying `incoming` does to an order currently at `current`.
pub fn decide(current: OrderProgress, incoming: OrderProgress) -> OrderEffect {
    if current.status.is_final() {
        return OrderEffect::FinalKept;
    }
    let (cur, inc) = (current.status.stage(), incoming.status.stage());
    if inc > cur || (inc == cur && incoming.updated_at > current.updated_at) {
        OrderEffect::Applied
    } else {
        OrderEffect::Stale
    }
}

/// Applies [`decide`] and returns the resulting progress with the effect.
pub fn apply(
    current: Option<OrderProgress>,
    incoming: OrderProgress,
) -> (OrderProgress, OrderEffect) {
    match current {
        None => (incoming, OrderEffect::Created),
        Some(current) => match decide(current, incoming) {
            effect @ OrderEffect::Applied => (incoming, effect),
            effect => (current, effect),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(status: OrderStatus, secs: i64) -> OrderProgress {
        OrderProgress {
            status,
            updated_at: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
        }
    }

    #[test]
    fn normal_lifecycle_applies_in_order() {
        let (p, e) = apply(None, at(OrderStatus::Created, 0));
        assert_eq!(e, OrderEffect::Created);
        let (p, e) = apply(Some(p), at(OrderStatus::Updated, 1));
        assert_eq!(e, OrderEffect::Applied);
        let (p, e) = apply(Some(p), at(OrderStatus::Updated, 2));
        assert_eq!(e, OrderEffect::Applied);
        let (p, e) = apply(Some(p), at(OrderStatus::Success, 3));
        assert_eq!((p.status, e), (OrderStatus::Success, OrderEffect::Applied));
    }

    #[test]
    fn late_updated_after_success_is_kept_out() {
        let (p, _) = apply(None, at(OrderStatus::Success, 5));
        let (p, e) = apply(Some(p), at(OrderStatus::Updated, 9));
        assert_eq!(
            (p.status, e),
            (OrderStatus::Success, OrderEffect::FinalKept)
        );
        let (p, e) = apply(Some(p), at(OrderStatus::Failed, 10));
        assert_eq!(
            (p.status, e),
            (OrderStatus::Success, OrderEffect::FinalKept)
        );
    }

    #[test]
    fn updated_before_created_keeps_updated() {
        let (p, _) = apply(None, at(OrderStatus::Updated, 2));
        let (p, e) = apply(Some(p), at(OrderStatus::Created, 0));
        assert_eq!((p.status, e), (OrderStatus::Updated, OrderEffect::Stale));
    }

    #[test]
    fn older_updated_does_not_overwrite_newer() {
        let (p, _) = apply(None, at(OrderStatus::Updated, 5));
        let (p, e) = apply(Some(p), at(OrderStatus::Updated, 3));
        assert_eq!((p, e), (at(OrderStatus::Updated, 5), OrderEffect::Stale));
        // The same timestamp again is a no-op, not a change.
        let (_, e) = apply(Some(p), at(OrderStatus::Updated, 5));
        assert_eq!(e, OrderEffect::Stale);
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
        }
        assert!("done".parse::<OrderStatus>().is_err());
    }

    /// A provider's true history of one order: `created`, some `updated`, then a final
    /// status, with strictly increasing `updated_at`.
    fn history() -> impl Strategy<Value = Vec<OrderProgress>> {
        (0usize..5, any::<bool>(), any::<bool>()).prop_map(|(updates, ends, success)| {
            let mut h = vec![at(OrderStatus::Created, 0)];
            for i in 0..updates {
                h.push(at(OrderStatus::Updated, 1 + i as i64));
            }
            if ends {
                let fin = if success {
                    OrderStatus::Success
                } else {
                    OrderStatus::Failed
                };
                h.push(at(fin, 10));
            }
            h
        })
    }

    /// The history delivered in any order, with any event delivered any number of times.
    fn deliveries() -> impl Strategy<Value = (Vec<OrderProgress>, Vec<OrderProgress>)> {
        history().prop_flat_map(|h| {
            let n = h.len();
            let dupes = proptest::collection::vec(0..n, 0..6);
            (Just(h), dupes).prop_flat_map(|(h, dupes)| {
                let mut d = h.clone();
                d.extend(dupes.iter().map(|&i| h[i]));
                (Just(h), Just(d).prop_shuffle())
            })
        })
    }

    proptest! {
        #[test]
        fn any_delivery_order_converges_to_the_true_final_state((truth, delivered) in deliveries()) {
            let mut state = None;
            for ev in &delivered {
                state = Some(apply(state, *ev).0);
            }
            prop_assert_eq!(state, truth.last().copied());
        }

        #[test]
        fn a_final_state_is_never_left((truth, delivered) in deliveries()) {
            let mut state: Option<OrderProgress> = None;
            for ev in &delivered {
                let before = state;
                state = Some(apply(state, *ev).0);
                if let Some(b) = before.filter(|b| b.status.is_final()) {
                    prop_assert_eq!(state, Some(b));
                }
            }
            let _ = truth;
        }

        #[test]
        fn redelivery_changes_nothing((_truth, delivered) in deliveries()) {
            let mut state = None;
            for ev in &delivered {
                let (next, _) = apply(state, *ev);
                let (again, effect) = apply(Some(next), *ev);
                prop_assert_eq!(again, next);
                prop_assert!(!effect.changes_state());
                state = Some(next);
            }
        }
    }
}
