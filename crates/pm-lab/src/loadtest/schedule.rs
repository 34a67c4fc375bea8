//! The arrival schedule of one step: an open model at a fixed rate.
//!
//! Request `i` is due `i / rate` seconds after the start, whatever happened to the requests
//! before it. The first `ceil(warmup × rate)` requests form the warm-up (sent, never
//! measured); the rest, up to `ceil((warmup + duration) × rate)`, are measured.

use std::time::Duration;

use crate::LabError;

/// Highest rate a step may ask for, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// When each request of a step is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    warmup: Duration,
    duration: Duration,
}

impl Schedule {
    /// A schedule of `rate` requests per second: `warmup`, then `duration` measured.
    pub fn new(rate: f64, warmup: Duration, duration: Duration) -> Result<Self, LabError> {
        if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
            return Err(LabError::Invalid(format!(
                "a rate must be above 0 and at most {MAX_RATE} requests/s (got {rate})"
            )));
        }
        if duration.is_zero() {
            return Err(LabError::Invalid(
                "the measured duration must be above 0".to_owned(),
            ));
        }
        let total = (warmup + duration).as_secs_f64() * rate;
        if total > u32::MAX as f64 {
            return Err(LabError::Invalid(format!(
                "{total:.0} requests in one step is too many (lower the rate or the duration)"
            )));
        }
        Ok(Schedule {
            rate,
            warmup,
            duration,
        })
    }

    /// Offered rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The warm-up period (sent, not measured).
    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    /// The measured period.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When request `i` is due, from the start of the step.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Every request of the step: those due before the end of warm-up plus duration.
    pub fn total(&self) -> u64 {
        count_before(self.rate, self.warmup + self.duration)
    }

    /// The warm-up requests (the first ones).
    pub fn warmup_count(&self) -> u64 {
        count_before(self.rate, self.warmup)
    }

    /// The measured requests.
    pub fn measured(&self) -> u64 {
        self.total() - self.warmup_count()
    }

    /// Whether request `i` is measured (not warm-up).
    pub fn is_measured(&self, i: u64) -> bool {
        i >= self.warmup_count()
    }
}

/// How many `i` have `i / rate < span`.
fn count_before(rate: f64, span: Duration) -> u64 {
    (span.as_secs_f64() * rate).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let s = Schedule::new(2000.0, Duration::from_secs(1), Duration::from_secs(2)).unwrap();
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_micros(500));
        assert_eq!(s.offset(2000), Duration::from_secs(1));
        assert_eq!(s.total(), 6000);
        assert_eq!(s.warmup_count(), 2000);
        assert_eq!(s.measured(), 4000);
        assert!(!s.is_measured(1999));
        assert!(s.is_measured(2000));
        // Evenly spaced: every gap is 1 / rate.
        for i in 0..100 {
            let gap = s.offset(i + 1) - s.offset(i);
            assert!(gap.abs_diff(Duration::from_micros(500)) <= Duration::from_nanos(1));
        }
    }

    #[test]
    fn fractional_rates_round_the_count_up() {
        let s = Schedule::new(3.5, Duration::ZERO, Duration::from_secs(1)).unwrap();
        // Due at 0, 0.286, 0.571, 0.857 s: four before the end.
        assert_eq!(s.total(), 4);
        assert_eq!(s.warmup_count(), 0);
    }

    #[test]
    fn nonsense_is_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(Schedule::new(rate, Duration::ZERO, Duration::from_secs(1)).is_err());
        }
        assert!(Schedule::new(10.0, Duration::ZERO, Duration::ZERO).is_err());
    }
}
