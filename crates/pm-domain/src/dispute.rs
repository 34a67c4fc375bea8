//! Disputes (chargebacks): the statuses, what each chargeback webhook does, and which
//! operator actions a status allows.
//!
//! `opened` creates the dispute in `open`; `updated` changes only `evidence_due_at`;
//! `closed` decides it (`won`, `lost`, or plain `closed`). Operators move it
//! `open → under_review` by storing evidence and `open | under_review → submitted` by
//! submitting a representment. `won`, `lost`, `closed` and `canceled` are final: no
//! webhook, however late, reopens or rewrites a decided dispute (the original system let a
//! late `opened` reset won and lost disputes).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::order::UnknownStatus;

/// The merchant-side status of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    UnderReview,
    Submitted,
    Won,
    Lost,
    Closed,
    Canceled,
}

impl DisputeStatus {
    pub const ALL: [DisputeStatus; 7] = [
        DisputeStatus::Open,
        DisputeStatus::UnderReview,
        DisputeStatus::Submitted,
        DisputeStatus::Won,
        DisputeStatus::Lost,
        DisputeStatus::Closed,
        DisputeStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::UnderReview => "under_review",
            DisputeStatus::Submitted => "submitted",
            DisputeStatus::Won => "won",
            DisputeStatus::Lost => "lost",
            DisputeStatus::Closed => "closed",
            DisputeStatus::Canceled => "canceled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            DisputeStatus::Won
                | DisputeStatus::Lost
                | DisputeStatus::Closed
                | DisputeStatus::Canceled
        )
    }

    /// Evidence may be stored while the merchant can still act on the dispute.
    pub fn accepts_evidence(self) -> bool {
        matches!(self, DisputeStatus::Open | DisputeStatus::UnderReview)
    }

    /// A representment may be submitted from these statuses.
    pub fn can_submit(self) -> bool {
        matches!(self, DisputeStatus::Open | DisputeStatus::UnderReview)
    }

    /// The status after evidence was stored.
    pub fn after_evidence(self) -> DisputeStatus {
        match self {
            DisputeStatus::Open => DisputeStatus::UnderReview,
            other => other,
        }
    }
}

impl fmt::Display for DisputeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DisputeStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        DisputeStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                got: s.to_owned(),
                expected: "open, under_review, submitted, won, lost, closed, canceled",
            })
    }
}

/// The kind of a chargeback webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargebackStatus {
    Opened,
    Updated,
    Closed,
}

impl ChargebackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargebackStatus::Opened => "opened",
            ChargebackStatus::Updated => "updated",
            ChargebackStatus::Closed => "closed",
        }
    }
}

impl FromStr for ChargebackStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        match s {
            "opened" => Ok(ChargebackStatus::Opened),
            "updated" => Ok(ChargebackStatus::Updated),
            "closed" => Ok(ChargebackStatus::Closed),
            _ => Err(UnknownStatus {
                got: s.to_owned(),
                expected: "opened, updated, closed",
            }),
        }
    }
}

/// The provider's decision carried by a `closed` chargeback in `meta.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Won,
    Lost,
    /// No `meta.resolution`: closed without a decision for either side.
    Closed,
}

impl Resolution {
    /// Reads `meta.resolution` (case-insensitive); absent means a plain close.
    pub fn from_meta(value: Option<&str>) -> Result<Self, UnknownStatus> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None => Ok(Resolution::Closed),
            Some("won") => Ok(Resolution::Won),
            Some("lost") => Ok(Resolution::Lost),
            Some(other) => Err(UnknownStatus {
                got: other.to_owned(),
                expected: "won, lost",
            }),
        }
    }

    pub fn status(self) -> DisputeStatus {
        match self {
            Resolution::Won => DisputeStatus::Won,
            Resolution::Lost => DisputeStatus::Lost,
            Resolution::Closed => DisputeStatus::Closed,
        }
    }
}

/// The webhook-driven part of a stored dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputeProgress {
    pub status: DisputeStatus,
    pub evidence_due_at: Option<DateTime<Utc>>,
    /// `occurred_at` of the newest webhook that changed the dispute.
    pub provider_updated_at: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What a chargeback webhook says, reduced to what the rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargebackChange {
    pub status: ChargebackStatus,
    pub resolution: Resolution,
    pub occurred_at: DateTime<Utc>,
    pub evidence_due_at: Option<DateTime<Utc>>,
}

