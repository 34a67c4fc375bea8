//! The arrival process: when the `i`-th delivery is meant to be sent, in milliseconds from
//! the start of the run.
//!
//! `constant`: delivery `i` at `floor(i * 1000 / rate)`. `bursts`: the same steady
//! deliveries (none when `rate` is 0) merged with, every `burst_every_ms` starting at
//! `burst_every_ms`, `burst_size` deliveries at that one instant (a burst goes first
//! when it falls on the same millisecond as a steady delivery).

use crate::config::{ArrivalKind, Traffic};

/// Send-time schedule of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    rate: f64,
    bursts: Option<(u64, u64)>,
}

impl Arrival {
    /// The schedule described by a (validated) `[traffic]` section.
    pub fn new(traffic: &Traffic) -> Self {
        let bursts = match (traffic.arrival, traffic.burst_size, traffic.burst_every_ms) {
            (ArrivalKind::Bursts, Some(size), Some(every)) if size > 0 && every > 0 => {
                Some((size, every))
            }
            _ => None,
        };
        Arrival {
            rate: traffic.rate,
            bursts,
        }
    }

    /// Send times of the first `n` deliveries, non-decreasing.
    pub fn times(&self, n: usize) -> Vec<u64> {
        self.iter().take(n).collect()
    }

    /// How many deliveries the schedule starts before `ms`.
    pub fn count_before(&self, ms: u64) -> u64 {
        self.iter().take_while(|t| *t < ms).count() as u64
    }

    fn iter(&self) -> ArrivalIter {
        ArrivalIter {
            rate: self.rate,
            bursts: self.bursts,
            steady: 0,
            burst: 1,
            in_burst: 0,
        }
    }
}

struct ArrivalIter {
    rate: f64,
    bursts: Option<(u64, u64)>,
    /// Index of the next steady delivery.
    steady: u64,
    /// Number of the next burst (the first is at `burst_every_ms`).
    burst: u64,
    /// Deliveries already taken from the current burst.
    in_burst: u64,
}

impl ArrivalIter {
    fn steady_at(&self) -> Option<u64> {
        (self.rate > 0.0).then(|| (self.steady as f64 * 1000.0 / self.rate).floor() as u64)
    }
}

impl Iterator for ArrivalIter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let steady = self.steady_at();
        let burst = self
            .bursts
            .map(|(_, every)| self.burst.saturating_mul(every));
        match (steady, burst) {
            (Some(s), Some(b)) if s < b => {
                self.steady += 1;
                Some(s)
            }
            (_, Some(b)) => {
                let size = self.bursts.map_or(1, |(size, _)| size);
                self.in_burst += 1;
                if self.in_burst >= size {
                    self.in_burst = 0;
                    self.burst += 1;
                }
                Some(b)
            }
            (Some(s), None) => {
                self.steady += 1;
                Some(s)
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(rate: f64, bursts: Option<(u64, u64)>) -> Traffic {
        Traffic {
            orders: Some(1),
            duration_secs: None,
            rate,
            arrival: if bursts.is_some() {
                ArrivalKind::Bursts
            } else {
                ArrivalKind::Constant
            },
            burst_size: bursts.map(|b| b.0),
            burst_every_ms: bursts.map(|b| b.1),
        }
    }

    #[test]
    fn constant_rate_spaces_deliveries_evenly() {
        let a = Arrival::new(&traffic(500.0, None));
        assert_eq!(a.times(5), [0, 2, 4, 6, 8]);
        assert_eq!(a.count_before(1000), 500);
        let slow = Arrival::new(&traffic(3.0, None));
        assert_eq!(slow.times(4), [0, 333, 666, 1000]);
    }

    #[test]
    fn bursts_add_simultaneous_deliveries_on_top_of_the_steady_rate() {
        let a = Arrival::new(&traffic(10.0, Some((3, 250))));
        assert_eq!(a.times(9), [0, 100, 200, 250, 250, 250, 300, 400, 500]);
        let only = Arrival::new(&traffic(0.0, Some((2, 100))));
        assert_eq!(only.times(5), [100, 100, 200, 200, 300]);
        assert_eq!(only.count_before(1000), 18);
    }
}
