//! How many events each generated dispute gets: between 3 and 12 (as in the original
//! generator), adding up to exactly the requested number of rows.

use crate::LabError;

/// Fewest events of a dispute (opened, something, a decision).
pub(crate) const MIN_EVENTS: u64 = 3;
/// Most events of a dispute.
pub(crate) const MAX_EVENTS: u64 = 12;

/// Per-dispute event counts in `MIN_EVENTS..=MAX_EVENTS` summing to `rows`, the same for the
/// same arguments on every machine (a fixed-seed generator, no platform randomness).
///
/// The original's 5,000,000 rows over ~500,000 disputes average 10 events, which a uniform
/// 3–12 draw (mean 7.5) cannot give, so the draw is skewed towards the end of the range that
/// the mean lies in — every count from 3 to 12 still occurs — and a final pass nudges counts
/// by one until the total is exact.
pub(crate) fn event_counts(rows: u64, disputes: u64) -> Result<Vec<u8>, LabError> {
    if disputes == 0 {
        return Err(LabError::Invalid("--disputes must be at least 1".into()));
    }
    if rows < disputes * MIN_EVENTS || rows > disputes * MAX_EVENTS {
        return Err(LabError::Invalid(format!(
            "{rows} rows over {disputes} disputes is {:.1} events per dispute; it must be between \
             {MIN_EVENTS} and {MAX_EVENTS} (rows between {} and {})",
            rows as f64 / disputes as f64,
            disputes * MIN_EVENTS,
            disputes * MAX_EVENTS
        )));
    }
    let len = usize::try_from(disputes)
        .map_err(|_| LabError::Invalid("--disputes is too large".into()))?;
    let mean = rows as f64 / disputes as f64;
    let span = (MAX_EVENTS - MIN_EVENTS) as f64;
    let mut rng = SplitMix64(0x5eed_0fd1_57e5);
    let mut counts: Vec<u8> = (0..len)
        .map(|_| {
            let u = rng.unit();
            // E[floor((span+1)·u^k)] ≈ (span+1)/(k+1) − ½; k is chosen so the mean comes out right.
            let (from_low, distance) = if mean <= MIN_EVENTS as f64 + span / 2.0 {
                (true, mean - MIN_EVENTS as f64)
            } else {
                (false, MAX_EVENTS as f64 - mean)
            };
            let k = ((span + 1.0) / (distance + 0.5) - 1.0).max(0.0);
            let offset = ((span + 1.0) * u.powf(k)).floor().min(span) as u64;
            let count = if from_low {
                MIN_EVENTS + offset
            } else {
                MAX_EVENTS - offset
            };
            count as u8
        })
        .collect();

    let mut total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    // Walk a pseudo-random sequence of disputes, moving each one step towards the target.
    // Bounded: every step either changes the total or hits a dispute already at its bound,
    // and the bounds admit the target (checked above).
    while total != rows {
        let i = (rng.next() % disputes) as usize;
        let Some(c) = counts.get_mut(i) else { continue };
        if total < rows && u64::from(*c) < MAX_EVENTS {
            *c += 1;
            total += 1;
        } else if total > rows && u64::from(*c) > MIN_EVENTS {
            *c -= 1;
            total -= 1;
        }
    }
    Ok(counts)
}

/// The 64-bit SplitMix generator: tiny, fast, and the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rows: u64, disputes: u64) -> Vec<u8> {
        let counts = event_counts(rows, disputes).expect("valid options");
        assert_eq!(counts.len() as u64, disputes);
        assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), rows);
        assert!(counts
            .iter()
            .all(|&c| (MIN_EVENTS..=MAX_EVENTS).contains(&u64::from(c))));
        counts
    }

    #[test]
    fn counts_add_up_exactly_and_stay_within_three_to_twelve() {
        for (rows, disputes) in [
            (5_000_000, 500_000),
            (20_000, 2_000),
            (3_000, 1_000),
            (12_000, 1_000),
            (7_500, 1_000),
            (1_000_003, 200_000),
        ] {
            check(rows, disputes);
        }
    }

    #[test]
    fn the_original_proportions_use_the_whole_range() {
        let counts = check(5_000_000, 500_000);
        for n in MIN_EVENTS..=MAX_EVENTS {
            assert!(
                counts.iter().any(|&c| u64::from(c) == n),
                "no dispute with {n} events"
            );
        }
    }

    #[test]
    fn counts_are_deterministic() {
        assert_eq!(
            event_counts(20_000, 2_000).ok(),
            event_counts(20_000, 2_000).ok()
        );
    }

    #[test]
    fn impossible_proportions_are_refused() {
        assert!(event_counts(100, 50).is_err());
        assert!(event_counts(1_000, 50).is_err());
        assert!(event_counts(10, 0).is_err());
    }
}
