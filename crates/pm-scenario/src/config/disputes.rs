//! `[disputes]`: which successful orders get a chargeback, how it ends, and what the
//! merchant does about it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// Longest reason text (the webhook's limit).
const MAX_REASON_LEN: usize = 255;

/// The `[disputes]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Disputes {
    /// Share of successful orders that get a chargeback (`opened`).
    pub share: f64,
    /// Weights of how disputes end.
    pub outcomes: Outcomes,
    /// Share of disputes with an `updated` webhook (a later `evidence_due_at`).
    pub updated_share: f64,
    /// Share of disputes where the merchant stores evidence through the API before the
    /// provider decides.
    pub evidence_share: f64,
    /// Share of those where the merchant also submits the evidence (the rest stays
    /// `under_review` until the provider decides).
    pub submit_share: f64,
    /// Weights of chargeback reasons (any non-blank text, up to 255 characters).
    pub reasons: BTreeMap<String, u32>,
}

impl Default for Disputes {
    fn default() -> Self {
        Disputes {
            share: 0.05,
            outcomes: Outcomes::default(),
            updated_share: 0.3,
            evidence_share: 0.5,
            submit_share: 1.0,
            reasons: [
                ("fraud", 4),
                ("product_not_received", 3),
                ("duplicate", 1),
                ("other", 2),
            ]
            .into_iter()
            .map(|(r, w)| (r.to_owned(), w))
            .collect(),
        }
    }
}

/// Weights of dispute outcomes. A weight left out of the table is 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcomes {
    /// `closed` with `meta.resolution = won`.
    #[serde(default)]
    pub won: u32,
    /// `closed` with `meta.resolution = lost`.
    #[serde(default)]
    pub lost: u32,
    /// `closed` without `meta.resolution` (a plain close).
    #[serde(default)]
    pub closed: u32,
    /// No decision during the run: the dispute stays `open`, `under_review` or `submitted`.
    #[serde(default)]
    pub undecided: u32,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes {
            won: 40,
            lost: 40,
            closed: 10,
            undecided: 10,
        }
    }
}

impl Outcomes {
    /// The weights in the order won, lost, closed, undecided.
    pub fn weights(&self) -> [u64; 4] {
        [self.won, self.lost, self.closed, self.undecided].map(u64::from)
    }
}

impl Disputes {
    pub(crate) fn check(&self, p: &mut Problems) {
        p.share("disputes.share", self.share);
        p.share("disputes.updated_share", self.updated_share);
        p.share("disputes.evidence_share", self.evidence_share);
        p.share("disputes.submit_share", self.submit_share);
        if self.outcomes.weights().iter().sum::<u64>() == 0 {
            p.push(
                "disputes.outcomes",
                "needs at least one weight above 0 (won, lost, closed, undecided)",
            );
        }
        if self.reasons.values().map(|w| u64::from(*w)).sum::<u64>() == 0 {
            p.push(
                "disputes.reasons",
                "needs at least one reason with a weight above 0",
            );
        }
        for reason in self.reasons.keys() {
            let len = reason.chars().count();
            if reason.trim().is_empty() || len > MAX_REASON_LEN || reason.trim() != reason {
                p.push(
                    format!("disputes.reasons.{reason}"),
                    format!("a reason must be non-blank text of at most {MAX_REASON_LEN} characters without surrounding spaces"),
                );
            }
        }
    }
}
