//! How long to wait before each retry of a call to another system: exponential, capped,
//! with jitter. The one schedule of every retrying client — provider calls, ingest's
//! forwarding to the API, the Kafka consumers' transient failures, the provider
//! simulator's deliveries — so they all back off by the same rule.

use std::time::Duration;

use rand::Rng;

/// The retry delay schedule. `retry` numbers start at 1: the wait after the first failed
/// attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The delay before retry `retry` without jitter: `initial · 2^(retry-1)`, capped at `max`.
    /// Saturates instead of overflowing, so any retry number is safe.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let doubled = 2u32
            .checked_pow(retry.saturating_sub(1))
            .and_then(|factor| self.initial.checked_mul(factor));
        match doubled {
            Some(delay) => delay.min(self.max),
            // Overflow means the true value is beyond any `Duration`, so the cap applies —
            // unless there is nothing to double.
            None if self.initial.is_zero() => Duration::ZERO,
            None => self.max,
        }
    }

    /// The delay actually slept: the base delay plus a random extra of up to half of it.
    ///
    /// The jitter spreads out the retries of many callers that failed at the same moment (a
    /// provider restart), so they do not all hit the recovering provider in lockstep. It is
    /// added on top rather than taken off so that the configured backoff stays a minimum.
    pub fn delay_with<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(retry);
        let half_nanos = u64::try_from(base.as_nanos() / 2).unwrap_or(u64::MAX);
        base.saturating_add(Duration::from_nanos(rng.random_range(0..=half_nanos)))
    }

    /// [`Backoff::delay_with`] the thread's random generator.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, &mut rand::rng())
    }

    /// The longest wait before retry `retry` (its base delay and the whole jitter): what a
    /// caller budgeting its retries must assume.
    pub fn longest(&self, retry: u32) -> Duration {
        let base = self.base_delay(retry);
        base.saturating_add(base / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn base_delay_doubles_from_the_initial_value_up_to_the_cap() {
        let backoff = Backoff::new(100 * MS, 1000 * MS);
        let schedule: Vec<Duration> = (1..=6).map(|retry| backoff.base_delay(retry)).collect();
        assert_eq!(
            schedule,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
    }

    #[test]
    fn base_delay_saturates_for_huge_retry_numbers() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(30));
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(30));
        let uncapped = Backoff::new(Duration::from_secs(1), Duration::MAX);
        assert_eq!(uncapped.base_delay(64), Duration::MAX);
        assert_eq!(uncapped.base_delay(0), Duration::from_secs(1));
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.base_delay(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_between_the_base_delay_and_one_and_a_half_times_it() {
        let backoff = Backoff::new(100 * MS, 1000 * MS);
        let mut rng = StdRng::seed_from_u64(7);
        let mut distinct = std::collections::HashSet::new();
        for retry in 1..=5 {
            let base = backoff.base_delay(retry);
            for _ in 0..200 {
                let delay = backoff.delay_with(retry, &mut rng);
                assert!(
                    delay >= base && delay <= base + base / 2,
                    "{delay:?} for {base:?}"
                );
                distinct.insert(delay);
            }
        }
        // Jitter that always produced the same value would not spread anything out.
        assert!(distinct.len() > 100);
    }

    #[test]
    fn zero_backoff_means_no_wait() {
        let backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(
            backoff.delay_with(3, &mut StdRng::seed_from_u64(1)),
            Duration::ZERO
        );
    }
}
