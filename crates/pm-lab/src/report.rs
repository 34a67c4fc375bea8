//! Writing reports: JSON for machines, Markdown for people (linking the chart), an SVG chart,
//! and a terminal table. Files are named `<kind>-<UTC timestamp>.<ext>` so runs never
//! overwrite each other and sort by time.

mod chart;
mod markdown;
mod table;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use table::{baseline_table, partitioning_table};

use crate::baseline::BaselineReport;
use crate::partitioning::PartitioningReport;
use crate::BenchError;

/// The files one report was written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
}

/// `20261125T153012Z`: sortable, and valid in file names everywhere.
pub fn timestamp_slug(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Writes `partitioning-<ts>.json`, `.md` and `.svg` into `dir` (created if missing).
pub fn write_partitioning(dir: &Path, report: &PartitioningReport) -> Result<Written, BenchError> {
    let stem = format!("partitioning-{}", timestamp_slug(report.started_at));
    let svg_name = format!("{stem}.svg");
    write_all(
        dir,
        &stem,
        &serde_json::to_string_pretty(report)?,
        &markdown::partitioning(report, &svg_name),
        &chart::partitioning(report)?,
    )
}

/// Writes `baseline-<ts>.json`, `.md` and `.svg` into `dir` (created if missing).
pub fn write_baseline(dir: &Path, report: &BaselineReport) -> Result<Written, BenchError> {
    let stem = format!("baseline-{}", timestamp_slug(report.started_at));
    let svg_name = format!("{stem}.svg");
    write_all(
        dir,
        &stem,
        &serde_json::to_string_pretty(report)?,
        &markdown::baseline(report, &svg_name),
        &chart::baseline(report)?,
    )
}

fn write_all(
    dir: &Path,
    stem: &str,
    json: &str,
    markdown: &str,
    svg: &str,
) -> Result<Written, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io("create", dir, e))?;
    let written = Written {
        json: dir.join(format!("{stem}.json")),
        markdown: dir.join(format!("{stem}.md")),
        svg: dir.join(format!("{stem}.svg")),
    };
    for (path, text) in [
        (&written.json, json),
        (&written.markdown, markdown),
        (&written.svg, svg),
    ] {
        std::fs::write(path, text).map_err(|e| BenchError::io("write", path, e))?;
    }
    Ok(written)
}

/// `12.3`, `0.85`, `1234`: enough digits to compare, no more.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// `6.9×`, or `–` when undefined.
pub(crate) fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}×")
    } else {
        "–".into()
    }
}

/// `119,034`.
pub(crate) fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    // ASCII digits: every chunk is valid UTF-8.
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|group| std::str::from_utf8(group).unwrap_or("?"))
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats() {
        assert_eq!(fmt_count(119_034), "119,034");
        assert_eq!(fmt_count(12), "12");
        assert_eq!(fmt_ms(782.4), "782");
        assert_eq!(fmt_ms(65.04), "65.0");
        assert_eq!(fmt_ms(0.123), "0.12");
        assert_eq!(fmt_ratio(6.94), "6.9×");
        assert_eq!(fmt_ratio(f64::NAN), "–");
        let t = Utc
            .with_ymd_and_hms(2026, 11, 25, 15, 30, 12)
            .single()
            .expect("valid");
        assert_eq!(timestamp_slug(t), "20261125T153012Z");
    }
}