/// What a chargeback webhook did. The webhook's event is recorded either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeEffect {
    /// The dispute did not exist; the webhook created it (in the state it describes).
    Created,
    /// The dispute changed.
    Applied,
    /// Nothing new: an `opened` for an open dispute, or an `updated` older than the
    /// newest one applied.
    Stale,
    /// The dispute is decided; webhooks no longer change it.
    FinalKept,
}

impl DisputeEffect {
    pub fn changes_state(self) -> bool {
        matches!(self, DisputeEffect::Created | DisputeEffect::Applied)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DisputeEffect::Created => "created",
            DisputeEffect::Applied => "applied",
            DisputeEffect::Stale => "stale",
            DisputeEffect::FinalKept => "final_kept",
        }
    }
}

/// Applies a chargeback webhook to the dispute of its order (`None` when there is none yet)
/// and returns the new progress and what happened.
///
/// A dispute first seen through `updated` or `closed` (its `opened` was delayed) is created
/// from what that webhook carries, with `opened_at` = its `occurred_at`; when the late
/// `opened` arrives it may only move `opened_at` earlier.
pub fn apply(
    current: Option<DisputeProgress>,
    change: ChargebackChange,
) -> (DisputeProgress, DisputeEffect) {
    let Some(cur) = current else {
        let (status, closed_at) = match change.status {
            ChargebackStatus::Opened | ChargebackStatus::Updated => (DisputeStatus::Open, None),
            ChargebackStatus::Closed => (change.resolution.status(), Some(change.occurred_at)),
        };
        let created = DisputeProgress {
            status,
            evidence_due_at: change.evidence_due_at,
            provider_updated_at: change.occurred_at,
            opened_at: change.occurred_at,
            closed_at,
        };
        return (created, DisputeEffect::Created);
    };

    // A late `opened` may tell us when the dispute really opened; that is history, not a
    // state change, so it is allowed even on a decided dispute.
    let mut next = cur;
    if change.status == ChargebackStatus::Opened && change.occurred_at < cur.opened_at {
        next.opened_at = change.occurred_at;
    }
    if cur.status.is_final() {
        let effect = if next != cur {
            DisputeEffect::Applied
        } else {
            DisputeEffect::FinalKept
        };
        return (next, effect);
    }
    match change.status {
        ChargebackStatus::Opened => {}
        ChargebackStatus::Updated => {
            if change.occurred_at > cur.provider_updated_at {
                next.provider_updated_at = change.occurred_at;
                if change.evidence_due_at.is_some() {
                    next.evidence_due_at = change.evidence_due_at;
                }
            }
        }
        ChargebackStatus::Closed => {
            next.status = change.resolution.status();
            next.closed_at = Some(change.occurred_at);
            next.provider_updated_at = next.provider_updated_at.max(change.occurred_at);
        }
    }
    let effect = if next != cur {
        DisputeEffect::Applied
    } else {
        DisputeEffect::Stale
    };
    (next, effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn cb(status: ChargebackStatus, secs: i64) -> ChargebackChange {
        ChargebackChange {
            status,
            resolution: Resolution::Closed,
            occurred_at: t(secs),
            evidence_due_at: (status == ChargebackStatus::Updated).then(|| t(1000 + secs)),
        }
    }

    fn closed(res: Resolution, secs: i64) -> ChargebackChange {
        ChargebackChange {
            resolution: res,
            ..cb(ChargebackStatus::Closed, secs)
        }
    }

    #[test]
    fn lifecycle_open_update_won() {
        let (d, e) = apply(None, cb(ChargebackStatus::Opened, 0));
        assert_eq!((d.status, e), (DisputeStatus::Open, DisputeEffect::Created));
        let (d, e) = apply(Some(d), cb(ChargebackStatus::Updated, 5));
        assert_eq!(
            (d.evidence_due_at, e),
            (Some(t(1005)), DisputeEffect::Applied)
        );
        let (d, e) = apply(Some(d), closed(Resolution::Won, 9));
        assert_eq!(
            (d.status, d.closed_at, e),
            (DisputeStatus::Won, Some(t(9)), DisputeEffect::Applied)
        );
    }

    #[test]
    fn late_opened_never_resets_a_decided_dispute() {
        let (d, _) = apply(None, cb(ChargebackStatus::Opened, 0));
        let (d, _) = apply(Some(d), closed(Resolution::Lost, 9));
        let (d2, e) = apply(Some(d), cb(ChargebackStatus::Opened, 0));
        assert_eq!((d2, e), (d, DisputeEffect::FinalKept));
        let (d3, e) = apply(Some(d), cb(ChargebackStatus::Updated, 20));
        assert_eq!((d3, e), (d, DisputeEffect::FinalKept));
    }

    #[test]
    fn closed_before_opened_creates_a_decided_dispute_and_opened_fills_history() {
        let (d, e) = apply(None, closed(Resolution::Won, 9));
        assert_eq!(
            (d.status, d.opened_at, e),
            (DisputeStatus::Won, t(9), DisputeEffect::Created)
        );
        let (d, e) = apply(Some(d), cb(ChargebackStatus::Opened, 1));
        assert_eq!(
            (d.status, d.opened_at, e),
            (DisputeStatus::Won, t(1), DisputeEffect::Applied)
        );
    }

    #[test]
    fn older_updated_does_not_overwrite_the_due_date() {
        let (d, _) = apply(None, cb(ChargebackStatus::Opened, 0));
        let (d, _) = apply(Some(d), cb(ChargebackStatus::Updated, 5));
        let (d2, e) = apply(Some(d), cb(ChargebackStatus::Updated, 3));
        assert_eq!((d2, e), (d, DisputeEffect::Stale));
    }

    #[test]
    fn operator_transitions() {
        assert_eq!(
            DisputeStatus::Open.after_evidence(),
            DisputeStatus::UnderReview
        );
        assert_eq!(
            DisputeStatus::UnderReview.after_evidence(),
            DisputeStatus::UnderReview
        );
        assert!(DisputeStatus::UnderReview.can_submit());
        assert!(!DisputeStatus::Submitted.can_submit());
        assert!(!DisputeStatus::Submitted.accepts_evidence());
        for s in DisputeStatus::ALL.into_iter().filter(|s| s.is_final()) {
            assert!(!s.can_submit() && !s.accepts_evidence(), "{s}");
        }
    }

    #[test]
    fn resolution_is_case_insensitive_and_strict() {
        assert_eq!(Resolution::from_meta(Some("WON")), Ok(Resolution::Won));
        assert_eq!(Resolution::from_meta(Some("Lost")), Ok(Resolution::Lost));
        assert_eq!(Resolution::from_meta(None), Ok(Resolution::Closed));
        assert!(Resolution::from_meta(Some("maybe")).is_err());
    }

    fn history() -> impl Strategy<Value = Vec<ChargebackChange>> {
        (
            0usize..4,
            prop_oneof![
                Just(None),
                Just(Some(Resolution::Won)),
                Just(Some(Resolution::Lost)),
                Just(Some(Resolution::Closed))
            ],
        )
            .prop_map(|(updates, end)| {
                let mut h = vec![cb(ChargebackStatus::Opened, 0)];
                h.extend((0..updates).map(|i| cb(ChargebackStatus::Updated, 1 + i as i64)));
                if let Some(r) = end {
                    h.push(closed(r, 10));
                }
                h
            })
    }

    proptest! {
        #[test]
        fn any_delivery_order_gives_the_same_status_and_due_date(
            (truth, delivered) in history().prop_flat_map(|h| {
                let n = h.len();
                (Just(h.clone()), proptest::collection::vec(0..n, 0..5)).prop_flat_map(|(h, dup)| {
                    let mut d = h.clone();
                    d.extend(dup.iter().map(|&i| h[i]));
                    (Just(h), Just(d).prop_shuffle())
                })
            })
        ) {
            let fold = |evs: &[ChargebackChange]| {
                evs.iter().fold(None, |s, c| Some(apply(s, *c).0)).expect("non-empty")
            };
            let expected = fold(&truth);
            let got = fold(&delivered);
            prop_assert_eq!(got.status, expected.status);
            prop_assert_eq!(got.closed_at, expected.closed_at);
            prop_assert_eq!(got.opened_at, expected.opened_at);
            // Updates after a close are ignored, so the due date matches whenever the
            // dispute was not decided before its last update arrived.
            if !expected.status.is_final() {
                prop_assert_eq!(got.evidence_due_at, expected.evidence_due_at);
            }
        }
    }
}
