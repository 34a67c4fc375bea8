//! Which steps meet the service-level objective, and the knee of a sweep: the highest
//! offered rate that still does.
//!
//! A step passes when
//! * its p99 latency (from the intended send time) is at most the objective,
//! * it achieved at least 95 % of the offered rate,
//! * at most 1 % of its requests were dropped, and
//! * at most 1 % failed (no answer, or a 5xx): a server that answers every request quickly
//!   with `503` must not look fast.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::loadtest::report::StepReport;

/// What a step must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloCriteria {
    /// Highest acceptable p99.
    pub p99: Duration,
    /// Lowest achieved/offered ratio.
    pub min_achieved_share: f64,
    /// Highest dropped/scheduled ratio.
    pub max_dropped_share: f64,
    /// Highest failed-or-5xx/scheduled ratio.
    pub max_error_share: f64,
}

impl SloCriteria {
    /// The defaults with a p99 objective.
    pub fn new(p99: Duration) -> Self {
        SloCriteria {
            p99,
            min_achieved_share: 0.95,
            max_dropped_share: 0.01,
            max_error_share: 0.01,
        }
    }
}

/// Whether a step met the objective, and if not, why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloVerdict {
    /// Every check passed.
    pub passed: bool,
    /// The checks that failed, in words.
    pub failed: Vec<String>,
}

impl SloVerdict {
    /// `pass`, or `FAIL: ` and the checks that failed, for tables.
    pub fn describe(&self) -> String {
        if self.passed {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", self.failed.join("; "))
        }
    }
}

/// Judges one step.
pub fn verdict(step: &StepReport, c: &SloCriteria) -> SloVerdict {
    let mut failed = Vec::new();
    let slo_us = u64::try_from(c.p99.as_micros()).unwrap_or(u64::MAX);
    if step.latency.count == 0 {
        failed.push("no request was measured".to_owned());
    } else if step.latency.p99_us > slo_us {
        failed.push(format!(
            "p99 {:.1} ms > {:.1} ms",
            step.latency.p99_us as f64 / 1000.0,
            slo_us as f64 / 1000.0
        ));
    }
    if step.achieved_rate < step.offered_rate * c.min_achieved_share {
        failed.push(format!(
            "achieved {:.0}/s < {:.0} % of {:.0}/s",
            step.achieved_rate,
            c.min_achieved_share * 100.0,
            step.offered_rate
        ));
    }
    let share = |n: u64| n as f64 / step.scheduled.max(1) as f64;
    if share(step.dropped) > c.max_dropped_share {
        failed.push(format!("dropped {:.1} %", share(step.dropped) * 100.0));
    }
    if share(step.errors()) > c.max_error_share {
        failed.push(format!(
            "failed or 5xx {:.1} %",
            share(step.errors()) * 100.0
        ));
    }
    SloVerdict {
        passed: failed.is_empty(),
        failed,
    }
}

/// The knee: the step with the highest offered rate among those that passed.
pub fn knee(steps: &[StepReport]) -> Option<&StepReport> {
    steps
        .iter()
        .filter(|s| s.slo.passed)
        .max_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, p99_ms: u64, dropped: u64, e503: u64) -> StepReport {
        let mut s = StepReport {
            offered_rate: offered,
            achieved_rate: achieved,
            scheduled: 10_000,
            dropped,
            ..StepReport::default()
        };
        s.latency.count = 10_000 - dropped;
        s.latency.p99_us = p99_ms * 1000;
        if e503 > 0 {
            s.statuses.insert("503".to_owned(), e503);
        }
        s.slo = verdict(&s, &SloCriteria::new(Duration::from_millis(50)));
        s
    }

    #[test]
    fn the_knee_is_the_highest_passing_rate() {
        let steps = [
            step(1000.0, 1000.0, 3, 0, 0),
            step(2000.0, 1999.0, 8, 0, 0),
            step(5000.0, 4990.0, 49, 0, 0),
            step(10000.0, 7000.0, 900, 0, 0),
        ];
        assert!(steps[2].slo.passed);
        assert!(!steps[3].slo.passed);
        assert_eq!(knee(&steps).map(|s| s.offered_rate), Some(5000.0));
    }

    #[test]
    fn each_criterion_can_fail_a_step() {
        let slow = step(5000.0, 5000.0, 51, 0, 0);
        assert!(!slow.slo.passed);
        assert!(slow.slo.failed[0].starts_with("p99 51.0 ms"));
        let behind = step(5000.0, 4700.0, 10, 0, 0);
        assert!(!behind.slo.passed && behind.slo.failed[0].starts_with("achieved"));
        let dropping = step(5000.0, 5000.0, 10, 200, 0);
        assert!(!dropping.slo.passed && dropping.slo.failed[0].starts_with("dropped"));
        let failing = step(5000.0, 5000.0, 1, 0, 500);
        assert!(!failing.slo.passed && failing.slo.failed[0].starts_with("failed or 5xx"));
        // Exactly at the limits still passes.
        assert!(step(5000.0, 4750.0, 50, 100, 100).slo.passed);
    }

    #[test]
    fn no_passing_step_means_no_knee_whatever_the_order() {
        assert!(knee(&[step(1000.0, 10.0, 900, 0, 0)]).is_none());
        let steps = [step(5000.0, 5000.0, 5, 0, 0), step(1000.0, 1000.0, 2, 0, 0)];
        assert_eq!(knee(&steps).map(|s| s.offered_rate), Some(5000.0));
        // A failing step between passing ones does not hide a higher passing one.
        let steps = [
            step(1000.0, 1000.0, 2, 0, 0),
            step(2000.0, 2000.0, 70, 0, 0),
            step(3000.0, 3000.0, 20, 0, 0),
        ];
        assert_eq!(knee(&steps).map(|s| s.offered_rate), Some(3000.0));
    }
}
