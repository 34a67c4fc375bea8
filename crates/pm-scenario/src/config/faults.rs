//! `[faults]`: how the provider misbehaves when delivering.
//!
//! Shares are probabilities per original webhook. Duplicates repeat a real webhook (same
//! bytes, same `provider_event_id`). Reordering and lateness move a real webhook later in
//! the send order. The four bad-input faults are *extra* deliveries with their own
//! `provider_event_id` that the system must reject and never store; they never replace a
//! real webhook.

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// The `[faults]` section. Everything defaults to a well-behaved provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of original webhooks delivered again.
    pub duplicate: f64,
    /// Extra copies of a duplicated webhook: uniform in `1 ..= duplicate_copies_max`.
    pub duplicate_copies_max: u32,
    /// Share of copies sent much later ("days apart"): anywhere between the original and
    /// the end of the run. The others follow within a few deliveries.
    pub duplicate_far_share: f64,
    /// Share of original webhooks held back by 1 to `reorder_window` deliveries.
    pub reorder: f64,
    /// Largest reordering distance, in deliveries.
    pub reorder_window: u32,
    /// Share of original webhooks delivered `late_by_ms` after their planned time
    /// (`reorder + late` must not exceed 1: a webhook is either reordered or late).
    pub late: f64,
    /// How late a late webhook is, in milliseconds of schedule.
    pub late_by_ms: u64,
    /// Share of webhooks followed by an extra delivery whose body is not a JSON object (400).
    pub malformed: f64,
    /// … by an extra delivery signed with a wrong secret or not signed at all (401).
    pub bad_signature: f64,
    /// … by an extra delivery signed with a timestamp beyond the 300 s tolerance (401).
    pub stale_timestamp: f64,
    /// … by an extra delivery with an invalid field: bad currency, negative amount, bad
    /// UUID, unknown status, … (422).
    pub invalid_fields: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            duplicate: 0.0,
            duplicate_copies_max: 1,
            duplicate_far_share: 0.0,
            reorder: 0.0,
            reorder_window: 8,
            late: 0.0,
            late_by_ms: 2_000,
            malformed: 0.0,
            bad_signature: 0.0,
            stale_timestamp: 0.0,
            invalid_fields: 0.0,
        }
    }
}

impl Faults {
    /// Expected deliveries per original webhook (1 + duplicates + bad-input faults).
    pub fn deliveries_per_original(&self) -> f64 {
        let copies = (1.0 + f64::from(self.duplicate_copies_max.max(1))) / 2.0;
        1.0 + self.duplicate * copies
            + self.malformed
            + self.bad_signature
            + self.stale_timestamp
            + self.invalid_fields
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        for (field, value) in [
            ("faults.duplicate", self.duplicate),
            ("faults.duplicate_far_share", self.duplicate_far_share),
            ("faults.reorder", self.reorder),
            ("faults.late", self.late),
            ("faults.malformed", self.malformed),
            ("faults.bad_signature", self.bad_signature),
            ("faults.stale_timestamp", self.stale_timestamp),
            ("faults.invalid_fields", self.invalid_fields),
        ] {
            p.share(field, value);
        }
        if self.reorder + self.late > 1.0 + 1e-9 {
            p.push(
                "faults.late",
                format!(
                    "faults.reorder + faults.late must not exceed 1 (a webhook is either reordered or late; got {})",
                    self.reorder + self.late
                ),
            );
        }
        p.within(
            "faults.duplicate_copies_max",
            u64::from(self.duplicate_copies_max),
            1,
            50,
        );
        p.within(
            "faults.reorder_window",
            u64::from(self.reorder_window),
            1,
            10_000,
        );
        p.within("faults.late_by_ms", self.late_by_ms, 1, 86_400_000);
    }
}
