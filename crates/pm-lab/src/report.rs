//! Writing reports: JSON for machines, Markdown for people (linking the chart), an SVG chart,
//! and a terminal table. Every report of the lab — benchmarks and load tests — is written by
//! [`write_files`]: named `<kind>-<UTC timestamp>.<ext>`, so runs sort by time, and never
//! overwriting an earlier run.

mod chart;
mod markdown;
mod table;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use table::{baseline_table, layouts_table, partitioning_table};

use crate::baseline::BaselineReport;
use crate::partitioning::PartitioningReport;
use crate::LabError;

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
pub fn write_partitioning(dir: &Path, report: &PartitioningReport) -> Result<Written, LabError> {
    write_files(
        dir,
        "partitioning",
        &timestamp_slug(report.started_at),
        &serde_json::to_string_pretty(report)?,
        |svg_name| markdown::partitioning(report, svg_name),
        &chart::partitioning(report)?,
    )
    .map_err(LabError::from)
}

/// Writes `baseline-<ts>.json`, `.md` and `.svg` into `dir` (created if missing).
pub fn write_baseline(dir: &Path, report: &BaselineReport) -> Result<Written, LabError> {
    write_files(
        dir,
        "baseline",
        &timestamp_slug(report.started_at),
        &serde_json::to_string_pretty(report)?,
        |svg_name| markdown::baseline(report, svg_name),
        // The ramp's steps are load-test steps: the load test's chart draws them.
        &crate::loadtest::report::svg_chart(&report.http.steps, report.http.p99_limit_ms)?,
    )
    .map_err(LabError::from)
}

/// Writes `layouts-<ts>.json`, `.md` and `.svg` into `dir` (created if missing).
pub fn write_layouts(
    dir: &Path,
    report: &crate::layouts::LayoutsReport,
) -> Result<Written, LabError> {
    write_files(
        dir,
        "layouts",
        &timestamp_slug(report.started_at),
        &serde_json::to_string_pretty(report)?,
        |svg_name| crate::layouts::markdown(report, svg_name),
        &chart::layouts(report)?,
    )
    .map_err(LabError::from)
}

/// Writes `replication-<ts>.json`, `.md` and `.svg` into `dir` (created if missing).
pub fn write_replication(
    dir: &Path,
    report: &crate::replication::ReplicationReport,
) -> Result<Written, LabError> {
    write_files(
        dir,
        "replication",
        &timestamp_slug(report.started_at),
        &serde_json::to_string_pretty(report)?,
        |svg_name| crate::replication::markdown(report, svg_name),
        &chart::replication(report)?,
    )
    .map_err(LabError::from)
}

/// A report file that could not be written.
#[derive(Debug)]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl From<FileError> for LabError {
    fn from(e: FileError) -> Self {
        LabError::io(e.action, e.path, e.source)
    }
}

/// Writes one report's three files, `<kind>-<stamp>.json`, `.md` and `.svg`, into `dir`
/// (created when missing); `markdown` gets the chart's file name to link. A second report of
/// the same kind in the same second gets a `-2`, `-3`, … suffix rather than overwriting the
/// first.
pub fn write_files(
    dir: &Path,
    kind: &str,
    stamp: &str,
    json: &str,
    markdown: impl FnOnce(&str) -> String,
    svg: &str,
) -> Result<Written, FileError> {
    let fail = |action, path: &Path| {
        let path = path.to_owned();
        move |source| FileError {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
    let base = format!("{kind}-{stamp}");
    let mut stem = base.clone();
    let mut n = 1;
    while dir.join(format!("{stem}.json")).exists() {
        n += 1;
        stem = format!("{base}-{n}");
    }
    let written = Written {
        json: dir.join(format!("{stem}.json")),
        markdown: dir.join(format!("{stem}.md")),
        svg: dir.join(format!("{stem}.svg")),
    };
    let markdown = markdown(&format!("{stem}.svg"));
    for (path, text) in [
        (&written.json, json),
        (&written.svg, svg),
        (&written.markdown, markdown.as_str()),
    ] {
        std::fs::write(path, text).map_err(fail("write", path))?;
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

/// A complete walk's mean time in ms, `–` when no walk completed.
pub(crate) fn fmt_walk_mean(w: &crate::walks::WalkResult) -> String {
    if w.walks.count == 0 {
        "–".to_owned()
    } else {
        fmt_ms(w.walks.mean_us / 1000.0)
    }
}

/// `✓` for walks that all saw their window once without a failed page, else what went
/// wrong.
pub(crate) fn fmt_walk_check(w: &crate::walks::WalkResult) -> String {
    if w.ok() {
        "✓".to_owned()
    } else {
        format!(
            "✗ {} failed pages, {} walks off",
            w.failed_pages, w.inconsistent_walks
        )
    }
}

/// The server settings a report records, as `` `name=value` `` items; `None` without any.
pub(crate) fn fmt_settings(m: &crate::machine::MachineFacts) -> Option<String> {
    (!m.postgres_settings.is_empty()).then(|| {
        m.postgres_settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// The list items a report of the services opens with: the command, the revision and
/// machine, the server's version and its settings.
pub(crate) fn run_facts(out: &mut String, m: &crate::machine::MachineFacts) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "- command: `{}`", m.command_line);
    let _ = writeln!(
        out,
        "- revision: {} · machine: {}",
        m.git_revision.as_deref().unwrap_or("unknown"),
        m.summary()
    );
    if let Some(v) = &m.postgres_version {
        let _ = writeln!(out, "- `{v}`");
    }
    if let Some(settings) = fmt_settings(m) {
        let _ = writeln!(out, "- settings: {settings}");
    }
}

/// How the services were configured: `with its default settings (<defaults>)`, or the
/// `PM_*` settings they were given.
pub(crate) fn fmt_services_env(
    env: &std::collections::BTreeMap<String, String>,
    defaults: &str,
) -> String {
    if env.is_empty() {
        return format!("with its default settings ({defaults})");
    }
    let given = env
        .iter()
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("with {given} (the rest default)")
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

    #[test]
    fn a_second_report_in_the_same_second_gets_its_own_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |json: &str| {
            write_files(
                dir.path(),
                "bench",
                "20261125T153012Z",
                json,
                |svg| format!("![chart]({svg})"),
                "<svg/>",
            )
            .expect("written")
        };
        let first = write("1");
        let second = write("2");
        assert!(first.json.ends_with("bench-20261125T153012Z.json"));
        assert!(second.json.ends_with("bench-20261125T153012Z-2.json"));
        assert_eq!(std::fs::read_to_string(&first.json).expect("first"), "1");
        assert_eq!(
            std::fs::read_to_string(&second.markdown).expect("markdown"),
            "![chart](bench-20261125T153012Z-2.svg)"
        );
    }
}
