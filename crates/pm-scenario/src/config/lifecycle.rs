//! `[orders]`: the lifecycle of each order, `created → updated* → success | failed`.

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// The `[orders]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifecycle {
    /// Fewest `updated` webhooks per order.
    pub updates_min: u32,
    /// Most `updated` webhooks per order (uniform between min and max).
    pub updates_max: u32,
    /// Share of orders whose last webhook is `success`.
    pub success_share: f64,
    /// Share of orders whose last webhook is `failed`. The rest
    /// (`1 - success_share - failed_share`) stays unfinished: its last webhook is
    /// `created` or `updated`.
    pub failed_share: f64,
    /// How far apart two consecutive webhooks of one order are generated, in order starts:
    /// uniform in `1 ..= spread`. Larger values interleave more orders.
    pub spread: u32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            updates_min: 0,
            updates_max: 2,
            success_share: 0.85,
            failed_share: 0.10,
            spread: 8,
        }
    }
}

impl Lifecycle {
    /// The share of orders left without a final status.
    pub fn unfinished_share(&self) -> f64 {
        (1.0 - self.success_share - self.failed_share).max(0.0)
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        p.within("orders.updates_max", u64::from(self.updates_max), 0, 50);
        if self.updates_min > self.updates_max {
            p.push(
                "orders.updates_min",
                format!(
                    "must not exceed orders.updates_max ({} > {})",
                    self.updates_min, self.updates_max
                ),
            );
        }
        p.share("orders.success_share", self.success_share);
        p.share("orders.failed_share", self.failed_share);
        if self.success_share + self.failed_share > 1.0 + 1e-9 {
            p.push(
                "orders.failed_share",
                format!(
                    "orders.success_share + orders.failed_share must not exceed 1 (got {})",
                    self.success_share + self.failed_share
                ),
            );
        }
        p.within("orders.spread", u64::from(self.spread), 1, 1_000);
    }
}
