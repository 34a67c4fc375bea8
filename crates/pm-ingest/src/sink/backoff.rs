//! Exponential backoff with jitter for the HTTP sink's retries.

use std::time::Duration;

use rand::Rng;

/// Delays between attempts: `initial · 2^(n-1)`, capped at `max`, then jittered down to
/// anywhere in its upper half so that many gateways retrying the same API outage do not
/// hit it in lockstep, while the delay still grows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The ceiling of the delay after the `failed`-th failed attempt (1-based).
    pub(crate) fn ceiling(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The jittered delay after the `failed`-th failed attempt.
    pub(crate) fn delay(&self, failed: u32) -> Duration {
        let ceiling = self.ceiling(failed);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rand::rng().random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_band() {
        let b = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (1..=7).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        for n in 1..=7 {
            for _ in 0..100 {
                let d = b.delay(n);
                assert!(d >= b.ceiling(n) / 2 && d <= b.ceiling(n), "{n}: {d:?}");
            }
        }
    }
}
