//! Latency histograms: microsecond HDR histograms, their percentile summaries, and their
//! serialized form (HdrHistogram's V2 format, base64) for the JSON result file.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// Largest value a histogram tracks exactly: 60 s in microseconds. Longer latencies are
/// recorded as 60 s (a request timeout is far below it).
pub const MAX_MICROS: u64 = 60_000_000;
/// Significant decimal digits kept: values are exact to 0.1 %.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Percentiles listed in every summary's table.
pub const TABLE_PERCENTILES: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 99.9999,
    99.99999, 100.0,
];

/// A new, empty microsecond histogram (1 µs to 60 s, 3 significant digits).
pub fn new_histogram() -> Result<Histogram<u64>, LabError> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
        .map_err(|e| LabError::Histogram(format!("{e:?}")))
}

/// Records a duration in microseconds (at least 1 µs; at most [`MAX_MICROS`]).
pub fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(micros);
}

/// One row of a percentile table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentileRow {
    /// The percentile, 0 to 100.
    pub percentile: f64,
    /// The value at it, in microseconds.
    pub micros: u64,
}

/// What a histogram says, with the histogram itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Recorded values.
    pub count: u64,
    /// Smallest, in microseconds.
    pub min_us: u64,
    /// Mean, in microseconds.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// The values at [`TABLE_PERCENTILES`].
    pub percentiles: Vec<PercentileRow>,
    /// The whole histogram, HdrHistogram V2 encoding in base64 (readable by every
    /// HdrHistogram implementation; see [`decode`]).
    pub histogram_v2_base64: String,
}

impl LatencySummary {
    /// Summarizes `h`.
    pub fn of(h: &Histogram<u64>) -> Result<Self, LabError> {
        let empty = h.is_empty();
        let at = |q: f64| if empty { 0 } else { h.value_at_percentile(q) };
        Ok(LatencySummary {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            mean_us: if empty { 0.0 } else { h.mean() },
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            max_us: if empty { 0 } else { h.max() },
            percentiles: TABLE_PERCENTILES
                .iter()
                .map(|&p| PercentileRow {
                    percentile: p,
                    micros: at(p),
                })
                .collect(),
            histogram_v2_base64: encode(h)?,
        })
    }
}

/// The V2 encoding of `h`, in base64.
pub fn encode(h: &Histogram<u64>) -> Result<String, LabError> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| LabError::Histogram(format!("cannot serialize: {e:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Reads a histogram written by [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, LabError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| LabError::Histogram(format!("not base64: {e}")))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| LabError::Histogram(format!("not a V2 histogram: {e:?}")))
}

/// Microseconds as milliseconds for tables (`1.234`).
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram().unwrap();
        for v in 1..=10_000u64 {
            record(&mut h, Duration::from_micros(v));
        }
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // Three significant digits: within 0.1 %.
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001;
        assert!(close(s.p50_us, 5_000), "{}", s.p50_us);
        assert!(close(s.p99_us, 9_900), "{}", s.p99_us);
        assert!(close(s.p999_us, 9_990), "{}", s.p999_us);
        assert!(close(s.max_us, 10_000), "{}", s.max_us);
        assert_eq!(s.percentiles.len(), TABLE_PERCENTILES.len());
        assert!(s.percentiles.windows(2).all(|w| w[0].micros <= w[1].micros));
    }

    #[test]
    fn serialization_round_trips() {
        let mut h = new_histogram().unwrap();
        for v in [1u64, 7, 250, 1_000, 12_345, 999_999, 59_000_000] {
            h.record_n(v, v % 5 + 1).unwrap();
        }
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_percentile(99.0), h.value_at_percentile(99.0));
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err());
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new_histogram().unwrap();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_MICROS);
    }

    #[test]
    fn an_empty_histogram_summarizes_to_zeros() {
        let s = LatencySummary::of(&new_histogram().unwrap()).unwrap();
        assert_eq!((s.count, s.p99_us, s.max_us), (0, 0, 0));
        assert!(!s.histogram_v2_base64.is_empty());
    }
}
