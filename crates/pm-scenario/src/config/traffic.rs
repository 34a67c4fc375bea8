//! `[traffic]`: how many orders (or for how long) and how fast webhooks are sent.

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// Most orders one scenario may generate (the plan is held in memory: about 2 KiB per order).
pub const MAX_ORDERS: u64 = 2_000_000;
/// Most deliveries a `duration_secs` scenario may ask for.
pub const MAX_DURATION_DELIVERIES: f64 = 10_000_000.0;
/// Highest rate, in webhooks per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// How send times are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalKind {
    /// Evenly spaced at `rate` webhooks per second.
    #[default]
    Constant,
    /// `rate` per second plus, every `burst_every_ms`, `burst_size` webhooks at one instant.
    Bursts,
}

/// The `[traffic]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Number of orders (exclusive with `duration_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<u64>,
    /// Generate orders until the schedule fills this many seconds (exclusive with `orders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// Steady webhook deliveries per second (all routes and kinds together).
    pub rate: f64,
    /// `constant` or `bursts`.
    #[serde(default)]
    pub arrival: ArrivalKind,
    /// Deliveries sent at the same instant in each burst (`bursts` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_size: Option<u64>,
    /// Milliseconds between bursts (`bursts` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_every_ms: Option<u64>,
}

impl Traffic {
    /// Mean deliveries per second, bursts included.
    pub fn mean_rate(&self) -> f64 {
        match (self.arrival, self.burst_size, self.burst_every_ms) {
            (ArrivalKind::Bursts, Some(size), Some(every)) if every > 0 => {
                self.rate + size as f64 * 1000.0 / every as f64
            }
            _ => self.rate,
        }
    }

    pub(crate) fn check(&self, p: &mut Problems) {
        match (self.orders, self.duration_secs) {
            (Some(_), Some(_)) => p.push(
                "traffic.duration_secs",
                "give either traffic.orders or traffic.duration_secs, not both",
            ),
            (None, None) => p.push(
                "traffic.orders",
                "is required (or traffic.duration_secs for a timed run)",
            ),
            (Some(n), None) => p.within("traffic.orders", n, 1, MAX_ORDERS),
            (None, Some(secs)) => p.within("traffic.duration_secs", secs, 1, 86_400),
        }
        let min_rate_ok = match self.arrival {
            ArrivalKind::Constant => self.rate > 0.0,
            ArrivalKind::Bursts => self.rate >= 0.0,
        };
        if !self.rate.is_finite() || !min_rate_ok || self.rate > MAX_RATE {
            let low = match self.arrival {
                ArrivalKind::Constant => "greater than 0",
                ArrivalKind::Bursts => "at least 0",
            };
            p.push(
                "traffic.rate",
                format!("must be {low} and at most {MAX_RATE} (got {})", self.rate),
            );
        }
        match self.arrival {
            ArrivalKind::Constant => {
                for (field, value) in [
                    ("traffic.burst_size", self.burst_size),
                    ("traffic.burst_every_ms", self.burst_every_ms),
                ] {
                    if value.is_some() {
                        p.push(field, "is only used with arrival = \"bursts\"");
                    }
                }
            }
            ArrivalKind::Bursts => {
                match self.burst_size {
                    Some(n) => p.within("traffic.burst_size", n, 1, 100_000),
                    None => p.push(
                        "traffic.burst_size",
                        "is required with arrival = \"bursts\"",
                    ),
                }
                match self.burst_every_ms {
                    Some(n) => p.within("traffic.burst_every_ms", n, 1, 3_600_000),
                    None => p.push(
                        "traffic.burst_every_ms",
                        "is required with arrival = \"bursts\"",
                    ),
                }
            }
        }
        if let Some(secs) = self.duration_secs {
            let wanted = secs as f64 * self.mean_rate();
            if wanted > MAX_DURATION_DELIVERIES {
                p.push(
                    "traffic.duration_secs",
                    format!(
                        "asks for about {wanted:.0} deliveries; at most {MAX_DURATION_DELIVERIES:.0} are supported (lower the duration or the rate)"
                    ),
                );
            }
        }
    }
}
